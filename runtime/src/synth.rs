//! The portable synthetic-weight initialiser (version 1): every tensor is regenerated
//! bit for bit from a seed and its name, so fixtures need no weight files.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Deserialize;

/// The `init` block of a fixture's config.json.
#[derive(Clone, Debug, Deserialize)]
pub struct InitSpec {
    pub version: u32,
    pub seed: u64,
    /// Key suffix (or "default") -> exponent e of the scale 2^e.
    #[serde(default)]
    pub scale: BTreeMap<String, i32>,
    #[serde(default = "default_unit")]
    pub unit: Vec<String>,
    #[serde(default)]
    pub patches: Vec<Patch>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Patch {
    pub tensor: String,
    pub offset: usize,
    pub values: Vec<f64>,
}

fn default_unit() -> Vec<String> {
    ["norm_1.weight", "norm_2.weight", "ln_f.weight"].map(String::from).to_vec()
}

impl InitSpec {
    /// A spec with the default rules and no patches.
    pub fn with_seed(seed: u64) -> Self {
        InitSpec { version: 1, seed, scale: BTreeMap::new(), unit: default_unit(), patches: Vec::new() }
    }

    /// Reads `init` from a config.json text; `None` if it has no `init` block.
    pub fn from_config_json(text: &str) -> Result<Option<Self>, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        match value.get("init") {
            None => Ok(None),
            Some(init) => {
                let spec: InitSpec = serde_json::from_value(init.clone()).map_err(|e| format!("invalid init block: {e}"))?;
                if spec.version != 1 {
                    return Err(format!("init.version {} is not supported (only 1)", spec.version));
                }
                Ok(Some(spec))
            }
        }
    }

    fn rule(&self, name: &str) -> Rule {
        if self.unit.iter().any(|u| name.ends_with(u.as_str())) {
            return Rule::Unit;
        }
        let exp = self
            .scale
            .iter()
            .filter(|(suffix, _)| suffix.as_str() != "default" && name.ends_with(suffix.as_str()))
            .max_by_key(|(suffix, _)| suffix.len())
            .map(|(_, &e)| e)
            .unwrap_or_else(|| self.scale.get("default").copied().unwrap_or(-3));
        Rule::Scale(exp)
    }

    /// The `n` values of tensor `name`, before patches.
    pub fn generate(&self, name: &str, n: usize) -> Vec<f32> {
        let key = fnv1a64(name.as_bytes()) ^ self.seed;
        let rule = self.rule(name);
        let scale = match rule {
            Rule::Scale(e) => 2f32.powi(e - 7),
            Rule::Unit => 2f32.powi(-7),
        };
        (0..n)
            .into_par_iter()
            .with_min_len(1 << 14)
            .map(|i| {
                let k = (splitmix64(key.wrapping_add(i as u64)) >> 56) as i64 - 128;
                match rule {
                    Rule::Scale(_) => k as f32 * scale,
                    Rule::Unit => 1.0 + (k >> 2) as f32 * scale,
                }
            })
            .collect()
    }

    /// Values of tensor `name` with every patch for it applied.
    pub fn tensor(&self, name: &str, n: usize) -> Result<Vec<f32>, String> {
        let mut values = self.generate(name, n);
        for p in self.patches.iter().filter(|p| p.tensor == name) {
            let end = p.offset.checked_add(p.values.len()).filter(|&e| e <= n);
            let Some(end) = end else {
                return Err(format!("patch at offset {} (+{}) exceeds tensor `{name}` of {n} elements", p.offset, p.values.len()));
            };
            for (dst, &v) in values[p.offset..end].iter_mut().zip(&p.values) {
                *dst = v as f32;
            }
        }
        Ok(values)
    }

    /// Patches naming tensors the model does not have (a fixture/config mismatch).
    pub fn unknown_patch_targets<'a>(&'a self, names: &[String]) -> Vec<&'a str> {
        self.patches.iter().map(|p| p.tensor.as_str()).filter(|t| !names.iter().any(|n| n == t)).collect()
    }
}

#[derive(Clone, Copy)]
enum Rule {
    Scale(i32),
    Unit,
}

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

pub fn splitmix64(z: u64) -> u64 {
    let z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the spec: seed 0, tensor `a.weight`, exponent -3.
    #[test]
    fn worked_example() {
        let spec = InitSpec { scale: [("default".to_string(), -3)].into(), ..InitSpec::with_seed(0) };
        let want = [0.041992188, -0.041015625, 0.0009765625, 0.10839844, -0.091796875, 0.099609375, -0.10253906, 0.009765625];
        assert_eq!(spec.generate("a.weight", 8), want);
    }

    #[test]
    fn longest_suffix_wins_and_unit_rule_applies() {
        let spec = InitSpec {
            scale: [("default".to_string(), -4), ("qkv.weight".to_string(), -2), ("h.1.attn.qkv.weight".to_string(), -3)].into(),
            ..InitSpec::with_seed(7)
        };
        assert!(matches!(spec.rule("x.h.1.attn.qkv.weight"), Rule::Scale(-3)));
        assert!(matches!(spec.rule("x.h.0.attn.qkv.weight"), Rule::Scale(-2)));
        assert!(matches!(spec.rule("x.proj.weight"), Rule::Scale(-4)));
        assert!(matches!(spec.rule("x.h.0.norm_1.weight"), Rule::Unit));
        let unit = spec.generate("x.ln_f.weight", 1000);
        assert!(unit.iter().all(|v| (0.75..1.25).contains(v)));
    }

    #[test]
    fn patches_apply_and_are_bounds_checked() {
        let mut spec = InitSpec::with_seed(1);
        spec.patches.push(Patch { tensor: "t".into(), offset: 3, values: vec![0.5, -0.25] });
        let v = spec.tensor("t", 6).unwrap();
        assert_eq!(&v[3..5], &[0.5, -0.25]);
        assert!(spec.tensor("t", 4).is_err());
    }
}
