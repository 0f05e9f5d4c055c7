//! `bonebank-dev`: the development tools. The one-command demo, the
//! development PKI and identity provider, the accuracy evaluation and the
//! benchmarks. Nothing here runs at a real site.

use std::path::PathBuf;

use bonebank_schemas::SiteId;
use clap::{Parser, Subcommand};

use crate::pki::{self, PkiDir};
use crate::{Error, Result, bench, demo, devidp};

/// Development tools of bonebank: the demo network, a development PKI and
/// identity provider, the accuracy evaluation, benchmarks.
#[derive(Debug, Parser)]
#[command(name = "bonebank-dev", version, about)]
pub struct DevCli {
    #[command(subcommand)]
    pub command: DevCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Creates a development CA and certificates.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Runs three synthetic sites and a coordinator on this machine.
    Demo {
        /// Directory for data, certificates and state (must be new or
        /// empty); a temporary directory, removed at the end, if absent.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Donors per site.
        #[arg(long, default_value_t = 20_000)]
        donors: u64,
        /// Deadline for the sites' answers, in milliseconds.
        #[arg(long, default_value_t = 3_000)]
        deadline_ms: u64,
        /// A site whose node connects out to the coordinator, as a node
        /// behind a hospital firewall does (repeatable), e.g. DK-NAE.
        #[arg(long = "outbound")]
        outbound: Vec<SiteId>,
    },
    /// Runs the DEVELOPMENT identity provider alone (for the example
    /// configs): demo users sign in without a password. Loopback only.
    Idp {
        /// Where to listen; must be a loopback address.
        #[arg(long, default_value = "127.0.0.1:7109")]
        listen: std::net::SocketAddr,
        /// Sites to make a demo steward for (repeatable); the demo sites if
        /// absent.
        #[arg(long = "site")]
        sites: Vec<SiteId>,
    },
    /// Measures how precise and honest answers are: the demo sites asked a
    /// fixed set of questions many times, every released cell compared with
    /// the true count, for bonebank's defaults and a focus-style scheme.
    Eval {
        /// Directory for the generated sites (reused if they are there); a
        /// temporary directory if absent.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Donors per site.
        #[arg(long, default_value_t = 20_000)]
        donors: u64,
        /// Releases per question and site.
        #[arg(long, default_value_t = 20)]
        releases: usize,
        /// Only these questions, by number (`Q14`; repeatable), and no
        /// bound sweep; every question if absent.
        #[arg(long = "question")]
        questions: Vec<String>,
        /// Evaluates the sites' catalogues instead: the share of questions
        /// they answer, coverage and half-widths (`--releases` catalogues
        /// per site).
        #[arg(long)]
        catalogue: bool,
    },
    /// Measures a node, an import or the network on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// One node over HTTPS (mutual TLS) on a synthetic site: fresh and
    /// remembered questions timed, compared with DuckDB on the same files.
    Node {
        /// Samples in the site.
        #[arg(long, default_value_t = 1_000_000)]
        samples: u64,
        /// Requests per series (at most 400).
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// Imports a synthetic samples CSV and reports rows per second.
    Import {
        /// Rows in the samples file.
        #[arg(long, default_value_t = 1_000_000)]
        samples: u64,
        /// Timed runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// A node process under a long, bounded load: its resident memory
    /// every minute, and the growth after the first minute.
    Soak {
        /// Minutes to run.
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// Samples in the site.
        #[arg(long, default_value_t = 100_000)]
        samples: u64,
        /// Distinct users asking in turn.
        #[arg(long, default_value_t = 2_000)]
        users: usize,
    },
    /// The catalogue: its build time and memory at sites of the given
    /// sizes, and the coordinator's estimates from it with 1 and 16
    /// clients.
    Catalogue {
        /// Samples per site built (repeat the flag for several sizes).
        #[arg(long, default_values_t = [1_000_000u64])]
        samples: Vec<u64>,
        /// Estimates per series.
        #[arg(long, default_value_t = 2_000)]
        estimates: usize,
    },
    /// The network on this machine: three large sites with 1 and 16
    /// clients, then the fan-out to many small nodes.
    Network {
        /// Samples per large site.
        #[arg(long, default_value_t = 1_000_000)]
        samples: u64,
        /// Questions per series.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Node counts for the fan-out series.
        #[arg(long = "small-nodes", value_delimiter = ',', default_values_t = [20usize, 50])]
        small_nodes: Vec<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Writes ca.crt, coordinator.crt/.key and nodes/<SITE>.crt/.key into DIR.
    Init {
        dir: PathBuf,
        /// Sites to issue node certificates for.
        #[arg(long = "site", default_values = ["DE-LUE", "DK-ODE", "DK-NAE"])]
        sites: Vec<SiteId>,
    },
}

pub fn run(cli: DevCli) -> Result<()> {
    match cli.command {
        DevCommand::Pki(PkiCommand::Init { dir, sites }) => {
            let pki = PkiDir::new(&dir);
            pki.init(&sites)?;
            println!(
                "development CA and certificates written to {}",
                dir.display()
            );
            println!("  CA:          {}", pki.ca_cert().display());
            println!(
                "  coordinator: {} (name {})",
                pki.coordinator_cert().display(),
                pki::COORDINATOR_NAME
            );
            println!(
                "  grants:      {} (signs), {} (the nodes trust it)",
                pki.grant_key().display(),
                pki.grant_public_key().display()
            );
            for s in &sites {
                println!(
                    "  node {s}:  {} (name {})",
                    pki.node_cert(s).display(),
                    pki::node_name(s)
                );
            }
            Ok(())
        }
        DevCommand::Demo {
            dir,
            donors,
            deadline_ms,
            outbound,
        } => runtime()?.block_on(demo::run(demo::DemoOptions {
            dir,
            donors,
            deadline_ms,
            outbound,
        })),
        DevCommand::Eval {
            dir,
            donors,
            releases,
            questions,
            catalogue,
        } => {
            let report = runtime()?.block_on(crate::eval::run(crate::eval::EvalOptions {
                dir,
                donors,
                releases: releases.max(1),
                questions,
                catalogue,
            }))?;
            print!("{report}");
            Ok(())
        }
        DevCommand::Idp { listen, sites } => {
            let sites = if sites.is_empty() {
                crate::local::demo_sites()
            } else {
                sites
            };
            let names: Vec<String> = sites.iter().map(ToString::to_string).collect();
            runtime()?.block_on(async {
                let idp = devidp::DevProvider::start(
                    listen,
                    devidp::DEMO_AUDIENCE,
                    devidp::demo_users(&names),
                    crate::local::DEV_TOKEN_TTL,
                )?;
                println!(
                    "DEVELOPMENT identity provider (never at a site): {}",
                    idp.issuer()
                );
                for user in idp.users() {
                    println!("  {:<16} {}", user.name, user.role);
                }
                tokio::signal::ctrl_c()
                    .await
                    .map_err(Error::io("signal handler"))?;
                idp.stop().await;
                Ok(())
            })
        }
        DevCommand::Bench(BenchCommand::Network {
            samples,
            requests,
            small_nodes,
        }) => {
            println!("{}", bench::network::run(samples, requests, &small_nodes)?);
            Ok(())
        }
        DevCommand::Bench(BenchCommand::Catalogue { samples, estimates }) => {
            println!("{}", bench::catalogue::run(&samples, estimates)?);
            Ok(())
        }
        DevCommand::Bench(BenchCommand::Node { samples, requests }) => {
            println!("{}", bench::node::query(samples, requests)?);
            Ok(())
        }
        DevCommand::Bench(BenchCommand::Soak {
            minutes,
            samples,
            users,
        }) => {
            let soak = bench::soak::run(minutes, samples, users)?;
            println!("{soak}");
            if soak.growth_mib() > bench::soak::BOUND_MIB || soak.failures > 0 {
                return Err(Error::Internal(
                    "the node's memory grew beyond the bound, or requests failed".into(),
                ));
            }
            Ok(())
        }
        DevCommand::Bench(BenchCommand::Import { samples, runs }) => {
            println!("{}", bench::node::import(samples, runs)?);
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(bonebank_service::server::runtime()?)
}
