//! Compiles every kernel of `kernels/cuda/` for the CPU emulator (`kernels/cuda/emulate/`)
//! with a registry of entry points: the kernel names are read from the preprocessed
//! source, and a C++ template unpacks each kernel's arguments from an array of pointers
//! (the `kernelParams` convention of `cuLaunchKernel`).

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..").join("kernels").join("cuda");
    let all = root.join("emulate").join("all.cpp");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut build = cc::Build::new();
    build.cpp(true).std("c++20").define("UNIAUDIO_EMULATE", None).flag_if_supported("-w").flag_if_supported("-pthread").opt_level(2);
    let expanded = String::from_utf8_lossy(&build.clone().file(&all).expand()).into_owned();
    let mut names: Vec<String> = Vec::new();
    for piece in expanded.split("extern \"C\"").skip(1) {
        // After expansion: `  void name(` (qualifiers are emulator macros that expand to nothing).
        let rest = piece.trim_start();
        let Some(rest) = rest.strip_prefix("void") else { continue };
        let name: String = rest.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && !name.starts_with("emu_") && !names.contains(&name) {
            names.push(name);
        }
    }
    assert!(names.len() > 40, "found only {} kernels in {}", names.len(), all.display());
    let mut registry = format!("#include \"{}\"\n#include \"{}\"\n", all.display(), root.join("emulate").join("registry.h").display());
    registry.push_str("const emu::Entry emu::entries[] = {\n");
    for n in &names {
        writeln!(registry, "    {{\"{n}\", [](void** a) {{ emu::call({n}, a); }}}},").unwrap();
    }
    writeln!(registry, "}};\nconst unsigned emu::entry_count = {};", names.len()).unwrap();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("registry.cpp");
    std::fs::write(&out, registry).unwrap();
    build.file(&out).compile("uniaudio_cuda_emu");
    println!("cargo:rustc-link-lib=pthread");
}
