//! `bonebank-coordinator eval`: how precise and how honest the answers are.
//!
//! Generates the three demo sites, asks each a fixed set of feasibility
//! questions many times over (every release with fresh noise and, where a
//! bound binds, a fresh choice of which cells a donor keeps), and compares
//! every released cell and its 95% interval with the TRUE count: plain
//! `COUNT(*)` and `COUNT(DISTINCT donor)` over the site's data, with no
//! contribution bound. It does the same for a focus-style scheme (each count
//! with discrete Laplace noise at ε 0.28 assuming sensitivity 1, rounded to
//! 10), and prints per question the coverage of the intervals and the
//! median half-width at each site.
//!
//! The releases go through the node's own query service with the default
//! policy; only the budgets are raised, so that asking the same questions
//! over and over is not refused, and each release gets a store of its own,
//! so that it is fresh rather than remembered.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use bonebank_node::dataset::DataDir;
use bonebank_node::engine::{QueryEngine, SurfaceEngine};
use bonebank_node::privacy::{self, NoiseMechanism, OpenDpNoise, Sensitivity};
use bonebank_node::service::{Caller, QueryService};
use bonebank_node::store::Store;
use bonebank_query::policy::{Budgets, Policy};
use bonebank_schemas::wire::{Accounting, Mechanism, QueryRequest, QueryResult};
use bonebank_schemas::{Role, SiteId};

use crate::truth::Reference;
use crate::{Error, Result};

/// How a question groups, which decides its sensitivity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ungrouped,
    /// By dimensions fixed per donor (site, country, sex).
    DonorLevel,
    /// By at least one sample-level dimension.
    SampleLevel,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Ungrouped => "ungrouped",
            Self::DonorLevel => "donor-level",
            Self::SampleLevel => "sample-level",
        }
    }
}

/// One question of the evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Question {
    pub name: &'static str,
    pub kind: Kind,
    pub sql: &'static str,
}

/// Realistic feasibility questions on the demo sites' collections.
pub const QUESTIONS: &[Question] = &[
    Question {
        name: "Q1 women 50-70, femur fracture, by sample type",
        kind: Kind::SampleLevel,
        sql: "SELECT sample_type, COUNT(DISTINCT donor_id) AS donors, COUNT(*) AS samples \
              FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 50 AND 70 \
              AND diagnosis LIKE 'S72%' GROUP BY sample_type",
    },
    Question {
        name: "Q2 donors with MSC cultures",
        kind: Kind::Ungrouped,
        sql: "SELECT COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE sample_type = 'StemCells'",
    },
    Question {
        name: "Q3 donors with commercial consent",
        kind: Kind::Ungrouped,
        sql: "SELECT COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE consent_commercial = true",
    },
    Question {
        name: "Q4 bone marrow aspirates: donors and samples",
        kind: Kind::Ungrouped,
        sql: "SELECT COUNT(DISTINCT donor_id) AS donors, COUNT(*) AS samples FROM samples \
              WHERE sample_type = 'BoneMarrowAspirate'",
    },
    Question {
        name: "Q5 hip fracture donors by sex",
        kind: Kind::DonorLevel,
        sql: "SELECT sex, COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE diagnosis LIKE 'S72%' GROUP BY sex",
    },
    Question {
        name: "Q6 commercial consent, serum or plasma, by sex",
        kind: Kind::DonorLevel,
        sql: "SELECT sex, COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE consent_commercial = true AND sample_type IN ('Serum', 'Plasma') GROUP BY sex",
    },
    Question {
        name: "Q7 donors per country",
        kind: Kind::DonorLevel,
        sql: "SELECT country, COUNT(DISTINCT donor_id) AS donors FROM samples GROUP BY country",
    },
    Question {
        name: "Q8 femur fracture donors by age band",
        kind: Kind::SampleLevel,
        sql: "SELECT age_band, COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE diagnosis LIKE 'S72%' GROUP BY age_band",
    },
    Question {
        name: "Q9 donors by sample type, commercial consent",
        kind: Kind::SampleLevel,
        sql: "SELECT sample_type, COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE consent_commercial = true GROUP BY sample_type",
    },
    Question {
        name: "Q10 men by diagnosis category",
        kind: Kind::SampleLevel,
        sql: "SELECT diagnosis_3char, COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE sex = 'Male' GROUP BY diagnosis_3char",
    },
    Question {
        name: "Q11 frozen at -80 or colder, by material",
        kind: Kind::SampleLevel,
        sql: "SELECT material_subtype, COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE storage_temperature IN ('-60to-85', 'LN_vapour', 'LN_liquid') \
              GROUP BY material_subtype",
    },
    Question {
        name: "Q12 serum donors by sampling year, since 2015",
        kind: Kind::SampleLevel,
        sql: "SELECT sampling_year, COUNT(DISTINCT donor_id) AS donors FROM samples \
              WHERE sample_type = 'Serum' AND sampling_year >= 2015 GROUP BY sampling_year",
    },
    Question {
        name: "Q13 samples taken since 2004",
        kind: Kind::Ungrouped,
        sql: "SELECT COUNT(*) AS samples FROM samples WHERE sampling_year >= 2004",
    },
    Question {
        name: "Q14 plasma samples",
        kind: Kind::Ungrouped,
        sql: "SELECT COUNT(*) AS samples FROM samples WHERE sample_type = 'Plasma'",
    },
    Question {
        name: "Q15 samples by sample type",
        kind: Kind::SampleLevel,
        sql: "SELECT sample_type, COUNT(*) AS samples FROM samples GROUP BY sample_type",
    },
];

