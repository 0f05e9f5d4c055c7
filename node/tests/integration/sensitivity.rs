//! Contribution bounding holds in the plan: removing any one donor changes
//! each exact bounded aggregate by at most its derived sensitivity, and the
//! bounds themselves cap what one donor adds.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use bonebank_node::dataset::DataDir;
use bonebank_node::engine::{QueryEngine, SurfaceEngine, surface};
use bonebank_node::privacy::FixedOffset;
use bonebank_node::service::QueryService;
use bonebank_node::store::Store;
use bonebank_query::policy::Policy;
use bonebank_schemas::{Role, SiteId, Table};

use crate::common::{caller, spec, sql, without};

struct Tables {
    donors: Vec<RecordBatch>,
    samples: Vec<RecordBatch>,
    diagnoses: Vec<RecordBatch>,
}

fn service_over(
    tmp: &std::path::Path,
    t: &Tables,
    policy: &Policy,
    name: &str,
) -> (QueryService, Arc<SurfaceEngine>) {
    let site = SiteId::parse("DE-LUE").unwrap();
    let surface = surface::build(
        &site,
        &policy.diagnosis_categories,
        &t.donors,
        &t.samples,
        &t.diagnoses,
    )
    .unwrap();
    let engine = Arc::new(
        SurfaceEngine::from_batches(
            site.clone(),
            policy.diagnosis_categories.clone(),
            name,
            surface,
        )
        .unwrap(),
    );
    let store = Store::open(&tmp.join(format!("{name}.sqlite"))).unwrap();
    (
        QueryService::new(
            site,
            policy.clone(),
            engine.clone(),
            Arc::new(FixedOffset(0)),
            store,
        ),
        engine,
    )
}

