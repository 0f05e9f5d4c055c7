//! The operator's command line, `bonebank-coordinator`. (The researcher's
//! is `bonebank`, in its own crate; the demo and the development tools are
//! `bonebank-dev`.)

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::Result;
use crate::config::CoordinatorConfig;

/// The coordinator of a bonebank network.
#[derive(Debug, Parser)]
#[command(name = "bonebank-coordinator", version, about)]
pub struct CoordinatorCli {
    #[command(subcommand)]
    pub command: CoordinatorCommand,
}

#[derive(Debug, Subcommand)]
pub enum CoordinatorCommand {
    /// Serves researchers and asks the configured sites.
    Serve {
        /// The coordinator's config file (TOML); see examples/coordinator.toml.
        #[arg(long, env = "BONEBANK_COORDINATOR_CONFIG")]
        config: PathBuf,
    },
}

pub fn run_coordinator(cli: CoordinatorCli) -> Result<()> {
    match cli.command {
        CoordinatorCommand::Serve { config } => {
            let config = CoordinatorConfig::load(&config)?;
            bonebank_service::server::runtime()?.block_on(crate::server::serve(config))
        }
    }
}
