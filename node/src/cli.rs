//! The command line of `bonebank-node`: what each command takes, and the thin
//! glue from parsed arguments to the library.

use std::path::PathBuf;

use bonebank_schemas::{SiteId, Table};
use clap::{Parser, Subcommand, ValueEnum};

use crate::dataset::DataDir;
use crate::generate::{self, Profile, ProfileKind, Spec};
use crate::{Error, Result, export, import};

/// A bonebank node: one biobank site's data and, later, its query server.
#[derive(Debug, Parser)]
#[command(name = "bonebank-node", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writes a synthetic dataset that looks like one of the demo sites.
    Generate(GenerateArgs),
    /// Checks a site's export (CSV or Parquet) and imports it as a new dataset version.
    ///
    /// Give one or more tables: `--table donors donors.csv --table samples samples.csv`.
    /// A file with any invalid row changes nothing.
    Import(ImportArgs),
    /// Writes a table of the current dataset version to CSV, in the layout import reads.
    Export(ExportArgs),
    /// Shows the current dataset version, its tables and the versions before it.
    Info(DataDirArg),
    /// Serves differentially private feasibility queries over the site's data.
    Serve {
        /// The node's config file (TOML); see examples/nodes/.
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
    },
    /// Checks or exports the node's hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// A data steward's queue: list waiting queries, approve or reject one.
    #[command(subcommand)]
    Steward(StewardCommand),
    /// The site policy as the node reads it.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The site's published catalogue.
    #[command(subcommand)]
    Catalogue(CatalogueCommand),
    /// Backs the node up while it runs: the state database (ledger,
    /// releases, tickets, catalogues, audit log) with SQLite's online
    /// backup, the current dataset version, and a checksum list.
    Backup {
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        /// A new folder for this backup, e.g. /var/backups/bonebank/2026-12-07.
        #[arg(long)]
        to: PathBuf,
    },
    /// Checks what an operator checks before calling for help: the
    /// config, certificates, the identity provider, the coordinator (in
    /// outbound mode) and the clock, free space, the data directory and
    /// the state. One line per check; exits non-zero if any fails.
    Doctor {
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
    },
    /// Restores the node from a backup, with the node stopped. Refused if
    /// any checksum or the audit chain does not verify.
    Restore {
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        /// The backup's folder.
        from: PathBuf,
        /// Put the node's current state aside (kept beside it as
        /// `.replaced-<time>`) rather than refuse.
        #[arg(long)]
        replace: bool,
    },
    /// Writes the site's yearly report for the data-protection officer, as
    /// HTML and PDF: the privacy loss spent (catalogue releases and fresh
    /// questions, per project and in total, with its (ε, δ)), the
    /// questions answered, refused and held, the stewards' decisions, the
    /// dataset versions and the audit chain's head hash. Runs beside a
    /// serving node.
    Report {
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        /// The calendar year (UTC), e.g. 2026.
        #[arg(long)]
        year: i32,
        /// en, de or da.
        #[arg(long, default_value = "en")]
        language: String,
        /// The folder to write privacy-report-<site>-<year>.html and .pdf to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogueCommand {
    /// Writes the published catalogue: as the BBMRI-ERIC Directory's facts
    /// table for the site's collection with `--directory` (CSV: sample type
    /// × sex × age range × disease, number of samples and of donors, and
    /// the `*` rows), else as the JSON `GET /v1/catalogue` serves. Every
    /// number is the catalogue's differentially private estimate: nothing is
    /// suppressed, and writing it costs nothing.
    Export {
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        /// Write the Directory's facts table.
        #[arg(long)]
        directory: bool,
        /// The collection's Directory id, e.g.
        /// `bbmri-eric:ID:DE_LUE:collection:hip-fracture` (with `--directory`).
        #[arg(long, required_if_eq("directory", "true"))]
        collection: Option<String>,
        /// Output file; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Prints the effective policy, defaults included, as TOML: what the
    /// node enforces after merging its config over the built-in defaults.
    Show {
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum StewardCommand {
    /// Lists queries waiting for a steward of this site.
    List {
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        /// The steward deciding (recorded in the audit log).
        #[arg(long = "as", env = "BONEBANK_STEWARD")]
        steward: String,
    },
    /// Approves a waiting query: reserves the requester's budget, runs it and
    /// stores the answer the requester's next look gets.
    Approve {
        ticket: String,
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        #[arg(long = "as", env = "BONEBANK_STEWARD")]
        steward: String,
    },
    /// Rejects a waiting query; the researcher sees the reason.
    Reject {
        ticket: String,
        #[arg(long)]
        reason: String,
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        #[arg(long = "as", env = "BONEBANK_STEWARD")]
        steward: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Checks the whole chain; names the first entry that was changed,
    /// removed or reordered. Prints the head hash to write down.
    Verify {
        /// The node's config file; the log is in its state directory.
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        /// A head hash written down earlier: it must still be in the log
        /// (this catches entries removed from the end).
        #[arg(long)]
        head: Option<String>,
    },
    /// Writes every entry, with its hash and the one before: JSON lines,
    /// or CSV with `--csv` (or an `--out` ending in `.csv`). Either keeps
    /// the chain, so that `audit verify-export` checks it offline.
    Export {
        #[arg(long, env = "BONEBANK_NODE_CONFIG")]
        config: PathBuf,
        /// Output file; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// CSV instead of JSON lines.
        #[arg(long)]
        csv: bool,
    },
    /// Checks an export's chain offline, without the node: names the first
    /// entry changed, removed or reordered, and prints the head hash.
    VerifyExport {
        /// The exported file (JSON lines or CSV).
        file: PathBuf,
        /// A head hash written down earlier: it must be in the export.
        #[arg(long)]
        head: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Site id, e.g. DE-LUE, DK-ODE or DK-NAE.
    #[arg(long)]
    pub site: SiteId,
    /// Number of donors.
    #[arg(long)]
    pub donors: u64,
    /// Seed of the random stream; the same seed gives identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// `data-dir` writes a node's data directory; `csv` writes donors.csv,
    /// samples.csv and diagnoses.csv as a site's export would.
    #[arg(long, value_enum, default_value_t = OutputFormat::DataDir)]
    pub format: OutputFormat,
    /// The collection profile; the demo sites have their own.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    DataDir,
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The node's data directory (created by the first import).
    #[arg(
        long,
        env = "BONEBANK_DATA_DIR",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub data_dir: Option<PathBuf>,
    /// Or the node's config file: imports into its data directory and
    /// records the import (the files and the new version) in the node's
    /// audit log.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A table and the file holding it: donors, samples or diagnoses, then a
    /// .csv or .parquet path. Repeat to import several tables as one version.
    #[arg(long = "table", num_args = 2, value_names = ["TABLE", "FILE"], required_unless_present = "fhir")]
    pub tables: Vec<String>,
    /// Or FHIR R4: a collection or transaction Bundle (.json), or resources
    /// one per line (.ndjson), of Patient, Specimen and Condition under the
    /// BBMRI.de profiles. Repeat for several files; together they replace
    /// all three tables as one version.
    #[arg(long, conflicts_with = "tables", requires = "consent")]
    pub fhir: Vec<PathBuf>,
    /// With --fhir: what every donor consented to, which FHIR bundles do not
    /// say: `none`, or a list of research, commercial, genetic, autologous,
    /// allogeneic, e.g. `research,genetic`.
    #[arg(long)]
    pub consent: Option<crate::import::fhir::Consents>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The node's data directory.
    #[arg(long, env = "BONEBANK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// donors, samples or diagnoses.
    #[arg(long)]
    pub table: Table,
    /// The CSV file to write.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    /// The node's data directory.
    #[arg(long, env = "BONEBANK_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// `bonebank-node steward …`: acts on the node's own state as a steward of
/// its site (the operator's shell on the node's machine is trusted with that).
fn run_steward(command: StewardCommand) -> Result<()> {
    use bonebank_schemas::wire::ApprovalDecision;
    let (config, steward) = match &command {
        StewardCommand::List { config, steward }
        | StewardCommand::Approve {
            config, steward, ..
        }
        | StewardCommand::Reject {
            config, steward, ..
        } => (config, steward),
    };
    let config = crate::config::NodeConfig::load(config)?;
    let service = crate::server::state(&config)?.service;
    let who = crate::service::Steward::on_site_machine(steward, config.site_id.as_str());
    bonebank_service::server::runtime()?.block_on(async {
        match command {
            StewardCommand::List { .. } => {
                let pending = service.approvals(&who).await?;
                if pending.is_empty() {
                    println!("no queries are waiting at {}", config.site_id);
                }
                for p in pending {
                    println!("ticket {}  (expires {})", p.ticket, p.expires);
                    println!("  from     {} ({}), project {}", p.user, p.role, p.project);
                    println!(
                        "  loss     {}  (user has {} left, project {})",
                        p.loss, p.user_remaining, p.project_remaining
                    );
                    println!("  query    {}", p.sql);
                }
            }
            StewardCommand::Approve { ticket, .. } => {
                let decision = ApprovalDecision {
                    decision: "approve".into(),
                    reason: None,
                };
                let s = service.decide(&who, &ticket, &decision).await?;
                println!(
                    "ticket {} {}; the requester's next look gets the answer",
                    s.ticket, s.state
                );
            }
            StewardCommand::Reject { ticket, reason, .. } => {
                let decision = ApprovalDecision {
                    decision: "reject".into(),
                    reason: Some(reason),
                };
                let s = service.decide(&who, &ticket, &decision).await?;
                println!("ticket {} {}", s.ticket, s.state);
            }
        }
        Ok(())
    })
}

/// The state database of the node configured in `config`; it must exist.
fn audit_store(config: &std::path::Path) -> Result<crate::store::Store> {
    let config = crate::config::NodeConfig::load(config)?;
    let db = config.state_db();
    if !db.exists() {
        return Err(Error::Usage(format!(
            "{} does not exist: this node has not run yet",
            db.display()
        )));
    }
    crate::store::Store::open(&db)
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(args) => run_generate(args),
        Command::Import(args) => run_import(args),
        Command::Export(args) => {
            let rows = export::to_csv(&DataDir::new(&args.data_dir), args.table, &args.out)?;
            println!(
                "exported {rows} {} rows to {}",
                args.table,
                args.out.display()
            );
            Ok(())
        }
        Command::Info(args) => run_info(&DataDir::new(args.data_dir)),
        Command::Serve { config } => {
            let config = crate::config::NodeConfig::load(&config)?;
            bonebank_service::server::runtime()?.block_on(crate::server::serve(config))
        }
        Command::Steward(command) => run_steward(command),
        Command::Doctor { config } => {
            let config = match crate::config::NodeConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    println!("FAIL config: {e}");
                    return Err(Error::Usage(
                        "the config does not load; nothing else was checked".into(),
                    ));
                }
            };
            let findings =
                bonebank_service::server::runtime()?.block_on(crate::doctor::run(&config));
            Ok(bonebank_service::doctor::report(&findings)?)
        }
        Command::Report {
            config,
            year,
            language,
            out,
        } => {
            if !["en", "de", "da"].contains(&language.as_str()) {
                return Err(Error::Usage(format!("--language {language}: en, de or da")));
            }
            let store = audit_store(&config)?;
            let config = crate::config::NodeConfig::load(&config)?;
            let facts = crate::report::Facts::gather(
                &store,
                config.site_id.as_str(),
                &config.policy,
                year,
            )?;
            let report = crate::report::Report::new(&facts, &language);
            std::fs::create_dir_all(&out).map_err(Error::io(&out))?;
            let stem = out.join(crate::report::Report::file_stem(&facts));
            let (html, pdf) = (stem.with_extension("html"), stem.with_extension("pdf"));
            crate::report::write_whole(&html, report.html().as_bytes())?;
            crate::report::write_whole(&pdf, &report.pdf()?)?;
            let c = &facts.counted;
            println!(
                "{} {year}: {} releases, loss {} in total ({} catalogue, {} fresh); {} questions answered fresh, {} refused; audit chain {}",
                config.site_id,
                c.total.releases,
                c.total.loss(),
                c.catalogue.loss(),
                c.fresh.loss(),
                c.questions.released,
                c.questions.refused,
                match &facts.chain {
                    Ok(i) => format!("intact, head {}", i.head),
                    Err(why) => format!("BROKEN: {why}"),
                }
            );
            println!("wrote {}\nwrote {}", html.display(), pdf.display());
            Ok(())
        }
        Command::Backup { config, to } => {
            let config = crate::config::NodeConfig::load(&config)?;
            let made = crate::backup::backup(&config, &to)?;
            println!(
                "backed up {} to {}: {made}",
                config.site_id,
                made.dir.display()
            );
            Ok(())
        }
        Command::Restore {
            config,
            from,
            replace,
        } => {
            let config = crate::config::NodeConfig::load(&config)?;
            let done = crate::backup::restore(&config, &from, replace)?;
            println!(
                "restored {} from {}: {done}; start the node",
                config.site_id,
                done.dir.display()
            );
            Ok(())
        }
        Command::Policy(PolicyCommand::Show { config }) => {
            let config = crate::config::NodeConfig::load(&config)?;
            print_out(
                &config
                    .policy
                    .to_toml(&config.site_id)
                    .map_err(Error::Usage)?,
            )
        }
        Command::Audit(AuditCommand::Verify { config, head }) => {
            let store = audit_store(&config)?;
            let intact = store.verify_audit()?.map_err(Error::AuditBroken)?;
            if let Some(head) = head
                && !store.has_audit_hash(&head)?
            {
                return Err(Error::AuditBroken(crate::audit::Broken {
                    seq: intact.entries + 1,
                    why: format!(
                        "the recorded head {head} is not in the log: entries after it were removed"
                    ),
                }));
            }
            println!(
                "audit log intact: {} entries, head {}",
                intact.entries, intact.head
            );
            Ok(())
        }
        Command::Catalogue(CatalogueCommand::Export {
            config,
            directory,
            collection,
            out,
        }) => {
            let store = audit_store(&config)?;
            let json = store.latest_catalogue()?.ok_or_else(|| {
                Error::Usage(
                    "this node has published no catalogue yet: it measures one when it is first asked for it (GET /v1/catalogue)".into(),
                )
            })?;
            let catalogue: bonebank_schemas::wire::Catalogue = serde_json::from_str(&json)
                .map_err(|e| Error::Engine(format!("stored catalogue: {e}")))?;
            let text = if directory {
                use bonebank_query::catalogue::directory;
                let facts = directory::facts(&catalogue).map_err(Error::Usage)?;
                let collection = collection.expect("clap requires it with --directory");
                eprintln!(
                    "{} facts from the catalogue of dataset version {} (measured {}, ρ {:.2}, (ε {:.2}, δ {})): differentially private estimates, none suppressed",
                    facts.len(),
                    catalogue.dataset_version,
                    catalogue.measured_at,
                    catalogue.loss,
                    catalogue.approx_dp.epsilon,
                    catalogue.approx_dp.delta
                );
                directory::to_csv(&catalogue, &facts, &collection)
            } else {
                serde_json::to_string_pretty(&catalogue)
                    .map_err(|e| Error::Engine(e.to_string()))?
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, text).map_err(Error::io(&path))?;
                    println!("wrote {}", path.display());
                    Ok(())
                }
                None => print_out(&text),
            }
        }
        Command::Audit(AuditCommand::VerifyExport { file, head }) => {
            let intact =
                crate::audit::verify_export(&file, head.as_deref())?.map_err(Error::AuditBroken)?;
            println!(
                "export intact: {} entries, head {}",
                intact.entries, intact.head
            );
            Ok(())
        }
        Command::Audit(AuditCommand::Export { config, out, csv }) => {
            let store = audit_store(&config)?;
            let csv = csv
                || out
                    .as_ref()
                    .is_some_and(|p| p.extension().is_some_and(|e| e == "csv"));
            let n = match &out {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(path).map_err(Error::io(path))?,
                    );
                    let n = if csv {
                        store.export_audit_csv(&mut f)?
                    } else {
                        store.export_audit(&mut f)?
                    };
                    std::io::Write::flush(&mut f).map_err(Error::io(path))?;
                    n
                }
                None if csv => store.export_audit_csv(&mut std::io::stdout().lock())?,
                None => store.export_audit(&mut std::io::stdout().lock())?,
            };
            if let Some(path) = out {
                println!("exported {n} audit entries to {}", path.display());
            }
            Ok(())
        }
    }
}

