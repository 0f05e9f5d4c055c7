//! The catalogue: each table bounds what one donor adds to it (so removing
//! a donor moves its vectors by no more than the sensitivity its noise is
//! calibrated to), it is measured and charged once per dataset version, the
//! rolling budgets of fresh questions leave its charge out, and no more
//! catalogues are measured in a year than the policy allows.

use bonebank_schemas::wire::CatalogueTable;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use bonebank_node::dataset::DataDir;
use bonebank_node::engine::{QueryEngine, SurfaceEngine, surface};
use bonebank_node::import;
use bonebank_node::privacy::{FixedOffset, OpenDpNoise, nominal_scale};
use bonebank_node::service::QueryService;
use bonebank_node::service::catalogue::{
    CELLS_SHARE, Measurement, cells_ceiling, consented_measurements,
};
use bonebank_node::store::{CATALOGUE_ACCOUNT, Payer, SITE_ACCOUNT, Store};
use bonebank_query::policy::{Budgets, CatalogueSettings, Policy};
use bonebank_schemas::wire::Accounting;
use bonebank_schemas::{SiteId, Table};

use crate::common::{TestSite, spec, without};

fn engine_over(
    site: &SiteId,
    policy: &Policy,
    tables: [&[RecordBatch]; 3],
    name: &str,
) -> Arc<SurfaceEngine> {
    let surface = surface::build(
        site,
        &policy.diagnosis_categories,
        tables[0],
        tables[1],
        tables[2],
    )
    .unwrap();
    Arc::new(
        SurfaceEngine::from_batches(
            site.clone(),
            policy.diagnosis_categories.clone(),
            name,
            surface,
        )
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_one_donor_moves_each_catalogue_table_by_at_most_its_sensitivity() {
    moves_at_most_the_sensitivity(false).await;
}

/// With the sample bounds measured, a donor's samples are capped per
/// sample type in all of a table's cells together, and the sensitivity is
/// the caps' (√Σ caps² with sample type, their sum without).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_one_donor_moves_each_catalogue_table_by_at_most_its_capped_sensitivity() {
    moves_at_most_the_sensitivity(true).await;
}

async fn moves_at_most_the_sensitivity(measure_bounds: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    // Næstved: repeat blood donors, many samples and years each.
    bonebank_node::generate::into_data_dir(&spec("DK-NAE", 300, 3), &dir).unwrap();
    let donors = dir.load_table(Table::Donors).unwrap();
    let samples = dir.load_table(Table::Samples).unwrap();
    let diagnoses = dir.load_table(Table::Diagnoses).unwrap();
    // Tight bounds, so that they bind.
    let policy = Policy {
        max_samples_per_donor: 3,
        groups_per_donor: [
            ("sample_type".to_owned(), 2),
            ("sampling_year".to_owned(), 2),
        ]
        .into(),
        max_groups_per_donor: 2,
        zcdp: bonebank_query::policy::Zcdp {
            sample_bounds: bonebank_query::policy::SampleBounds {
                measure: measure_bounds,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Policy::default()
    };
    let site = SiteId::parse("DK-NAE").unwrap();
    let full = engine_over(&site, &policy, [&donors, &samples, &diagnoses], "full");
    let store = Store::open(&tmp.path().join("state.sqlite")).unwrap();
    let service = QueryService::new(
        site.clone(),
        policy.clone(),
        full.clone(),
        Arc::new(FixedOffset(0)),
        store,
    );
    let version = full.dataset_version().unwrap().unwrap();
    let measurements = service.catalogue_plans(&version).await.unwrap();
    assert_eq!(
        measurements.len(),
        bonebank_query::catalogue::workload().len()
    );
    for m in &measurements {
        assert_eq!(m.plan.sample_caps.is_some(), measure_bounds);
        if let Some(caps) = &m.plan.sample_caps {
            let (l2, l1) = caps.sensitivity();
            assert!(
                m.samples.l2 <= l2 && m.samples.l1 <= l1,
                "{:?}",
                m.plan.dimensions
            );
            let typed = m.plan.dimensions.iter().any(|d| d == "sample_type");
            assert_eq!(caps.by.is_some(), typed, "{:?}", m.plan.dimensions);
        }
    }

    // The donors with the most samples, and every 29th.
    let ids: Vec<String> = donors
        .iter()
        .flat_map(|b| {
            b.column_by_name("donor_id")
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|d| d.unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let chosen: Vec<&String> = ids.iter().step_by(29).collect();
    // The tables at the policy's cell bounds, at the most cells the
    // catalogue may measure a table's bound to, and at that with one value
    // per donor along every dimension where Næstved's repeat donors have
    // several (so that the draw of one bites).
    let one_value: Vec<String> = ["age_band", "age_range", "diagnosis_3char", "sampling_year"]
        .map(String::from)
        .to_vec();
    // And those tables again over the donors with commercial consent, as
    // the catalogue measures them for industry partners.
    let plans = measurements.clone();
    let widest: Vec<Measurement> = measurements
        .iter()
        .map(|m| {
            m.with_cells(cells_ceiling(&m.plan))
                .with_one_value(&one_value)
        })
        .collect();
    let consented = consented_measurements(&widest);
    assert_eq!(
        consented.len(),
        bonebank_query::catalogue::consented_workload().len()
    );
    // The consented total counts exactly the donors with commercial
    // consent (and samples), read from the Parquet files apart from the
    // engine: the rows its filter keeps.
    let consented_total = consented
        .iter()
        .find(|m| m.plan.dimensions.is_empty())
        .unwrap();
    let counted = full.aggregate(&consented_total.plan).await.unwrap().values;
    let flag =
        |b: &RecordBatch, c: &str, i: usize| b.column_by_name(c).unwrap().as_boolean().value(i);
    let with_consent: std::collections::HashSet<String> = donors
        .iter()
        .flat_map(|b| {
            let id = b.column_by_name("donor_id").unwrap().as_string::<i32>();
            (0..b.num_rows())
                .filter(|i| flag(b, "consent_commercial", *i) && !flag(b, "consent_withdrawn", *i))
                .map(|i| id.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut sampled = std::collections::HashSet::new();
    for b in &samples {
        let d = b.column_by_name("donor_id").unwrap().as_string::<i32>();
        sampled.extend((0..b.num_rows()).map(|i| d.value(i).to_owned()));
    }
    let truth = with_consent.intersection(&sampled).count() as i64;
    let everyone = full.aggregate(&plans[0].plan).await.unwrap().values[0][0];
    assert_eq!(counted[0][0], truth);
    assert!(truth > 0 && truth < everyone, "{truth} of {everyone}");
    let measurements: Vec<Measurement> = measurements
        .iter()
        .cloned()
        .chain(
            measurements
                .iter()
                .map(|m| m.with_cells(cells_ceiling(&m.plan))),
        )
        .chain(widest.iter().cloned())
        .chain(consented.iter().cloned())
        .collect();
    let base: Vec<Vec<Vec<i64>>> = {
        let mut out = Vec::new();
        for m in &measurements {
            out.push(full.aggregate(&m.plan).await.unwrap().values);
        }
        out
    };
    let mut moved_somewhere = false;
    for donor in chosen {
        let sample_ids: std::collections::HashSet<String> = samples
            .iter()
            .flat_map(|b| {
                let s = b.column_by_name("sample_id").unwrap().as_string::<i32>();
                let d = b.column_by_name("donor_id").unwrap().as_string::<i32>();
                (0..b.num_rows())
                    .filter(|i| d.value(*i) == donor)
                    .map(|i| s.value(i).to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let smaller = engine_over(
            &site,
            &policy,
            [
                &without(&donors, "donor_id", &|d| d == donor),
                &without(&samples, "donor_id", &|d| d == donor),
                &without(&diagnoses, "sample_id", &|s| sample_ids.contains(s)),
            ],
            &format!("without-{donor}"),
        );
        for (m, base) in measurements.iter().zip(&base) {
            let other = smaller.aggregate(&m.plan).await.unwrap().values;
            let cells = m.plan.cells_per_donor();
            // The policy's bound: the widest sample-level dimension's; the
            // ceiling three times that, within the cells a donor could be in.
            let sample_level: Vec<usize> = m
                .plan
                .dimensions
                .iter()
                .zip(&m.plan.keys)
                .filter(|(d, _)| d.as_str() != "sex")
                .map(|(_, k)| k.len())
                .collect();
            let widest = if sample_level.is_empty() { 1 } else { 2 };
            let reachable = sample_level.iter().product::<usize>() as i64;
            let ceiling = (3 * widest).min(reachable);
            // One value along a dimension: it adds no cells.
            let one_value_reachable: i64 = m
                .plan
                .dimensions
                .iter()
                .zip(&m.plan.keys)
                .filter(|(d, _)| d.as_str() != "sex")
                .map(|(d, k)| {
                    if one_value.contains(d) {
                        1
                    } else {
                        k.len() as i64
                    }
                })
                .product();
            assert!(
                cells == widest
                    || cells == ceiling
                    || (!m.plan.one_value.is_empty() && cells == ceiling.min(one_value_reachable)),
                "{:?}: {cells}",
                m.plan.dimensions
            );
            for ((a, b), sensitivity) in base.iter().zip(&other).zip([m.donors, m.samples]) {
                let l1: i64 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum();
                let l2 = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                moved_somewhere |= l1 > 0;
                assert!(
                    l1 <= sensitivity.l1 && l2 <= sensitivity.l2,
                    "{:?}: removing {donor} moved a vector by L1 {l1}, L2 {l2:.2}; sensitivity {sensitivity:?}",
                    m.plan.dimensions
                );
            }
        }
    }
    assert!(moved_somewhere);

    // The released catalogue is calibrated to exactly these sensitivities,
    // and its vectors' losses add up to the policy's catalogue loss.
    // Each table at the cell bound the catalogue measured for it, no more
    // than the ceiling.
    let catalogue = service.catalogue().await.unwrap().expect("measured");
    let mut total = catalogue.cell_bounds_loss;
    assert!(total > 0.0);
    let consented = catalogue.tables.iter().filter(|t| t.consent.is_some());
    assert_eq!(
        consented.count(),
        bonebank_query::catalogue::consented_workload().len()
    );
    for table in &catalogue.tables {
        assert!(matches!(
            table.consent.as_deref(),
            None | Some("commercial")
        ));
        let m = plans
            .iter()
            .find(|m| m.plan.dimensions == table.dimensions)
            .expect("a table of the workload");
        assert!(
            (1..=cells_ceiling(&m.plan)).contains(&table.cells_per_donor),
            "{:?}: {}",
            table.dimensions,
            table.cells_per_donor
        );
        let m = m
            .with_cells(table.cells_per_donor)
            .with_one_value(&catalogue.one_per_donor);
        for (counts, sensitivity) in [(&table.donors, m.donors), (&table.samples, m.samples)] {
            let (_, scale) = nominal_scale(Accounting::Zcdp, sensitivity, counts.loss);
            assert!((counts.scale - scale).abs() < 1e-9 * scale, "{counts:?}");
            total += counts.loss;
        }
    }
    assert!((total - policy.catalogue.loss).abs() < 1e-6, "{total}");
}

/// Each table's cell bound is measured from the data: at a fracture site
/// (where a stem-cell donor's vials sit at two temperatures beside up to
/// six more sample types) every table's bound leaves out no more donors
/// than the measurement's noise could hide, within the ceiling, and a
/// table whose dimensions are fixed per donor keeps one cell. Tables that
/// differ only in sex are measured once and share their bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tables_cell_bound_keeps_all_but_what_the_noise_hides() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    bonebank_node::generate::into_data_dir(&spec("DE-LUE", 3000, 5), &dir).unwrap();
    let policy = Policy::default();
    let site = SiteId::parse("DE-LUE").unwrap();
    let engine = Arc::new(SurfaceEngine::new(
        dir.clone(),
        site.clone(),
        policy.diagnosis_categories.clone(),
    ));
    let store = Store::open(&tmp.path().join("state.sqlite")).unwrap();
    let service = QueryService::new(
        site,
        policy.clone(),
        engine.clone(),
        Arc::new(FixedOffset(0)),
        store,
    );
    let version = engine.dataset_version().unwrap().unwrap();
    let wide = service.catalogue_plans(&version).await.unwrap();
    let catalogue = service.catalogue().await.unwrap().expect("measured");
    // Tables over the same sample-level dimensions (differing only in sex)
    // are measured once and share the bound.
    let level = |t: &CatalogueTable| -> Vec<String> {
        t.dimensions
            .iter()
            .filter(|d| d.as_str() != "sex")
            .cloned()
            .collect()
    };
    let mut groups: std::collections::BTreeMap<Vec<String>, (i64, i64)> = Default::default();
    for (m, table) in wide.iter().zip(&catalogue.tables) {
        let (ceiling, bound) = *groups
            .entry(level(table))
            .or_insert((cells_ceiling(&m.plan), table.cells_per_donor));
        assert_eq!(ceiling, cells_ceiling(&m.plan), "{:?}", table.dimensions);
        assert_eq!(bound, table.cells_per_donor, "{:?}", table.dimensions);
    }
    assert!(groups.len() < catalogue.tables.len());
    // Every donor's samples here share one age band and one diagnosis, and
    // most donors have several sample types: the catalogue counts each
    // donor in one value of the first two (below, their tables' bound of 1
    // leaves out fewer donors than the noise hides), but not of the third.
    for d in ["age_band", "age_range", "diagnosis_3char"] {
        assert!(
            catalogue.one_per_donor.iter().any(|x| x == d),
            "{d}: {:?}",
            catalogue.one_per_donor
        );
    }
    assert!(!catalogue.one_per_donor.iter().any(|x| x == "sample_type"));
    // The measurement's noise: one donor adds one to up to each group's
    // ceiling of its counts.
    let entries: i64 = groups.values().map(|(c, _)| *c).filter(|c| *c > 1).sum();
    let (_, sigma) = nominal_scale(
        Accounting::Zcdp,
        bonebank_node::privacy::Sensitivity {
            l1: entries,
            l2: (entries as f64).sqrt(),
        },
        (policy.catalogue.loss - policy.catalogue.consented_loss) * CELLS_SHARE,
    );
    for (m, table) in wide.iter().zip(&catalogue.tables) {
        let ceiling = cells_ceiling(&m.plan);
        let bound = table.cells_per_donor;
        assert!((1..=ceiling).contains(&bound), "{:?}", table.dimensions);
        if ceiling == 1 {
            continue;
        }
        let mut plan = m.plan.clone();
        plan.max_cells = Some(ceiling);
        let (_, at_least) = engine.cells_per_donor(&plan).await.unwrap();
        // Donors in more cells than the bound: a true count of them above
        // 2.5 σ would stand out of the noise but for a draw 5 σ below it.
        let over = at_least.get(bound as usize).copied().unwrap_or(0);
        assert!(
            (over as f64) < 7.5 * sigma,
            "{:?}: bound {bound}, {over} donors in more cells (σ {sigma:.1})",
            table.dimensions
        );
    }
}

fn zcdp(versions_per_year: u32) -> Policy {
    Policy {
        catalogue: CatalogueSettings {
            versions_per_year,
            ..Default::default()
        },
        ..Policy::default().with_budgets(Budgets {
            site: 1_000.0,
            project: 1_000.0,
            user: 1_000.0,
        })
    }
}

/// Imports a new dataset version into the site (a new export of it).
fn new_version(site: &TestSite, seed: u64) {
    let export = tempfile::tempdir().unwrap();
    bonebank_node::generate::into_csv(&spec("DE-LUE", 150, seed), export.path()).unwrap();
    let files: Vec<_> = [Table::Donors, Table::Samples, Table::Diagnoses]
        .into_iter()
        .map(|t| (t, export.path().join(format!("{t}.csv"))))
        .collect();
    import::import(&site.dir(), &files).unwrap();
}

fn catalogue_rows(service: &QueryService) -> i64 {
    let overview_excludes = service
        .store()
        .overview(&service.policy)
        .unwrap()
        .users
        .contains_key(CATALOGUE_ACCOUNT);
    assert!(
        !overview_excludes,
        "the rolling budget's overview leaves the catalogue out"
    );
    service.store().catalogues_this_year().unwrap().1.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_catalogue_per_version_charged_once_and_none_past_the_years_limit() {
    let site = TestSite::new("DE-LUE", 150, zcdp(2));
    let service = site.service(Arc::new(OpenDpNoise));
    let first = service.catalogue().await.unwrap().expect("measured");
    assert!(!first.tables.is_empty());
    // It names the roles the site filters, whose questions it must not
    // answer.
    assert_eq!(
        first.role_filters.get("industry").map(String::as_str),
        Some("consent_commercial = true")
    );
    assert!((first.loss - 5.0).abs() < 1e-6, "{}", first.loss);
    assert_eq!(catalogue_rows(&service), 1);
    let (units, _) = service.store().catalogues_this_year().unwrap();

    // Asked again, by this process and by a restarted one: the same
    // catalogue, charged once.
    let again = service.catalogue().await.unwrap().unwrap();
    assert_eq!(again, first);
    let restarted = site.service(Arc::new(OpenDpNoise));
    assert_eq!(*restarted.catalogue().await.unwrap().unwrap(), *first);
    assert_eq!(catalogue_rows(&restarted), 1);
    assert_eq!(restarted.store().catalogues_this_year().unwrap().0, units);
    // Fresh questions' budgets do not pay for it: the site's rolling
    // account holds only the sample bounds the catalogue's tables used.
    let site_payer = Payer {
        user: "nobody".into(),
        project: "none".into(),
    };
    let overview = restarted.store().overview(&restarted.policy).unwrap();
    assert_eq!(overview.users.keys().collect::<Vec<_>>(), [SITE_ACCOUNT]);
    assert_eq!(
        restarted
            .store()
            .spent(&site_payer, &restarted.policy)
            .unwrap()
            .site,
        overview.users[SITE_ACCOUNT]
    );
    let audited = restarted.store().last_audit("catalogue").unwrap().unwrap();
    assert_eq!(audited["dataset_version"], first.dataset_version.as_str());

    // A new version gets a catalogue of its own: the second of the year.
    new_version(&site, 11);
    let after = site.service(Arc::new(OpenDpNoise));
    let second = after.catalogue().await.unwrap().unwrap();
    assert_ne!(second.dataset_version, first.dataset_version);
    assert_eq!(catalogue_rows(&after), 2);

    // A third is past versions_per_year = 2: the second stays published,
    // saying which version it describes, and nothing more is charged.
    new_version(&site, 12);
    let later = site.service(Arc::new(OpenDpNoise));
    let current = later.dataset_version().unwrap().unwrap();
    assert_ne!(current, second.dataset_version);
    let published = later.catalogue().await.unwrap().unwrap();
    assert_eq!(published.dataset_version, second.dataset_version);
    assert_eq!(catalogue_rows(&later), 2);
    let why = later.why_no_catalogue().unwrap();
    assert!(why.contains("2 catalogues of the year"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_catalogue_keeps_its_bounds_and_its_tables_agree() {
    let site = TestSite::new("DE-LUE", 2_000, zcdp(4));
    let service = site.service(Arc::new(OpenDpNoise));
    let c = service.catalogue().await.unwrap().expect("measured");
    let mut moved = 0.0;
    for t in &c.tables {
        let b = t.samples_per_donor as f64;
        for ((d, s), m) in t
            .donors
            .values
            .iter()
            .zip(&t.samples.values)
            .zip(&t.samples.measured)
        {
            assert!(*d >= 0.0, "{:?}: donors {d}", t.dimensions);
            assert!(
                d <= s && *s <= b * d + 1e-9,
                "{:?}: {d} donors, {s} samples",
                t.dimensions
            );
            assert!(*d > 0.0 || *s == 0.0, "samples without donors");
            if *m < 0 {
                moved += 1.0;
            }
        }
        // Every component of the table's error model is stated.
        assert_eq!(t.samples.variances.len(), 1 << t.dimensions.len());
        assert_eq!(t.donors.variances.len(), 1 << t.dimensions.len());
    }
    assert!(moved > 0.0, "some measured cells were negative");
    let table = |dims: &[&str]| {
        c.tables
            .iter()
            .find(|t| {
                t.dimensions.len() == dims.len()
                    && dims.iter().all(|d| t.dimensions.iter().any(|x| x == d))
            })
            .unwrap()
    };
    // Samples agree between tables. Only the bounds make a table's cells
    // add up to other than the total, and they move only cells on the
    // cone's edge (at zero, donors = samples, or samples = bound × donors),
    // each by about its own noise: far less than five σ.
    let total = table(&[]).samples.values[0];
    let on_edge = |t: &CatalogueTable| {
        let b = t.samples_per_donor as f64;
        t.donors
            .values
            .iter()
            .zip(&t.samples.values)
            .filter(|(d, s)| **s == 0.0 || d == s || **s == b * **d)
            .count() as f64
    };
    for dims in [
        &["sex"][..],
        &["sample_type"],
        &["sex", "age_band"],
        &["diagnosis_chapter"],
    ] {
        let t = table(dims);
        let sum: f64 = t.samples.values.iter().sum();
        let slack = on_edge(t) * 5.0 * t.samples.scale + 1e-6;
        assert!(
            (sum - total).abs() <= slack,
            "{dims:?}: {sum} against the total {total}, {slack} allowed"
        );
    }
    // What is published is the fit of what was measured, with its error
    // model: fitting the published measurements again gives it back.
    let mut again = c.tables.clone();
    bonebank_query::catalogue::fit(&mut again, &c.one_per_donor);
    for (a, t) in again.iter().zip(&c.tables) {
        for (x, y) in [(&a.donors, &t.donors), (&a.samples, &t.samples)] {
            assert!(
                x.values
                    .iter()
                    .zip(&y.values)
                    .all(|(p, q)| (p - q).abs() < 1e-6)
            );
            assert!(x.variances.iter().zip(&y.variances).all(|(p, q)| {
                p.dimensions == q.dimensions && (p.variance - q.variance).abs() < 1e-6 * q.variance
            }));
        }
    }
    // The estimate is not the measurement: reconciling changed it.
    assert!(c.tables.iter().any(|t| {
        t.samples
            .values
            .iter()
            .zip(&t.samples.measured)
            .any(|(v, m)| (v - *m as f64).abs() > 0.5)
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pure_accounting_and_a_switched_off_catalogue_publish_none() {
    let site = TestSite::new("DE-LUE", 40, crate::common::pure());
    let service = site.service(Arc::new(OpenDpNoise));
    assert!(service.catalogue().await.unwrap().is_none());
    assert!(service.why_no_catalogue().unwrap().contains("pure ε"));
    let mut off = zcdp(4);
    off.catalogue.measure = false;
    let site = TestSite::new("DE-LUE", 40, off);
    let service = site.service(Arc::new(OpenDpNoise));
    assert!(service.catalogue().await.unwrap().is_none());
    assert_eq!(service.store().catalogues_this_year().unwrap().1, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sites_yearly_budget_caps_fresh_questions_and_is_stated() {
    use bonebank_node::Error;
    use bonebank_node::store::Account;
    // Users and the rolling period have room to spare; the year has ρ 0.1.
    let mut policy = zcdp(4);
    policy.zcdp.site_per_year = 0.1;
    policy.zcdp.sample_bounds.measure = false;
    let site = TestSite::new("DE-LUE", 60, policy);
    let service = site.service(Arc::new(OpenDpNoise));
    let who = crate::common::caller("rita", "p1", bonebank_schemas::Role::Researcher);
    let ask = |n: i64| {
        crate::common::sql(
            &format!("SELECT COUNT(*) FROM samples WHERE age_at_sampling >= {n}"),
            0.03,
        )
    };
    for n in 0..3 {
        service.run(&who, &ask(n)).await.unwrap();
    }
    // A fourth would take the year's fresh questions to ρ 0.12.
    match service.run(&who, &ask(3)).await {
        Err(Error::BudgetExhausted(Account::Site)) => {}
        other => panic!("not refused for the site's year: {other:?}"),
    }
    // /v1/site states the yearly bound, its (ε, δ), and what was spent.
    let yearly = service
        .describe()
        .unwrap()
        .yearly
        .expect("stated under zCDP");
    // Four catalogues a year at the default ρ 5 each.
    assert!((yearly.catalogues - 20.0).abs() < 1e-12);
    assert!((yearly.fresh - 0.1).abs() < 1e-12);
    assert!((yearly.total - 20.1).abs() < 1e-12);
    assert!(yearly.approx_dp.epsilon > 20.1);
    assert!((yearly.spent - 0.09).abs() < 1e-6, "{}", yearly.spent);
    // The catalogue, once measured, counts in what was spent, and not in
    // the fresh questions' year.
    service.catalogue().await.unwrap().unwrap();
    let yearly = service.describe().unwrap().yearly.unwrap();
    assert!((yearly.spent - 5.09).abs() < 1e-6, "{}", yearly.spent);
}

/// The Directory's facts, written by the command line from the published
/// catalogue: the Directory's columns and age ranges, the `*` rows, never a
/// donor count summed over sample types, and numbers that are the
/// catalogue's estimates (no suppression below 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_export_writes_the_catalogues_facts() {
    use bonebank_query::catalogue::directory::{self, COLUMNS};
    let site = TestSite::new("DE-LUE", 1_000, zcdp(4));
    let config = site.write_config("");
    let run = |args: &[&str]| crate::common::node_command(&config, args);
    // Before any catalogue (the node has run, nothing asked for one): a
    // clear refusal.
    drop(site.service(Arc::new(OpenDpNoise)));
    let none = run(&["catalogue", "export", "--directory", "--collection", "c1"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no catalogue yet"));
    let service = site.service(Arc::new(OpenDpNoise));
    let c = service.catalogue().await.unwrap().unwrap();
    drop(service);

    let out = run(&[
        "catalogue",
        "export",
        "--directory",
        "--collection",
        "bbmri-eric:ID:DE_LUE:collection:hip",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("none suppressed"), "{stderr}");
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == COLUMNS.len()));
    let ranges: Vec<&str> = bonebank_query::dimensions::AGE_RANGES
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let mut small = 0;
    for r in &rows {
        assert_eq!(r[1], "bbmri-eric:ID:DE_LUE:collection:hip");
        assert!(r[4] == "*" || ranges.contains(&r[4]), "{r:?}");
        assert!(r[5] == "*" || r[5].starts_with("urn:miriam:icd:"), "{r:?}");
        let (samples, donors): (i64, i64) = (r[6].parse().unwrap(), r[7].parse().unwrap());
        assert!(donors >= 1 && donors <= samples, "{r:?}");
        assert_eq!(r[8], &c.measured_at[..10]);
        small += usize::from(donors < 10);
    }
    assert!(small > 0, "small cells are shown, not suppressed");
    // The all-star row is the catalogue's total; the full rows name all four.
    let total: Vec<&Vec<&str>> = rows
        .iter()
        .filter(|r| r[2..6] == ["*", "*", "*", "*"])
        .collect();
    assert_eq!(total.len(), 1);
    let t = c.tables.iter().find(|t| t.dimensions.is_empty()).unwrap();
    assert_eq!(total[0][6], t.samples.values[0].round().to_string());
    assert!(rows.iter().any(|r| r[2..6].iter().all(|v| *v != "*")));
    // A row with a sample type and another dimension given is a cell of the
    // four-way table: donors there are never a sum over sample types.
    assert!(
        rows.iter()
            .filter(|r| r[2] != "*")
            .all(|r| r[3..6].iter().all(|v| *v != "*") || r[3..6].iter().all(|v| *v == "*"))
    );
    // The library gives the same rows.
    assert_eq!(directory::facts(&c).unwrap().len(), rows.len());
}

/// The catalogue states, in the order its rules decide, who it answers
/// none of: a refused role, and each rule that holds for every question of
/// a caller (by role and project), asking fresh unless the rule runs;
/// not a rule with a condition on the question, which catalogue answers,
/// being released data, pass by. The coordinator takes the first that
/// matches a caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_states_whom_a_steward_decides_on() {
    use bonebank_query::policy::{Action, Rule};
    use bonebank_schemas::Role;
    use bonebank_schemas::wire::CallerRule;
    let mut policy = zcdp(2);
    let rule = |role, action| Rule {
        role,
        ..crate::common::rule(action)
    };
    policy.rules = vec![
        Rule {
            min_dimensions: Some(2),
            ..rule(None, Action::Approve)
        },
        Rule {
            role: Some(Role::Researcher),
            loss_above: Some(0.05),
            ..rule(None, Action::Approve)
        },
        Rule {
            projects: Some(vec!["p-trusted".into()]),
            ..rule(Some(Role::Industry), Action::Run)
        },
        rule(Some(Role::Industry), Action::Approve),
    ];
    policy.roles.entry(Role::Steward).or_default().denied = true;
    let site = TestSite::new("DE-LUE", 60, policy);
    let service = site.service(Arc::new(OpenDpNoise));
    let c = service.catalogue().await.unwrap().expect("measured");
    assert!(c.role_filters.contains_key("industry"));
    assert_eq!(
        c.caller_rules,
        [
            CallerRule {
                role: Some("steward".into()),
                projects: None,
                asked_fresh: true,
            },
            CallerRule {
                role: Some("industry".into()),
                projects: Some(vec!["p-trusted".into()]),
                asked_fresh: false,
            },
            CallerRule {
                role: Some("industry".into()),
                projects: None,
                asked_fresh: true,
            },
        ]
    );
    let first = |role: &str, project: &str| {
        c.caller_rules
            .iter()
            .find(|r| r.matches(role, project))
            .is_some_and(|r| r.asked_fresh)
    };
    assert!(first("industry", "p1"));
    assert!(!first("industry", "p-trusted"));
    assert!(!first("researcher", "p1"));
    assert!(first("steward", "p1"));
}
