//! The generator is deterministic for a seed and writes valid data.

use std::collections::BTreeMap;
use std::path::Path;

use bonebank_node::dataset::DataDir;
use bonebank_node::generate;
use bonebank_schemas::Table;

use crate::common::spec;

/// The bytes of each table file of a data directory's current version.
fn table_bytes(dir: &DataDir) -> BTreeMap<Table, Vec<u8>> {
    let version = dir.current().unwrap().unwrap();
    version
        .tables
        .keys()
        .map(|t| {
            (
                *t,
                std::fs::read(dir.table_path(&version, *t).unwrap()).unwrap(),
            )
        })
        .collect()
}

fn csv_bytes(dir: &Path) -> Vec<Vec<u8>> {
    ["donors", "samples", "diagnoses"]
        .iter()
        .map(|t| std::fs::read(dir.join(format!("{t}.csv"))).unwrap())
        .collect()
}

#[test]
fn same_seed_gives_identical_files_and_another_seed_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    for site in ["DE-LUE", "DK-ODE", "DK-NAE"] {
        let dirs: Vec<DataDir> = ["a", "b", "c"]
            .iter()
            .map(|n| DataDir::new(tmp.path().join(format!("{site}-{n}"))))
            .collect();
        generate::into_data_dir(&spec(site, 500, 42), &dirs[0]).unwrap();
        generate::into_data_dir(&spec(site, 500, 42), &dirs[1]).unwrap();
        generate::into_data_dir(&spec(site, 500, 43), &dirs[2]).unwrap();
        let (a, b, c) = (
            table_bytes(&dirs[0]),
            table_bytes(&dirs[1]),
            table_bytes(&dirs[2]),
        );
        assert_eq!(a.len(), 3);
        assert!(a == b, "{site}: same seed, different files");
        assert!(
            a[&Table::Samples] != c[&Table::Samples],
            "{site}: another seed, same samples"
        );

        let csv = |n: &str, seed| {
            let out = tmp.path().join(format!("{site}-csv-{n}"));
            generate::into_csv(&spec(site, 300, seed), &out).unwrap();
            csv_bytes(&out)
        };
        assert!(csv("a", 9) == csv("b", 9), "{site}: CSV not deterministic");
    }
}

#[test]
fn sites_with_the_same_seed_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let a = DataDir::new(tmp.path().join("lue"));
    let b = DataDir::new(tmp.path().join("ode"));
    generate::into_data_dir(&spec("DE-LUE", 200, 1), &a).unwrap();
    generate::into_data_dir(&spec("DK-ODE", 200, 1), &b).unwrap();
    assert!(table_bytes(&a)[&Table::Samples] != table_bytes(&b)[&Table::Samples]);
}

#[test]
fn generate_refuses_a_directory_that_holds_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("site"));
    generate::into_data_dir(&spec("DE-LUE", 10, 1), &dir).unwrap();
    let before = table_bytes(&dir);
    let err = generate::into_data_dir(&spec("DE-LUE", 10, 2), &dir).unwrap_err();
    assert!(err.to_string().contains("already holds a dataset"), "{err}");
    assert!(table_bytes(&dir) == before);
}

#[test]
fn max_samples_stops_adding_donors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec("DK-ODE", 10_000, 1);
    s.max_samples = Some(1_000);
    let counts = generate::into_csv(&s, tmp.path()).unwrap();
    assert!((1_000..1_040).contains(&counts.samples), "{counts:?}");
    assert!(counts.donors < 10_000);
}
