//! Fixtures made by code: small synthetic exports, CSV editing, and snapshots
//! of a directory's bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use bonebank_node::dataset::DataDir;
use bonebank_node::generate::{self, Profile, Spec};
use bonebank_node::import::{self, Problem};
use bonebank_schemas::{SiteId, Table};

pub fn spec(site: &str, donors: u64, seed: u64) -> Spec {
    let site = SiteId::parse(site).unwrap();
    Spec {
        profile: Profile::for_site(&site, None).unwrap(),
        site,
        donors,
        seed,
        max_samples: None,
    }
}

/// A synthetic DE-LUE export (donors.csv, samples.csv, diagnoses.csv) and a
/// data directory into which it was imported.
pub struct Site {
    pub tmp: tempfile::TempDir,
    pub export: PathBuf,
    pub dir: DataDir,
}

impl Site {
    pub fn new(donors: u64) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let export = tmp.path().join("export");
        generate::into_csv(&spec("DE-LUE", donors, 3), &export).unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        import::import(&dir, &Self::all_files(&export)).unwrap();
        Self { tmp, export, dir }
    }

    pub fn all_files(export: &Path) -> Vec<(Table, PathBuf)> {
        [Table::Donors, Table::Samples, Table::Diagnoses]
            .into_iter()
            .map(|t| (t, export.join(format!("{t}.csv"))))
            .collect()
    }

    pub fn csv(&self, table: Table) -> Csv {
        Csv::read(&self.export.join(format!("{table}.csv")))
    }

    /// Writes `csv` under `name` in the temp dir and returns its path.
    pub fn write(&self, name: &str, csv: &Csv) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, csv.to_string()).unwrap();
        path
    }
}

/// A CSV file as rows of cells. Generated exports never quote, so splitting on
/// commas is exact for them.
#[derive(Clone)]
pub struct Csv {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Csv {
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text
            .lines()
            .map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>());
        let header = lines.next().unwrap();
        Self {
            header,
            rows: lines.collect(),
        }
    }

    pub fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    /// Sets a cell; `row` counts data rows from 1, as import's messages do.
    pub fn set(&mut self, row: usize, column: &str, value: &str) -> &mut Self {
        let c = self.col(column);
        self.rows[row - 1][c] = value.to_owned();
        self
    }

    pub fn get(&self, row: usize, column: &str) -> &str {
        &self.rows[row - 1][self.col(column)]
    }
}

impl std::fmt::Display for Csv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.header.join(","))?;
        for r in &self.rows {
            writeln!(f, "{}", r.join(","))?;
        }
        Ok(())
    }
}

/// Every file under `dir` with its bytes; equal snapshots mean an unchanged tree.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    if !dir.exists() {
        return files;
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), Vec::new());
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Imports and expects a refusal; returns its problems (the first 20 in full).
pub fn refused(dir: &DataDir, files: &[(Table, PathBuf)]) -> (u64, Vec<Problem>) {
    match import::import(dir, files) {
        Err(import::Error::Refused(p)) => (p.total(), p.shown().to_vec()),
        Err(other) => panic!("expected a refusal, got error {other}"),
        Ok(r) => panic!("expected a refusal, import succeeded: {:?}", r.rows),
    }
}

/// The identity section every node config file needs; tests put it last so
/// that the lines above keep their numbers.
pub const OIDC_SECTION: &str =
    "\n[oidc]\nissuer = \"http://127.0.0.1:7109\"\naudience = \"bonebank\"\n";

/// A generated site with a node config pointing at it, in a temp dir.
pub struct TestSite {
    pub tmp: tempfile::TempDir,
    pub config: bonebank_node::config::NodeConfig,
}