fn run_generate(args: GenerateArgs) -> Result<()> {
    let spec = Spec {
        profile: Profile::for_site(&args.site, args.profile)?,
        site: args.site,
        donors: args.donors,
        seed: args.seed,
        max_samples: None,
    };
    let started = std::time::Instant::now();
    let counts = match args.format {
        OutputFormat::DataDir => {
            let (counts, version) = generate::into_data_dir(&spec, &DataDir::new(&args.out))?;
            println!("dataset version {}", version.id);
            counts
        }
        OutputFormat::Csv => generate::into_csv(&spec, &args.out)?,
    };
    println!(
        "generated {}: {} donors, {} samples, {} diagnoses in {:.1} s → {}",
        spec.site,
        counts.donors,
        counts.samples,
        counts.diagnoses,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

fn run_import(args: ImportArgs) -> Result<()> {
    let files = args
        .tables
        .chunks(2)
        .map(|pair| {
            let table = pair[0]
                .parse::<Table>()
                .map_err(|e| Error::Usage(e.to_string()))?;
            Ok((table, PathBuf::from(&pair[1])))
        })
        .collect::<Result<Vec<_>>>()?;
    let config = args
        .config
        .as_deref()
        .map(crate::config::NodeConfig::load)
        .transpose()?;
    let data_dir = match (&config, &args.data_dir) {
        (Some(c), _) => c.data_dir.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => return Err(Error::Usage("give --data-dir or --config".into())),
    };
    let report = match &args.consent {
        Some(consents) if !args.fhir.is_empty() => {
            import::fhir::import(&DataDir::new(&data_dir), &args.fhir, *consents)?
        }
        _ => import::import(&DataDir::new(&data_dir), &files)?,
    };
    let files: Vec<(String, String)> = if args.fhir.is_empty() {
        files
            .iter()
            .map(|(t, f)| (t.to_string(), f.display().to_string()))
            .collect()
    } else {
        let names: Vec<String> = args.fhir.iter().map(|f| f.display().to_string()).collect();
        vec![("fhir".to_owned(), names.join(", "))]
    };
    if let Some(config) = &config {
        let store = crate::store::Store::open(&config.state_db())?;
        // Which files became which version; no row counts, which are exact
        // counts of the site's data.
        let tables: serde_json::Map<String, serde_json::Value> = files
            .iter()
            .map(|(t, f)| (t.clone(), f.clone().into()))
            .collect();
        store.audit(
            "import",
            &std::env::var("USER").unwrap_or_else(|_| "operator".into()),
            &serde_json::json!({ "version": report.version.id, "files": tables }),
        )?;
    }
    let total: u64 = report.rows.values().sum();
    for (table, rows) in &report.rows {
        println!("imported {rows} {table} rows");
    }
    println!(
        "dataset version {} is current ({:.2} s, {:.0} rows/s)",
        report.version.id,
        report.elapsed.as_secs_f64(),
        total as f64 / report.elapsed.as_secs_f64()
    );
    Ok(())
}

fn run_info(dir: &DataDir) -> Result<()> {
    use std::fmt::Write as _;
    let manifest = dir.manifest()?;
    let Some(current) = manifest.current else {
        return print_out(&format!("{} holds no dataset yet\n", dir.path().display()));
    };
    let mut out = String::new();
    writeln!(
        out,
        "dataset version {} (created {})",
        current.id, current.created_at
    )
    .expect("a String takes writes");
    writeln!(out, "  {}", current.change).expect("a String takes writes");
    for (table, file) in &current.tables {
        writeln!(out, "  {table:<10} {:>10} rows  {}", file.rows, file.file)
            .expect("a String takes writes");
    }
    if !manifest.history.is_empty() {
        out.push_str("earlier versions:\n");
        for v in manifest.history.iter().rev() {
            writeln!(out, "  {} {}", v.id, v.change).expect("a String takes writes");
        }
    }
    print_out(&out)
}

/// Writes `text` to standard output. A reader that has gone (`… | head -3`)
/// is no error: what it wanted it got.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("standard output")(e))
        }
        _ => Ok(()),
    }
}
