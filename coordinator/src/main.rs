//! The `bonebank-coordinator` command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bonebank_coordinator::cli::CoordinatorCli::parse();
    bonebank_service::init_logging("warn,bonebank_coordinator=info");
    match bonebank_coordinator::cli::run_coordinator(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