/// The focus-style scheme the evaluation compares with: ε 0.28 per count,
/// sensitivity taken as 1, values rounded to 10.
const FOCUS_EPSILON: f64 = 0.28;
const FOCUS_ROUND: i64 = 10;

#[derive(Debug)]
pub struct EvalOptions {
    /// Where the sites are generated; a temporary directory if absent.
    pub dir: Option<PathBuf>,
    pub donors: u64,
    /// Releases per question and site.
    pub releases: usize,
    /// Only the questions of these numbers (`Q14`), and no bound sweep;
    /// every question if empty.
    pub questions: Vec<String>,
    /// The catalogue's evaluation instead ([`crate::catalogue_eval`]).
    pub catalogue: bool,
}

/// What one scheme did on one measure of one question.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    covered: usize,
    cells: usize,
    covered_nonzero: usize,
    nonzero: usize,
    /// Half-widths per site.
    halfwidths: Vec<Vec<f64>>,
    /// Cells covered and cells, per site.
    per_site: Vec<(usize, usize)>,
    /// Per cell with a TRUE count of at least [`LARGE`], the error of the
    /// interval's midpoint in units of the standard deviation its
    /// half-width states (as a 95% normal interval).
    errors: Vec<f64>,
}

/// The TRUE count from which a cell's error is read against its stated
/// noise: below it, rounding and the bounds at zero move the midpoint.
pub(crate) const LARGE: i64 = 50;

impl Tally {
    pub(crate) fn new(sites: usize) -> Self {
        Self {
            halfwidths: vec![Vec::new(); sites],
            per_site: vec![(0, 0); sites],
            ..Self::default()
        }
    }

    pub(crate) fn add(&mut self, site: usize, truth: i64, interval: [f64; 2]) {
        let t = truth as f64;
        let hit = interval[0] <= t && t <= interval[1];
        self.cells += 1;
        self.covered += usize::from(hit);
        self.per_site[site].0 += usize::from(hit);
        self.per_site[site].1 += 1;
        if truth > 0 {
            self.nonzero += 1;
            self.covered_nonzero += usize::from(hit);
        }
        let halfwidth = (interval[1] - interval[0]) / 2.0;
        self.halfwidths[site].push(halfwidth);
        if truth >= LARGE && halfwidth > 0.0 {
            let midpoint = (interval[0] + interval[1]) / 2.0;
            self.errors
                .push((midpoint - t) / (halfwidth / bonebank_query::catalogue::Z95));
        }
    }

