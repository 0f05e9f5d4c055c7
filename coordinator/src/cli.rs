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
    /// Checks the config, certificates, the identity provider, every
    /// site and its clock, free space and the history; one line per check,
    /// non-zero exit if any fails.
    Doctor {
        #[arg(long, env = "BONEBANK_COORDINATOR_CONFIG")]
        config: PathBuf,
    },
    /// Backs up the query history while the coordinator runs (SQLite's
    /// online backup, with a checksum list).
    Backup {
        #[arg(long, env = "BONEBANK_COORDINATOR_CONFIG")]
        config: PathBuf,
        /// A new folder for this backup.
        #[arg(long)]
        to: PathBuf,
    },
    /// Restores the query history from a backup, with the coordinator
    /// stopped; refused if a checksum does not verify.
    Restore {
        #[arg(long, env = "BONEBANK_COORDINATOR_CONFIG")]
        config: PathBuf,
        /// The backup's folder.
        from: PathBuf,
        /// Put the current history aside rather than refuse.
        #[arg(long)]
        replace: bool,
    },
}

pub fn run_coordinator(cli: CoordinatorCli) -> Result<()> {
    match cli.command {
        CoordinatorCommand::Serve { config } => {
            let config = CoordinatorConfig::load(&config)?;
            bonebank_service::server::runtime()?.block_on(crate::server::serve(config))
        }
        CoordinatorCommand::Doctor { config } => {
            let config = match CoordinatorConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    println!("FAIL config: {e}");
                    return Err(crate::Error::Usage(
                        "the config does not load; nothing else was checked".into(),
                    ));
                }
            };
            let findings =
                bonebank_service::server::runtime()?.block_on(crate::doctor::run(&config));
            Ok(bonebank_service::doctor::report(&findings)?)
        }
        CoordinatorCommand::Backup { config, to } => {
            let config = CoordinatorConfig::load(&config)?;
            let (dir, entries) = crate::backup::backup(&config, &to)?;
            println!(
                "backed up the coordinator's history ({entries} questions) to {}",
                dir.display()
            );
            Ok(())
        }
        CoordinatorCommand::Restore {
            config,
            from,
            replace,
        } => {
            let config = CoordinatorConfig::load(&config)?;
            let entries = crate::backup::restore(&config, &from, replace)?;
            println!(
                "restored the coordinator's history ({entries} questions) from {}; start the coordinator (everyone signs in again)",
                from.display()
            );
            Ok(())
        }
    }
}
