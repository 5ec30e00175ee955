//! `uniaudio`: the command line of the UniAudio 2.0 runtime.

mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "uniaudio", version, about = "UniAudio 2.0 inference runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode-GEMV benchmark: achieved GB/s against this machine's measured read bandwidth.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench(args) => bench::run(args),
    }
}