const QUERIES: &[&str] = &[
    "SELECT COUNT(*), COUNT(DISTINCT donor_id), SUM(aliquots_available), AVG(passage_number) FROM samples",
    "SELECT sample_type, COUNT(*), COUNT(DISTINCT donor_id), SUM(aliquots_available) FROM samples \
     WHERE age_at_sampling >= 40 GROUP BY sample_type",
    "SELECT sex, age_band, COUNT(*), COUNT(DISTINCT donor_id) FROM samples GROUP BY sex, age_band",
    "SELECT material_subtype, diagnosis_3char, COUNT(*), SUM(passage_number) FROM samples \
     WHERE storage_temperature IN ('LN_vapour', 'LN_liquid', '-60to-85') GROUP BY material_subtype, diagnosis_3char",
    // A donor has one sex and one country: Δ counts only sample-level
    // dimensions.
    "SELECT sex, COUNT(*), COUNT(DISTINCT donor_id) FROM samples GROUP BY sex",
    "SELECT country, sample_type, COUNT(DISTINCT donor_id) FROM samples GROUP BY country, sample_type",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_one_donor_moves_each_aggregate_by_at_most_its_sensitivity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    bonebank_node::generate::into_data_dir(&spec("DE-LUE", 400, 8), &dir).unwrap();
    let full = Tables {
        donors: dir.load_table(Table::Donors).unwrap(),
        samples: dir.load_table(Table::Samples).unwrap(),
        diagnoses: dir.load_table(Table::Diagnoses).unwrap(),
    };
    // Tight bounds, so that bounding binds for donors with many samples.
    let policy = Policy {
        max_samples_per_donor: 2,
        max_groups_per_donor: 2,
        groups_per_donor: [("sample_type".to_owned(), 3)].into(),
        ..Policy::default()
    };

    // Donors to remove: the one with the most samples, then every 13th.
    let mut per_donor: HashMap<String, usize> = HashMap::new();
    for b in &full.samples {
        for d in b
            .column_by_name("donor_id")
            .unwrap()
            .as_string::<i32>()
            .iter()
        {
            *per_donor.entry(d.unwrap().to_owned()).or_default() += 1;
        }
    }
    let mut donors: Vec<(&String, &usize)> = per_donor.iter().collect();
    donors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    assert!(
        *donors[0].1 >= 8,
        "the busiest donor has {} samples",
        donors[0].1
    );
    let chosen: Vec<String> = donors
        .iter()
        .step_by(13)
        .map(|(d, _)| (*d).clone())
        .collect();

    let (service, engine) = service_over(tmp.path(), &full, &policy, "full");
    let who = caller("s", "p", Role::Researcher);
    for text in QUERIES {
        let checked = service
            .check(&who, &QueryService::parse(&sql(text, 0.5)).unwrap(), None)
            .unwrap();
        let plan = service.plan(&checked, policy.max_samples_per_donor);
        let base = engine.aggregate(&plan).await.unwrap().values;
        let sensitivities: Vec<i64> = plan
            .aggregates
            .iter()
            .map(|a| a.sensitivity(plan.max_samples_per_donor, plan.cells_per_donor()))
            .collect();
        let expected_cells = match plan.dimensions.join(" ").as_str() {
            "" | "sex" => 1,
            "sample_type" | "country sample_type" => 3,
            "age_band sex" => 2,
            "diagnosis_3char material_subtype" => 4,
            other => panic!("no expectation for {other}"),
        };
        assert_eq!(plan.cells_per_donor(), expected_cells, "{text}");
        for donor in &chosen {
            let sample_ids: std::collections::HashSet<String> = full
                .samples
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
            let smaller = Tables {
                donors: without(&full.donors, "donor_id", &|d| d == donor),
                samples: without(&full.samples, "donor_id", &|d| d == donor),
                diagnoses: without(&full.diagnoses, "sample_id", &|s| sample_ids.contains(s)),
            };
            let (_, engine2) =
                service_over(tmp.path(), &smaller, &policy, &format!("without-{donor}"));
            let other = engine2.aggregate(&plan).await.unwrap().values;
            for ((a, b), (aggregate, delta)) in base
                .iter()
                .zip(&other)
                .zip(plan.aggregates.iter().zip(&sensitivities))
            {
                let l1: i64 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum();
                assert!(
                    l1 <= *delta,
                    "{text}: removing {donor} moved {aggregate:?} by {l1} > sensitivity {delta}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_cap_what_one_donor_adds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    bonebank_node::generate::into_data_dir(&spec("DK-NAE", 300, 2), &dir).unwrap();
    let t = Tables {
        donors: dir.load_table(Table::Donors).unwrap(),
        samples: dir.load_table(Table::Samples).unwrap(),
        diagnoses: dir.load_table(Table::Diagnoses).unwrap(),
    };
    let who = caller("s", "p", Role::Researcher);
    let active: usize = t
        .donors
        .iter()
        .map(|b| {
            b.column_by_name("consent_withdrawn")
                .unwrap()
                .as_boolean()
                .false_count()
        })
        .sum();
    let text =
        "SELECT sample_type, COUNT(*), COUNT(DISTINCT donor_id) FROM samples GROUP BY sample_type";
    let run = |policy: Policy, name: &'static str| {
        let (service, engine) = service_over(tmp.path(), &t, &policy, name);
        let checked = service
            .check(&who, &QueryService::parse(&sql(text, 0.5)).unwrap(), None)
            .unwrap();
        let plan = service.plan(&checked, policy.max_samples_per_donor);
        async move { engine.aggregate(&plan).await.unwrap().values }
    };
    // One row per donor and cell, cells unbounded: samples equal donors in
    // every cell, although blood donors give many plasma samples each.
    let one_row = run(
        Policy {
            max_samples_per_donor: 1,
            max_groups_per_donor: 40,
            groups_per_donor: Default::default(),
            ..Policy::default()
        },
        "one-row",
    )
    .await;
    assert_eq!(
        one_row[0], one_row[1],
        "samples per cell must equal donors per cell when each donor adds one row"
    );
    let uncapped = run(
        Policy {
            max_samples_per_donor: 100,
            max_groups_per_donor: 40,
            groups_per_donor: Default::default(),
            ..Policy::default()
        },
        "uncapped",
    )
    .await;
    let plasma = 7; // index of Plasma in the MIABIS sample types
    assert!(
        uncapped[0][plasma] > 3 * uncapped[1][plasma],
        "plasma: {} samples, {} donors",
        uncapped[0][plasma],
        uncapped[1][plasma]
    );
    // Donors give plasma, buffy coat and DNA: without a cell bound the
    // cells' donor counts add up to far more than the donors…
    assert!(one_row[1].iter().sum::<i64>() > 2 * active as i64);
    // …and with one cell per donor, to at most the donors.
    let one_cell = run(
        Policy {
            max_samples_per_donor: 1,
            max_groups_per_donor: 1,
            groups_per_donor: Default::default(),
            ..Policy::default()
        },
        "one-cell",
    )
    .await;
    let donors_total: i64 = one_cell[1].iter().sum();
    assert!(donors_total <= active as i64, "{donors_total} > {active}");
}
