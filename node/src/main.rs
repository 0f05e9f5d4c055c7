//! The `bonebank-node` command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bonebank_node::cli::Cli::parse();
    bonebank_service::init_logging("warn,bonebank_node=info");
    match bonebank_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
