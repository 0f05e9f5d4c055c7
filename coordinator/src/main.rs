//! The `bonebank-coordinator` command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bonebank_coordinator::cli::CoordinatorCli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BONEBANK_LOG")
                .unwrap_or_else(|_| "warn,bonebank_coordinator=info".into()),
        )
        .init();
    match bonebank_coordinator::cli::run_coordinator(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
