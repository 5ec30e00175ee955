//! A tiny WGSL preprocessor: `#include "name"`, `#define NAME [value]`, `#ifdef`,
//! `#ifndef`, `#else`, `#endif`. Defined values replace whole-word occurrences.
//! `enable` directives (which WGSL wants before any declaration) move to the top.

use std::collections::HashMap;

pub fn preprocess(name: &str, defines: &[(&str, &str)], lookup: &dyn Fn(&str) -> Option<&'static str>) -> Result<String, String> {
    let source = lookup(name).ok_or_else(|| format!("no kernel source `{name}`"))?;
    let mut defs: HashMap<String, String> = defines.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut body = String::new();
    expand(name, source, &mut defs, lookup, &mut body, 0)?;
    let (enables, rest): (Vec<&str>, Vec<&str>) = body.lines().partition(|l| l.trim_start().starts_with("enable "));
    let mut out = String::with_capacity(body.len());
    for line in enables.into_iter().chain(rest) {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

fn expand(name: &str, source: &str, defs: &mut HashMap<String, String>, lookup: &dyn Fn(&str) -> Option<&'static str>, out: &mut String, depth: usize) -> Result<(), String> {
    if depth > 8 {
        return Err(format!("{name}: includes nested too deeply"));
    }
    // Stack of (this branch active, any enclosing branch inactive).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &[(bool, bool)]| stack.iter().all(|&(on, _)| on);
    for (n, line) in source.lines().enumerate() {
        let trimmed = line.trim();
        let err = |msg: &str| format!("{name}:{}: {msg}", n + 1);
        if let Some(rest) = trimmed.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            let directive = words.next().unwrap_or("");
            let arg = words.next();
            match directive {
                "ifdef" | "ifndef" => {
                    let key = arg.ok_or_else(|| err("missing name"))?;
                    let defined = defs.contains_key(key);
                    stack.push((defined == (directive == "ifdef"), false));
                }
                "else" => {
                    let top = stack.last_mut().ok_or_else(|| err("#else without #ifdef"))?;
                    top.0 = !top.0;
                }
                "endif" => {
                    stack.pop().ok_or_else(|| err("#endif without #ifdef"))?;
                }
                "define" if active(&stack) => {
                    let key = arg.ok_or_else(|| err("missing name"))?;
                    defs.insert(key.to_string(), words.collect::<Vec<_>>().join(" "));
                }
                "include" if active(&stack) => {
                    let inc = arg.ok_or_else(|| err("missing include name"))?.trim_matches('"');
                    let text = lookup(inc).ok_or_else(|| err(&format!("unknown include `{inc}`")))?;
                    expand(inc, text, defs, lookup, out, depth + 1)?;
                }
                "define" | "include" => {}
                other => return Err(err(&format!("unknown directive #{other}"))),
            }
            continue;
        }
        if active(&stack) {
            out.push_str(&substitute(line, defs));
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(format!("{name}: unterminated #ifdef"));
    }
    Ok(())
}

fn substitute(line: &str, defs: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match defs.get(word.as_str()) {
            Some(v) if !v.is_empty() => out.push_str(v),
            _ => out.push_str(word),
        }
        word.clear();
    };
    for ch in line.chars() {
        if ch.is_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditionals_includes_and_values() {
        let lookup = |n: &str| match n {
            "main" => Some("#define B 3\n#include \"inc\"\n#ifdef A\nx = B;\n#else\ny = B;\n#endif\nAB B_ B"),
            "inc" => Some("#ifndef A\nfrom_inc\n#endif"),
            _ => None,
        };
        assert_eq!(preprocess("main", &[], &lookup).unwrap(), "from_inc\ny = 3;\nAB B_ 3\n");
        assert_eq!(preprocess("main", &[("A", "")], &lookup).unwrap(), "x = 3;\nAB B_ 3\n");
        let bad = |n: &str| if n == "main" { Some("#ifdef A\n") } else { None };
        assert!(preprocess("main", &[], &bad).is_err());
    }

    #[test]
    fn enable_directives_move_to_the_top() {
        let lookup = |n: &str| match n {
            "main" => Some("struct S { a: u32 }\n#include \"inc\"\nfn f() {}"),
            "inc" => Some("#ifdef H\nenable f16;\n#endif\nvar<private> v: u32;"),
            _ => None,
        };
        assert_eq!(preprocess("main", &[("H", "")], &lookup).unwrap(), "enable f16;\nstruct S { a: u32 }\nvar<private> v: u32;\nfn f() {}\n");
        assert_eq!(preprocess("main", &[], &lookup).unwrap(), "struct S { a: u32 }\nvar<private> v: u32;\nfn f() {}\n");
    }
}
