//! The data directory's guarantees: one writer at a time, a crash before the
//! manifest switch leaves the old version intact, each import a new version.

use bonebank_node::dataset::Transaction;
use bonebank_node::import;
use bonebank_schemas::Table;

use crate::common::Site;

#[test]
fn a_second_writer_is_turned_away() {
    let site = Site::new(10);
    let _held = Transaction::begin(&site.dir).unwrap();
    let err = import::import(
        &site.dir,
        &[(Table::Donors, site.export.join("donors.csv"))],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            import::Error::Data(bonebank_node::engine::Error::Busy(_))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("in use by another import"));
}

#[test]
fn a_crash_before_commit_leaves_the_old_version_current() {
    let site = Site::new(30);
    let before = site.dir.current().unwrap().unwrap();
    let donors = site.dir.load_table(Table::Donors).unwrap();

    // What a crash in the middle of an import leaves: a half-written staging
    // file among the tables and a half-written manifest beside the real one.
    let tables = site.dir.path().join("tables");
    std::fs::write(tables.join(".staging-crash1.parquet"), b"PAR1 half a file").unwrap();
    std::fs::write(
        site.dir.path().join(".staging-crash2"),
        b"{\"format\": 1, \"curr",
    )
    .unwrap();

    assert_eq!(site.dir.current().unwrap().unwrap(), before);
    assert_eq!(site.dir.load_table(Table::Donors).unwrap(), donors);

    let report = import::import(
        &site.dir,
        &[(Table::Donors, site.export.join("donors.csv"))],
    )
    .unwrap();
    assert_ne!(report.version.id, before.id);
    assert!(
        !tables.join(".staging-crash1.parquet").exists(),
        "the next commit removes crash leftovers"
    );
    assert!(!site.dir.path().join(".staging-crash2").exists());
}

/// What an import killed before its commit left is removed when a node
/// starts (or the next import begins), not only at the next commit; never
/// while an import holds the directory.
#[test]
fn leftovers_of_a_killed_import_are_removed_at_start_unless_an_import_runs() {
    let site = Site::new(10);
    let tables = site.dir.path().join("tables");
    let leave = || {
        std::fs::write(tables.join(".staging-killed.parquet"), b"PAR1 half").unwrap();
        std::fs::create_dir_all(site.dir.path().join(".staging-killed-dir")).unwrap();
        std::fs::write(site.dir.path().join(".staging-killed-dir/part"), b"x").unwrap();
    };
    let left = || {
        tables.join(".staging-killed.parquet").exists()
            || site.dir.path().join(".staging-killed-dir").exists()
    };
    leave();
    let running = bonebank_node::dataset::Transaction::begin(&site.dir).unwrap();
    // The import that runs began by removing them.
    assert!(!left());
    leave();
    bonebank_node::dataset::remove_leftovers(&site.dir);
    assert!(left(), "removed while an import held the directory");
    drop(running);
    bonebank_node::dataset::remove_leftovers(&site.dir);
    assert!(!left(), "a node's start removes them");
    assert!(site.dir.current().unwrap().is_some());
}

#[test]
fn an_abandoned_transaction_removes_what_it_staged() {
    let site = Site::new(10);
    let before = crate::common::snapshot(site.dir.path());
    let donors = site.dir.load_table(Table::Donors).unwrap();
    let mut tx = Transaction::begin(&site.dir).unwrap();
    tx.stage(Table::Donors).unwrap();
    tx.write(Table::Donors, &donors[0]).unwrap();
    drop(tx);
    assert!(crate::common::snapshot(site.dir.path()) == before);
}

#[test]
fn every_import_makes_a_new_version_and_keeps_history() {
    let site = Site::new(20);
    let first = site.dir.current().unwrap().unwrap();
    let donors = site.export.join("donors.csv");
    let second = import::import(&site.dir, &[(Table::Donors, donors)])
        .unwrap()
        .version;
    assert_ne!(first.id, second.id);
    // Same content: the same table file, shared by both versions.
    assert_eq!(first.tables[&Table::Donors], second.tables[&Table::Donors]);
    let manifest = site.dir.manifest().unwrap();
    assert_eq!(manifest.current.unwrap().id, second.id);
    assert_eq!(manifest.history.len(), 1);
    assert_eq!(manifest.history[0].id, first.id);
    assert_eq!(
        manifest.history[0].rows[&Table::Samples],
        first.rows(Table::Samples)
    );
}

#[test]
fn replaced_table_files_are_removed() {
    let site = Site::new(20);
    let mut csv = site.csv(Table::Samples);
    csv.set(1, "aliquots_available", "0");
    let path = site.write("samples-v2.csv", &csv);
    let old = site.dir.current().unwrap().unwrap();
    let new = import::import(&site.dir, &[(Table::Samples, path)])
        .unwrap()
        .version;
    let old_file = &old.tables[&Table::Samples].file;
    assert_ne!(old_file, &new.tables[&Table::Samples].file);
    assert!(!site.dir.path().join("tables").join(old_file).exists());
    let files = std::fs::read_dir(site.dir.path().join("tables"))
        .unwrap()
        .count();
    assert_eq!(files, 3);
}