impl TestSite {
    pub fn new(site: &str, donors: u64, policy: bonebank_query::policy::Policy) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        generate::into_data_dir(&spec(site, donors, 5), &data).unwrap();
        let config = bonebank_node::config::NodeConfig {
            site_id: SiteId::parse(site).unwrap(),
            data_dir: data.path().to_owned(),
            state_dir: tmp.path().join("state"),
            listen: "127.0.0.1:0".parse().unwrap(),
            // Service-level tests pass callers directly; HTTP tests start a
            // development provider and point this at it.
            oidc: bonebank_service::oidc::OidcSettings {
                issuer: "http://127.0.0.1:9".into(),
                audience: "bonebank".into(),
                leeway_seconds: 30,
                claims: Default::default(),
                ca: None,
            },
            tls: None,
            policy,
            limits: Default::default(),
            steward_pages: None,
            outbound: None,
            notify: None,
        };
        Self { tmp, config }
    }

    /// Writes a config file for this site's directories (plus `policy`, TOML
    /// text) beside them, as an operator would, and returns its path.
    pub fn write_config(&self, policy: &str) -> PathBuf {
        let path = self.tmp.path().join("node.toml");
        std::fs::write(
            &path,
            format!(
                "site_id = {:?}\ndata_dir = {:?}\nstate_dir = {:?}\n{policy}{OIDC_SECTION}",
                self.config.site_id.as_str(),
                self.config.data_dir,
                self.config.state_dir
            ),
        )
        .unwrap();
        path
    }

    pub fn dir(&self) -> DataDir {
        DataDir::new(&self.config.data_dir)
    }

    /// A service with the given noise (fresh state handles each call, as a
    /// restarted node would have).
    pub fn service(
        &self,
        noise: std::sync::Arc<dyn bonebank_node::privacy::NoiseMechanism>,
    ) -> bonebank_node::service::QueryService {
        bonebank_node::server::state_with_noise(&self.config, noise)
            .unwrap()
            .service
    }
}

pub fn caller(
    user: &str,
    project: &str,
    role: bonebank_schemas::Role,
) -> bonebank_node::service::Caller {
    bonebank_node::service::Caller {
        user: user.into(),
        project: project.into(),
        role,
        sites: Vec::new(),
        email: None,
    }
}

pub fn sql(text: &str, loss: f64) -> bonebank_schemas::wire::QueryRequest {
    bonebank_schemas::wire::QueryRequest {
        sql: Some(text.into()),
        query: None,
        loss: Some(loss),
        purpose: None,
    }
}

/// The default policy with pure ε accounting, for tests whose losses and
/// budgets are written in ε.
pub fn pure() -> bonebank_query::policy::Policy {
    bonebank_query::policy::Policy {
        accounting: bonebank_schemas::wire::Accounting::Pure,
        ..bonebank_query::policy::Policy::default()
    }
}

/// A policy rule matching every question, with the given action.
pub fn rule(action: bonebank_query::policy::Action) -> bonebank_query::policy::Rule {
    bonebank_query::policy::Rule {
        role: None,
        projects: None,
        measures: None,
        min_dimensions: None,
        dimensions: None,
        loss_above: None,
        action,
        reason: None,
        approvals_required: None,
    }
}

/// A steward's token of `site`, as the identity provider states it.
pub fn steward_caller(site: &str) -> bonebank_node::service::Caller {
    bonebank_node::service::Caller {
        sites: vec![site.into()],
        ..caller("sam", "stewardship", bonebank_schemas::Role::Steward)
    }
}

/// A data steward of `site`, admitted as the `Steward` extractor admits one.
pub fn steward(site: &str) -> bonebank_node::service::Steward {
    bonebank_node::service::Steward::admit(steward_caller(site), site)
        .expect("a steward of the site")
}

pub fn approve() -> bonebank_schemas::wire::ApprovalDecision {
    bonebank_schemas::wire::ApprovalDecision {
        decision: "approve".into(),
        reason: None,
    }
}

/// The batches without the rows whose `column` `drop` picks: a dataset
/// without some donors, for comparing neighbouring datasets.
pub fn without(
    batches: &[RecordBatch],
    column: &str,
    drop: &dyn Fn(&str) -> bool,
) -> Vec<RecordBatch> {
    batches
        .iter()
        .map(|b| {
            let ids = b.column_by_name(column).unwrap().as_string::<i32>();
            let keep: BooleanArray = ids.iter().map(|v| Some(!drop(v.unwrap()))).collect();
            filter_record_batch(b, &keep).unwrap()
        })
        .collect()
}

/// Runs the `bonebank-node` binary with `args` and `--config config`.
pub fn node_command(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bonebank-node"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}
