//! Import from FHIR: bundles shaped like a German Biobank Node bridgehead's
//! (the BBMRI.de profiles' examples: `examples/fhir/`), and broken ones.

use std::path::{Path, PathBuf};

use bonebank_node::dataset::DataDir;
use bonebank_node::import::fhir::{self, Consents};
use bonebank_schemas::Table;
use serde_json::{Value, json};

use crate::common::{Csv, snapshot};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/fhir")
        .join(name)
}

fn exported(dir: &DataDir, table: Table, tmp: &Path) -> Csv {
    let out = tmp.join(format!("{table}-out.csv"));
    bonebank_node::export::to_csv(dir, table, &out).unwrap();
    Csv::read(&out)
}

fn cell<'a>(csv: &'a Csv, key: &str, column: &str) -> &'a str {
    // The key is the table's first column.
    let c = csv.header.iter().position(|h| h == column).unwrap();
    &csv.rows.iter().find(|r| r[0] == key).unwrap()[c]
}

#[test]
fn bundles_and_ndjson_become_one_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    let files = [
        example("collection.json"),
        example("transaction.json"),
        example("resources.ndjson"),
    ];
    let report = fhir::import(&dir, &files, "research,genetic".parse().unwrap()).unwrap();
    // The version says what it came from: the FHIR files, not the
    // temporary tables the import staged them in.
    let change = &report.version.change;
    assert!(change.contains("donors from FHIR "), "{change}");
    assert!(!change.contains("donors.csv"), "{change}");
    assert_eq!(report.rows[&Table::Donors], 5);
    assert_eq!(report.rows[&Table::Samples], 6);

    let donors = exported(&dir, Table::Donors, tmp.path());
    assert_eq!(cell(&donors, "p1", "sex"), "Female");
    assert_eq!(cell(&donors, "p2", "sex"), "Male");
    assert_eq!(cell(&donors, "p1", "consent_research"), "true");
    assert_eq!(cell(&donors, "p1", "consent_commercial"), "false");
    assert_eq!(cell(&donors, "p1", "consent_genetic"), "true");

    let samples = exported(&dir, Table::Samples, tmp.path());
    assert_eq!(cell(&samples, "s1", "sample_type"), "BoneMarrowWhole");
    assert_eq!(cell(&samples, "s1", "storage_temperature"), "LN_liquid");
    assert_eq!(cell(&samples, "s1", "sampling_date"), "2019-03-02");
    // Born 1958-04-12, sampled 2019-03-02.
    assert_eq!(cell(&samples, "s1", "age_at_sampling"), "60");
    assert_eq!(cell(&samples, "s2", "sample_type"), "Serum");
    assert_eq!(cell(&samples, "s2", "material_subtype"), "serum");
    assert_eq!(cell(&samples, "s3", "sample_type"), "TissueFixed");
    assert_eq!(cell(&samples, "s3", "storage_temperature"), "RT");
    // Born in 1949 (the year only), sampled 2020-07-15.
    assert_eq!(cell(&samples, "s3", "age_at_sampling"), "71");
    // The transaction's Specimen refers to its Patient by urn:uuid.
    assert_eq!(cell(&samples, "s5", "donor_id"), "p4");
    assert_eq!(cell(&samples, "s5", "storage_temperature"), "LN_vapour");
    assert_eq!(cell(&samples, "s6", "sample_type"), "DNA");

    let diagnoses = exported(&dir, Table::Diagnoses, tmp.path());
    let of = |sample: &str| -> Vec<(String, String)> {
        diagnoses
            .rows
            .iter()
            .filter(|r| r[0] == sample)
            .map(|r| (r[1].clone(), r[2].clone()))
            .collect()
    };
    // The sample's own diagnosis (ICD-10-GM S72.10 is stored as S72.1) is
    // primary; the donor's Condition is added to each of their samples.
    assert_eq!(
        of("s1"),
        [
            ("S72.1".into(), "true".into()),
            ("M81.9".into(), "false".into())
        ]
    );
    assert_eq!(of("s3"), [("S72.0".into(), "false".into())]);
    assert_eq!(of("s5"), [("S72.2".into(), "false".into())]);
    assert_eq!(of("s6"), [("C90.0".into(), "true".into())]);
}

