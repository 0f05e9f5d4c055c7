//! The researcher's command line, `bonebank`: sign in, ask a network,
//! look again at a question waiting for a steward. It talks to a
//! coordinator over HTTP and links neither DataFusion nor OpenDP.

use std::path::PathBuf;

use bonebank_schemas::wire::FederatedRequest;
use clap::{Parser, Subcommand};

use crate::client::{Client, ClientError};
use crate::{login, render};

/// Ask a bonebank network what samples exist.
#[derive(Debug, Parser)]
#[command(name = "bonebank", version, about)]
pub struct ResearcherCli {
    /// The coordinator's URL, as `bonebank-dev demo` prints it.
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
        /// Measures the question afresh at every site (charged as usual)
        /// even where a site's catalogue answers it for free.
        #[arg(long)]
        fresh: bool,
        /// What the question is for, in a sentence: the data stewards of
        /// sites where it needs approval decide with it in front of them.
        #[arg(long)]
        purpose: Option<String>,
        /// A project reference to go with the purpose (an ethics vote, a
        /// grant, a Negotiator request).
        #[arg(long, requires = "purpose")]
        project_ref: Option<String>,
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
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
            fresh,
            purpose,
            project_ref,
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
                fresh,
                purpose: purpose.map(|text| bonebank_schemas::wire::Purpose {
                    text,
                    reference: project_ref,
                }),
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
