//! The `bonebank-dev` command: the demo and the development tools.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bonebank_dev::cli::DevCli::parse();
    bonebank_service::init_logging("warn,bonebank_coordinator=info");
    match bonebank_dev::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