#[test]
fn miabis_on_fhir_samples_are_read_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    let report = fhir::import(&dir, &[example("miabis.ndjson")], Consents::default()).unwrap();
    assert_eq!(report.rows[&Table::Samples], 2);
    let samples = exported(&dir, Table::Samples, tmp.path());
    // The detailed sample type, MIABIS's storage temperature on processing.
    assert_eq!(
        cell(&samples, "sample-m1", "sample_type"),
        "BoneMarrowAspirate"
    );
    assert_eq!(
        cell(&samples, "sample-m1", "storage_temperature"),
        "LN_liquid"
    );
    assert_eq!(cell(&samples, "sample-m1", "age_at_sampling"), "63");
    // The material type code system.
    assert_eq!(cell(&samples, "sample-m2", "sample_type"), "Serum");
    assert_eq!(
        cell(&samples, "sample-m2", "storage_temperature"),
        "-60to-85"
    );
    let diagnoses = exported(&dir, Table::Diagnoses, tmp.path());
    assert_eq!(diagnoses.rows, [["sample-m1", "S72.0", "true"]]);
}

/// The example collection bundle with `change` made to it, written to a file.
fn broken(tmp: &Path, name: &str, change: impl FnOnce(&mut Value)) -> PathBuf {
    let mut bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(example("collection.json")).unwrap())
            .unwrap();
    change(&mut bundle);
    let path = tmp.join(name);
    std::fs::write(&path, serde_json::to_string(&bundle).unwrap()).unwrap();
    path
}

fn resource<'a>(bundle: &'a mut Value, id: &str) -> &'a mut Value {
    bundle["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .map(|e| &mut e["resource"])
        .find(|r| r["id"] == id)
        .unwrap()
}

fn refusal(dir: &DataDir, files: &[PathBuf]) -> Vec<String> {
    match fhir::import(dir, files, Consents::default()) {
        Err(bonebank_node::import::Error::Refused(p)) => {
            p.shown().iter().map(ToString::to_string).collect()
        }
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(r) => panic!("expected a refusal, imported {:?}", r.rows),
    }
}

#[test]
fn every_problem_names_the_resource_and_element_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    fhir::import(&dir, &[example("collection.json")], Consents::default()).unwrap();
    let before = snapshot(dir.path());

    let bad = broken(tmp.path(), "bad.json", |b| {
        resource(b, "s1")["type"]["coding"][0]["code"] = json!("blood");
        resource(b, "s2")["extension"] = json!([]);
        resource(b, "s3")["subject"]["reference"] = json!("Patient/nobody");
        resource(b, "s4")["collection"]["collectedDateTime"] = json!("2021");
        resource(b, "c1")["code"]["coding"][0]["system"] = json!("http://snomed.info/sct");
        resource(b, "p3")["gender"] = json!("F");
    });
    let problems = refusal(&dir, &[bad]);
    for expected in [
        "Specimen/s1: Specimen.type, value 'blood'",
        "Specimen/s2: Specimen.extension:StorageTemperature",
        "Specimen/s3: Specimen.subject, value 'nobody'",
        "Specimen/s4: Specimen.collection.collectedDateTime, value '2021'",
        "Condition/c1: Condition.code",
        "Patient/p3: Patient.gender, value 'F'",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "no problem with {expected:?} in {problems:#?}"
        );
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused bundle changed the data"
    );

    // A value the table checks refuse is named by its resource too.
    let future = broken(tmp.path(), "future.json", |b| {
        resource(b, "s2")["collection"]["collectedDateTime"] = json!("2199-01-01");
    });
    let problems = refusal(&dir, &[future]);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Specimen/s2: Specimen.collection.collectedDateTime")),
        "{problems:#?}"
    );
    assert_eq!(snapshot(dir.path()), before);

    // Not a bundle of the accepted kinds, and not JSON at all.
    let searchset = broken(tmp.path(), "searchset.json", |b| {
        b["type"] = json!("searchset")
    });
    let garbage = tmp.path().join("garbage.ndjson");
    std::fs::write(&garbage, "{\"resourceType\": \"Patient\"\nnot json\n").unwrap();
    let problems = refusal(&dir, &[searchset, garbage]);
    assert!(
        problems.iter().any(|p| p.contains("Bundle.type")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("line 2") && p.contains("not JSON")),
        "{problems:#?}"
    );
    assert_eq!(snapshot(dir.path()), before);
}