    /// The standardised errors of the cells with a TRUE count of at least
    /// [`LARGE`].
    pub(crate) fn errors(&self) -> &[f64] {
        &self.errors
    }

    /// Cells whose interval covered the TRUE count, and cells.
    pub(crate) fn covered_cells(&self) -> usize {
        self.covered
    }

    pub(crate) fn cells(&self) -> usize {
        self.cells
    }

    pub(crate) fn coverage(&self) -> (f64, f64) {
        let pct = |a: usize, b: usize| {
            if b == 0 {
                100.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        (
            pct(self.covered, self.cells),
            pct(self.covered_nonzero, self.nonzero),
        )
    }

    /// Coverage at each site, in per cent.
    pub(crate) fn per_site(&self) -> Vec<f64> {
        self.per_site
            .iter()
            .map(|&(a, b)| {
                if b == 0 {
                    100.0
                } else {
                    100.0 * a as f64 / b as f64
                }
            })
            .collect()
    }

    /// Adds `other`'s cells (of the same question, other sites).
    pub(crate) fn merge(&mut self, other: &Self) {
        self.covered += other.covered;
        self.cells += other.cells;
        self.covered_nonzero += other.covered_nonzero;
        self.nonzero += other.nonzero;
        for (h, o) in self.halfwidths.iter_mut().zip(&other.halfwidths) {
            h.extend(o);
        }
        for (p, o) in self.per_site.iter_mut().zip(&other.per_site) {
            p.0 += o.0;
            p.1 += o.1;
        }
        self.errors.extend(&other.errors);
    }

    pub(crate) fn medians(&self) -> Vec<f64> {
        self.halfwidths.iter().map(|h| median(h)).collect()
    }
}

pub(crate) fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One demo site ready to be asked.
pub(crate) struct Site {
    pub id: SiteId,
    pub engine: Arc<SurfaceEngine>,
    /// The TRUE counts' source, independent of the engine.
    pub reference: Arc<Reference>,
}

/// A query service over `site` with a state database of its own (so that
/// everything it releases is fresh), and that database's path.
pub(crate) fn fresh_service(
    site: &Site,
    policy: &Policy,
    tmp: &std::path::Path,
    label: &str,
) -> Result<(QueryService, PathBuf)> {
    let path = tmp.join(format!(
        "{}-{label}-{}.sqlite",
        site.id,
        rand::random::<u64>()
    ));
    let service = QueryService::new(
        site.id.clone(),
        policy.clone(),
        site.engine.clone(),
        Arc::new(OpenDpNoise),
        Store::open(&path)?,
    );
    Ok((service, path))
}

/// Removes a state database [`fresh_service`] made, with its journal.
pub(crate) fn remove_store(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// The default policy with budgets too large to run out during the
/// evaluation; everything that shapes the noise is the default.
pub(crate) fn eval_policy(groups: &[(String, i64)]) -> Policy {
    let mut p = Policy::default().with_budgets(Budgets {
        site: 1e6,
        project: 1e6,
        user: 1e6,
    });
    for (d, g) in groups {
        p.groups_per_donor.insert(d.clone(), *g);
    }
    p
}

/// Releases of `sql` at `site` under `policy`, each fresh, with the true
/// counts of each measure per cell.
pub(crate) async fn releases(
    site: &Site,
    policy: &Policy,
    sql: &str,
    n: usize,
    tmp: &std::path::Path,
) -> Result<(Vec<QueryResult>, Vec<Vec<i64>>)> {
    let who = Caller {
        user: "eval".into(),
        project: "eval".into(),
        role: Role::Researcher,
        sites: Vec::new(),
        email: None,
    };
    let request = QueryRequest {
        sql: Some(sql.into()),
        query: None,
        loss: None,
        purpose: None,
    };
    let mut out = Vec::new();
    let mut truth = None;
    for i in 0..n {
        // A store per release: the same question again is a fresh release.
        let (service, path) = fresh_service(site, policy, tmp, "release")?;
        let service = service.with_limits(bonebank_node::limits::WorkLimits::unthrottled());
        let released = service.run(&who, &request).await?;
        if i == 0 {
            // The TRUE counts come from the reference; the engine's own
            // unbounded pass must agree with them cell for cell.
            let cells = site.reference.counts(&released.query, &released.dimensions);
            let reference: Vec<Vec<i64>> = released
                .measures
                .iter()
                .map(|m| {
                    released
                        .rows
                        .iter()
                        .map(|row| {
                            Reference::value(&cells, &m.measure, &row.key).ok_or_else(|| {
                                Error::Usage(format!("no TRUE count for {}", m.label))
                            })
                        })
                        .collect::<Result<Vec<i64>>>()
                })
                .collect::<Result<_>>()?;
            let q = QueryService::parse(&request)?;
            let checked = service.check(&who, &q, None)?;
            let engine = site
                .engine
                .true_counts(&service.plan_now(&checked).await?)
                .await?;
            if engine != reference {
                return Err(Error::Internal(format!(
                    "{}: the engine's unbounded counts {engine:?} differ from the reference's {reference:?} for {sql}",
                    site.id
                )));
            }
            truth = Some(reference);
        }
        out.push(released);
        drop(service);
        remove_store(&path);
    }
    Ok((out, truth.expect("at least one release")))
}

/// The sample bounds a fresh store measures at `site`, as a line of text.
async fn measured_bounds(site: &Site, policy: &Policy, tmp: &std::path::Path) -> Result<String> {
    let (service, path) = fresh_service(site, policy, tmp, "bounds")?;
    let who = Caller {
        user: "eval".into(),
        project: "eval".into(),
        role: Role::Researcher,
        sites: Vec::new(),
        email: None,
    };
    let q = QueryService::parse(&QueryRequest {
        sql: Some("SELECT COUNT(*) FROM samples".into()),
        query: None,
        loss: None,
        purpose: None,
    })?;
    // A preview measures them (charged to the site) and reads no more.
    service
        .preview(
            &who,
            &QueryRequest {
                sql: None,
                query: Some(q),
                loss: None,
                purpose: None,
            },
        )
        .await?;
    // As stored (the evaluation's raised budgets cannot be described).
    let version = site.engine.dataset_version()?.unwrap_or_default();
    let stored = service.store().sample_bounds(&version)?;
    let bounds = stored.and_then(|json| {
        serde_json::from_str::<bonebank_schemas::wire::SampleBoundsDescription>(&json).ok()
    });
    let line = match bounds {
        Some(b) => b
            .per_type
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => "not measured".into(),
    };
    drop(service);
    remove_store(&path);
    Ok(line)
}

/// The focus-style release of true counts: Laplace noise for sensitivity
/// 1 at ε 0.28, rounded to 10; the interval is the noise's 95% interval
/// widened by the rounding.
fn focus(truth: &[i64]) -> Result<Vec<(i64, [f64; 2])>> {
    let c = OpenDpNoise.calibrate(
        Accounting::Pure,
        Sensitivity { l1: 1, l2: 1.0 },
        FOCUS_EPSILON,
    )?;
    let noised = OpenDpNoise.release(truth, &c)?;
    let t = privacy::halfwidth(Mechanism::DiscreteLaplace, c.scale, 0.95) as f64
        + (FOCUS_ROUND / 2) as f64;
    Ok(noised
        .values
        .iter()
        .map(|&v| {
            let r = (v as f64 / FOCUS_ROUND as f64).round() * FOCUS_ROUND as f64;
            (r as i64, [r - t, r + t])
        })
        .collect())
}

/// The three demo sites under `root`, each generated with `donors` donors
/// unless it is there already, with its engine and its reference.
pub(crate) async fn demo_sites(root: &std::path::Path, donors: u64) -> Result<Vec<Site>> {
    let categories = Policy::default().diagnosis_categories;
    let mut sites = Vec::new();
    for (i, id) in crate::local::demo_sites().into_iter().enumerate() {
        eprintln!("generating {donors} donors for {id} …");
        let dir = root.join(id.to_string()).join("data");
        if DataDir::new(&dir).current()?.is_none() {
            let (r, s) = (root.to_owned(), id.clone());
            tokio::task::spawn_blocking(move || {
                crate::local::generate_site(&r, &s, donors, 1 + i as u64)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        }
        let engine = SurfaceEngine::new(DataDir::new(&dir), id.clone(), categories.clone());
        let (d, s, c) = (DataDir::new(&dir), id.clone(), categories.clone());
        let reference = tokio::task::spawn_blocking(move || Reference::read(&d, &s, &c))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        sites.push(Site {
            id,
            engine: Arc::new(engine),
            reference: Arc::new(reference),
        });
    }
    Ok(sites)
}

pub async fn run(options: EvalOptions) -> Result<String> {
    let (root, _tmp) = match &options.dir {
        Some(d) => (d.clone(), None),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("bonebank-eval-")
                .tempdir()
                .map_err(Error::io(std::env::temp_dir()))?;
            (tmp.path().to_owned(), Some(tmp))
        }
    };
    let scratch = root.join("releases");
    std::fs::create_dir_all(&scratch).map_err(Error::io(&scratch))?;
    let sites = demo_sites(&root, options.donors).await?;

    if options.catalogue {
        let policy = eval_policy(&[]);
        return crate::catalogue_eval::report(&sites, &policy, options.releases, &scratch).await;
    }
    let mut out = String::new();
    let policy = eval_policy(&[]);
    // As stated by the default policy (the evaluation's budgets are raised).
    let z = Policy::default().zcdp;
    writeln!(
        out,
        "bonebank eval: {} donors per demo site ({}), {} releases per question and site",
        options.donors,
        sites
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        options.releases
    )
    .unwrap();
    writeln!(
        out,
        "bonebank: zCDP, ρ {} per question (a user's ρ {} per {} days is ({:.2}, {:e})-DP), \
         S = samples per donor and cell from the bounds each site measures per dataset version \
         (ρ {}, at most {}; measured anew for every release here), G per sample-level dimension {}; \
         intervals against the TRUE unbounded counts",
        z.rho.default,
        z.budget.user,
        policy.budget_period_days,
        privacy::zcdp_epsilon(z.budget.user, z.delta)?,
        z.delta,
        z.sample_bounds.loss,
        z.sample_bounds.ceiling,
        policy
            .groups_per_donor
            .iter()
            .map(|(d, g)| format!("{d} {g}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    writeln!(
        out,
        "focus-style: discrete Laplace ε {FOCUS_EPSILON} per count with Δ = 1, rounded to \
         {FOCUS_ROUND}; interval = 95% noise interval ± {}",
        FOCUS_ROUND / 2
    )
    .unwrap();
    writeln!(out).unwrap();
    writeln!(
        out,
        "{:<50} {:<12} {:<8} {:<9} {:>8} {:>9}  {:<22} half-width per site (median)",
        "question", "grouping", "measure", "scheme", "coverage", "non-empty", "coverage per site"
    )
    .unwrap();
    let number = |q: &Question| q.name.split(' ').next().unwrap_or_default().to_owned();
    if let Some(unknown) = options
        .questions
        .iter()
        .find(|n| !QUESTIONS.iter().any(|q| number(q).eq_ignore_ascii_case(n)))
    {
        return Err(Error::Usage(format!(
            "there is no question {unknown}; the questions are Q1 to Q{}",
            QUESTIONS.len()
        )));
    }
    let chosen = |q: &Question| {
        options.questions.is_empty()
            || options
                .questions
                .iter()
                .any(|n| number(q).eq_ignore_ascii_case(n))
    };
    for q in QUESTIONS.iter().filter(|q| chosen(q)) {
        eprintln!("{} …", q.name);
        let mut bonebank: Vec<Tally> = Vec::new();
        let mut peers: Vec<Tally> = Vec::new();
        let mut labels = Vec::new();
        for (s, site) in sites.iter().enumerate() {
            let (results, truth) =
                releases(site, &policy, q.sql, options.releases, &scratch).await?;
            if bonebank.is_empty() {
                labels = results[0]
                    .measures
                    .iter()
                    .map(|m| m.label.clone())
                    .collect();
                bonebank = vec![Tally::new(sites.len()); labels.len()];
                peers = vec![Tally::new(sites.len()); labels.len()];
            }
            for r in &results {
                for (m, tally) in bonebank.iter_mut().enumerate() {
                    for (row, t) in r.rows.iter().zip(&truth[m]) {
                        tally.add(s, *t, row.values[m].interval);
                    }
                }
            }
            for _ in 0..options.releases {
                for (m, tally) in peers.iter_mut().enumerate() {
                    for ((_, interval), t) in focus(&truth[m])?.into_iter().zip(&truth[m]) {
                        tally.add(s, *t, interval);
                    }
                }
            }
        }
        for (m, label) in labels.iter().enumerate() {
            for (scheme, tally) in [("bonebank", &bonebank[m]), ("focus", &peers[m])] {
                let (all, nonzero) = tally.coverage();
                let medians: Vec<String> =
                    tally.medians().iter().map(|h| format!("±{h:.0}")).collect();
                let per_site: Vec<String> = tally
                    .per_site()
                    .iter()
                    .map(|c| format!("{c:.1}%"))
                    .collect();
                writeln!(
                    out,
                    "{:<50} {:<12} {:<8} {:<9} {:>7.1}% {:>8.1}%  {:<22} {}",
                    q.name,
                    q.kind.label(),
                    label,
                    scheme,
                    all,
                    nonzero,
                    per_site.join(" "),
                    medians.join(" ")
                )
                .unwrap();
            }
        }
    }

    // What one measurement of the sample bounds gives at each site.
    writeln!(out).unwrap();
    writeln!(
        out,
        "sample bounds, one measurement per site (samples of one donor of each type a cell counts):"
    )
    .unwrap();
    for site in &sites {
        let bounds = measured_bounds(site, &policy, &scratch).await?;
        writeln!(out, "  {}: {bounds}", site.id).unwrap();
    }

    if !options.questions.is_empty() {
        return Ok(out);
    }
    // The balance of a sample-level bound: too small biases the count, too
    // large widens the interval.
    writeln!(out).unwrap();
    writeln!(
        out,
        "bound sweep, Q9 donors by sample type: G = sample types one donor may add to"
    )
    .unwrap();
    let sweep = QUESTIONS
        .iter()
        .find(|q| q.name.starts_with("Q9"))
        .expect("Q9");
    for g in [2, 4, 6, 7, 8, 10] {
        let policy = eval_policy(&[("sample_type".into(), g)]);
        let mut tally = Tally::new(sites.len());
        for (s, site) in sites.iter().enumerate() {
            let (results, truth) =
                releases(site, &policy, sweep.sql, options.releases, &scratch).await?;
            for r in &results {
                for (row, t) in r.rows.iter().zip(&truth[0]) {
                    tally.add(s, *t, row.values[0].interval);
                }
            }
        }
        let (all, nonzero) = tally.coverage();
        let medians: Vec<String> = tally.medians().iter().map(|h| format!("±{h:.0}")).collect();
        writeln!(
            out,
            "  G = {g:>2}: coverage {all:>5.1}% (non-empty cells {nonzero:>5.1}%), half-width {}",
            medians.join(" ")
        )
        .unwrap();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell's error is its interval's midpoint less the TRUE count, in
    /// the standard deviations its 95% half-width states; small TRUE
    /// counts and cells stated exact are left out.
    #[test]
    fn a_cells_error_is_read_in_the_noise_its_interval_states() {
        let mut t = Tally::new(1);
        let sigma = 10.0;
        let hw = bonebank_query::catalogue::Z95 * sigma;
        t.add(0, 100, [115.0 - hw, 115.0 + hw]);
        t.add(0, 200, [190.0 - hw, 190.0 + hw]);
        t.add(0, LARGE - 1, [0.0, 100.0]);
        t.add(0, 500, [0.0, 0.0]);
        assert_eq!(t.cells(), 4);
        let e = t.errors();
        assert_eq!(e.len(), 2);
        assert!((e[0] - 1.5).abs() < 1e-9, "{e:?}");
        assert!((e[1] + 1.0).abs() < 1e-9, "{e:?}");
    }
}
