//! `--backend` selection.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The best backend available on this machine.
    Auto,
    /// The multi-threaded CPU backend.
    Cpu,
}

impl BackendChoice {
    /// The backend `auto` resolves to here (only the CPU backend is built in so far).
    pub fn resolve(self) -> BackendChoice {
        match self {
            BackendChoice::Auto | BackendChoice::Cpu => BackendChoice::Cpu,
        }
    }
}
