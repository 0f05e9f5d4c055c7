//! The `bonebank` command: researchers ask a network from the terminal.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bonebank_cli::cli::ResearcherCli::parse();
    match bonebank_cli::cli::run_researcher(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
