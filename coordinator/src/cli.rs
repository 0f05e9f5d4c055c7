//! The command lines of `bonebank-coordinator` (operators) and `bonebank`
//! (researchers).

use std::path::PathBuf;

use bonebank_schemas::SiteId;
use bonebank_schemas::wire::FederatedRequest;
use clap::{Parser, Subcommand};

use crate::client::{Client, ClientError};
use crate::config::CoordinatorConfig;
use crate::pki::PkiDir;
use crate::{Error, Result, demo, login, render};

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
    },
    /// Runs the DEVELOPMENT identity provider alone (for the example
    /// configs): demo users sign in without a password. Loopback only.
    DevIdp {
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
    },
    /// Measures the network on this machine: three large sites with 1 and 16
    /// clients, then the fan-out to many small nodes.
    Bench {
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

pub fn run_coordinator(cli: CoordinatorCli) -> Result<()> {
    match cli.command {
        CoordinatorCommand::Pki(PkiCommand::Init { dir, sites }) => {
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
                crate::pki::COORDINATOR_NAME
            );
            for s in &sites {
                println!(
                    "  node {s}:  {} (name {})",
                    pki.node_cert(s).display(),
                    crate::pki::node_name(s)
                );
            }
            Ok(())
        }
        CoordinatorCommand::Serve { config } => {
            let config = CoordinatorConfig::load(&config)?;
            runtime()?.block_on(crate::server::serve(config))
        }
        CoordinatorCommand::Demo {
            dir,
            donors,
            deadline_ms,
        } => runtime()?.block_on(demo::run(demo::DemoOptions {
            dir,
            donors,
            deadline_ms,
        })),
        CoordinatorCommand::Eval {
            dir,
            donors,
            releases,
        } => {
            let report = runtime()?.block_on(crate::eval::run(crate::eval::EvalOptions {
                dir,
                donors,
                releases: releases.max(1),
            }))?;
            print!("{report}");
            Ok(())
        }
        CoordinatorCommand::DevIdp { listen, sites } => {
            let sites = if sites.is_empty() {
                crate::local::demo_sites()
            } else {
                sites
            };
            let names: Vec<String> = sites.iter().map(ToString::to_string).collect();
            runtime()?.block_on(async {
                let idp = bonebank_node::devidp::DevProvider::start(
                    listen,
                    bonebank_node::devidp::DEMO_AUDIENCE,
                    bonebank_node::devidp::demo_users(&names),
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
        CoordinatorCommand::Bench {
            samples,
            requests,
            small_nodes,
        } => {
            let report = crate::bench::run(samples, requests, &small_nodes)?;
            println!("{report}");
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::io("tokio runtime"))
}

/// Ask a bonebank network what samples exist.
#[derive(Debug, Parser)]
#[command(name = "bonebank", version, about)]
pub struct ResearcherCli {
    /// The coordinator's URL, as `bonebank-coordinator demo` prints it.
    #[arg(long, global = true, env = "BONEBANK_COORDINATOR")]
    pub coordinator: Option<String>,
    #[command(subcommand)]
    pub command: ResearcherCommand,
}

#[derive(Debug, Subcommand)]
pub enum ResearcherCommand {
    /// Signs in to the coordinator's identity provider (device flow: open
    /// the address shown and enter the code) and keeps the tokens in your
    /// config directory, readable by you only.
    Login {
        /// The demo only: sign in as this demo user without a browser
        /// (alice, ingrid, steward-de-lue, …). Refused unless the coordinator
        /// uses the development identity provider.
        #[arg(long)]
        user: Option<String>,
    },
    /// Forgets your sign-in to the coordinator.
    Logout,
    /// Shows who you are signed in as: user, role, project.
    Whoami,
    /// Runs a feasibility query across the network.
    Query {
        /// The query, in the SQL subset (see the README).
        #[arg(long, conflicts_with = "file")]
        sql: Option<String>,
        /// A file holding the query.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Privacy loss each site spends, in the sites' measure (ρ under
        /// zCDP, ε under pure accounting); the sites' default if absent.
        #[arg(long, alias = "epsilon")]
        loss: Option<f64>,
        /// Only these sites (repeatable).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
        /// Shows what the question would cost at each site and the ± of
        /// every measure at 95%, from public parameters only; nothing is
        /// spent and no data is read.
        #[arg(long)]
        preview: bool,
    },
    /// Shows a question from your history again; sites that were waiting
    /// for approval are asked again.
    Look {
        /// The number `bonebank query` printed.
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Lists the network's sites and their privacy settings.
    Sites {
        #[arg(long)]
        json: bool,
    },
}

fn print_result(result: &bonebank_schemas::wire::FederatedResult, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(result).expect("results serialise")
        );
    } else {
        print!("{}", render::result(result));
    }
}

/// Runs the researcher CLI; the error is the message to print.
pub fn run_researcher(cli: ResearcherCli) -> Result<(), String> {
    let url = cli.coordinator.clone().ok_or(
        "no coordinator given: pass --coordinator URL (the demo prints it) or set BONEBANK_COORDINATOR",
    )?;
    let rt = runtime().map_err(|e| e.to_string())?;
    let cache = login::TokenCache::default_location()?;
    match &cli.command {
        ResearcherCommand::Login { user } => {
            let approver = match user {
                Some(u) => login::Approver::DemoUser(u.clone()),
                None => login::Approver::Show,
            };
            let signed_in = rt.block_on(login::login(&url, approver, &cache, |p| {
                match &p.verification_uri_complete {
                    Some(complete) => eprintln!(
                        "To sign in, open {complete}\n(or open {} and enter the code {})",
                        p.verification_uri, p.user_code
                    ),
                    None => eprintln!(
                        "To sign in, open {} and enter the code {}",
                        p.verification_uri, p.user_code
                    ),
                }
                eprintln!("Waiting for you to finish in the browser …");
            }))?;
            let client = Client::new(&url, signed_in.access_token).map_err(|e| e.to_string())?;
            let who = rt.block_on(client.whoami()).map_err(|e| e.to_string())?;
            println!(
                "signed in to {url} as {} ({}, project {}); tokens kept in {}",
                who.user,
                who.role,
                who.project,
                cache.path().display()
            );
            return Ok(());
        }
        ResearcherCommand::Logout => {
            if cache.remove(&url)? {
                println!("signed out of {url}");
            } else {
                println!("you were not signed in to {url}");
            }
            return Ok(());
        }
        _ => {}
    }
    let token = rt.block_on(login::access_token(&url, &cache))?;
    let client = Client::new(&url, token).map_err(|e| e.to_string())?;
    let show = |e: ClientError| e.to_string();
    match cli.command {
        ResearcherCommand::Login { .. } | ResearcherCommand::Logout => {
            unreachable!("handled above")
        }
        ResearcherCommand::Whoami => {
            let who = rt.block_on(client.whoami()).map_err(show)?;
            println!("{} ({}, project {})", who.user, who.role, who.project);
            if !who.sites.is_empty() {
                println!("steward of {}", who.sites.join(", "));
            }
        }
        ResearcherCommand::Query {
            sql,
            file,
            loss,
            sites,
            json,
            preview,
        } => {
            let sql = match (sql, file) {
                (Some(s), None) => s,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .map_err(|e| format!("cannot read {}: {e}", f.display()))?,
                _ => return Err("give the query with --sql \"SELECT …\" or --file FILE".into()),
            };
            let request = FederatedRequest {
                sql: Some(sql),
                query: None,
                loss,
                sites: (!sites.is_empty()).then_some(sites),
            };
            if preview {
                let p = rt.block_on(client.preview(&request)).map_err(show)?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&p).expect("previews serialise")
                    );
                } else {
                    print!("{}", render::preview(&p));
                }
                return Ok(());
            }
            let result = rt.block_on(client.query(&request)).map_err(show)?;
            print_result(&result, json);
        }
        ResearcherCommand::Look { id, json } => {
            let result = rt.block_on(client.look_again(id)).map_err(show)?;
            print_result(&result, json);
        }
        ResearcherCommand::Sites { json } => {
            let sites = rt.block_on(client.sites()).map_err(show)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&sites).expect("sites serialise")
                );
            } else {
                print!("{}", render::sites(&sites));
            }
        }
    }
    Ok(())
}
