//! The precision policy every backend follows.

/// The arithmetic a backend may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 activations and accumulation everywhere (what the parity fixtures test).
    #[default]
    Exact,
    /// bf16 operands into the GEMMs and convolutions, f32 accumulation and f32 elsewhere.
    Fast,
}

impl Precision {
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "exact" => Some(Precision::Exact),
            "fast" => Some(Precision::Fast),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Exact => "exact",
            Precision::Fast => "fast",
        }
    }
}
