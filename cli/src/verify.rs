//! `uniaudio verify BUNDLE`: every file of a bundle against its manifest's size and sha256.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use uniaudio::Manifest;

use crate::progress;

#[derive(Args)]
pub struct VerifyArgs {
    /// The bundle directory (with uniaudio.json).
    bundle: PathBuf,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    let manifest = Manifest::read(&args.bundle)?;
    let problems = progress::with_bytes("verifying", |report| manifest.verify(&args.bundle, report))?;
    let files = manifest.files().count();
    let bytes: u64 = manifest.files().map(|f| f.bytes).sum();
    if problems.is_empty() {
        eprintln!("{}: {files} files ({:.1} MB) match the manifest", args.bundle.display(), bytes as f64 / 1e6);
        return Ok(());
    }
    for p in &problems {
        eprintln!("{}: {p}", args.bundle.display());
    }
    bail!("{}: {} of {files} files do not match the manifest", args.bundle.display(), problems.len())
}
