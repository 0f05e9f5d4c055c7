//! A table exported to CSV imports back unchanged, and a Parquet file imports
//! like its CSV.

use bonebank_node::dataset::DataDir;
use bonebank_node::{export, generate, import};
use bonebank_schemas::Table;

use crate::common::{Site, spec};

#[test]
fn export_then_import_gives_identical_tables() {
    let tmp = tempfile::tempdir().unwrap();
    for site in ["DE-LUE", "DK-NAE"] {
        let original = DataDir::new(tmp.path().join(format!("{site}-original")));
        generate::into_data_dir(&spec(site, 800, 11), &original).unwrap();
        let files: Vec<_> = [Table::Donors, Table::Samples, Table::Diagnoses]
            .into_iter()
            .map(|t| {
                let out = tmp.path().join(format!("{site}-{t}.csv"));
                let rows = export::to_csv(&original, t, &out).unwrap();
                assert_eq!(rows, original.current().unwrap().unwrap().rows(t));
                (t, out)
            })
            .collect();
        let copy = DataDir::new(tmp.path().join(format!("{site}-copy")));
        import::import(&copy, &files).unwrap();
        for t in [Table::Donors, Table::Samples, Table::Diagnoses] {
            let (a, b) = (original.load_table(t).unwrap(), copy.load_table(t).unwrap());
            assert!(!a.is_empty());
            assert_eq!(a, b, "{site} {t} changed in the round trip");
        }
        // Identical content gives identical files, down to the hash.
        let (va, vb) = (
            original.current().unwrap().unwrap(),
            copy.current().unwrap().unwrap(),
        );
        assert_eq!(va.tables, vb.tables);
    }
}

#[test]
fn parquet_input_imports_like_csv() {
    let site = Site::new(60);
    let version = site.dir.current().unwrap().unwrap();
    let files: Vec<_> = [Table::Donors, Table::Samples, Table::Diagnoses]
        .into_iter()
        .map(|t| {
            let from = site.dir.table_path(&version, t).unwrap();
            let to = site.tmp.path().join(format!("{t}.parquet"));
            std::fs::copy(from, &to).unwrap();
            (t, to)
        })
        .collect();
    let copy = DataDir::new(site.tmp.path().join("from-parquet"));
    import::import(&copy, &files).unwrap();
    assert_eq!(copy.current().unwrap().unwrap().tables, version.tables);
}

#[test]
fn semicolon_separated_files_with_a_bom_import() {
    let site = Site::new(15);
    let text = std::fs::read_to_string(site.export.join("donors.csv")).unwrap();
    let semicolons = format!("\u{feff}{}", text.replace(',', ";"));
    let path = site.tmp.path().join("excel.csv");
    std::fs::write(&path, semicolons).unwrap();
    let copy = DataDir::new(site.tmp.path().join("excel-site"));
    import::import(&copy, &[(Table::Donors, path)]).unwrap();
    assert_eq!(
        copy.load_table(Table::Donors).unwrap(),
        site.dir.load_table(Table::Donors).unwrap()
    );
}

/// Free text a spreadsheet would run as a formula is exported behind an
/// apostrophe (OWASP's advice against CSV injection) and imported back as
/// it was.
#[test]
fn formulas_in_free_text_are_neutralised_on_export_and_come_back() {
    let site = Site::new(20);
    let mut samples = site.csv(Table::Samples);
    let formulas = [
        "=HYPERLINK(A1)",
        "+1",
        "-80 degrees",
        "@SUM(A1:A9)",
        "'quoted",
    ];
    for (row, text) in formulas.iter().enumerate() {
        samples.set(row + 1, "comment", text);
    }
    let path = site.write("samples-formulas.csv", &samples);
    let dir = DataDir::new(site.tmp.path().join("formulas"));
    let donors = site.export.join("donors.csv");
    import::import(&dir, &[(Table::Donors, donors), (Table::Samples, path)]).unwrap();
    let out = site.tmp.path().join("exported.csv");
    export::to_csv(&dir, Table::Samples, &out).unwrap();
    let exported = crate::common::Csv::read(&out);
    let c = exported.col("comment");
    let cells: Vec<&str> = exported.rows.iter().map(|r| r[c].as_str()).collect();
    for text in formulas {
        assert!(
            cells.contains(&format!("'{text}").as_str()),
            "{text} not neutralised: {cells:?}"
        );
    }
    assert!(
        !cells.iter().any(|c| c.starts_with(['=', '+', '-', '@'])),
        "a cell a spreadsheet would run"
    );
    // And back: the same table.
    let back = DataDir::new(site.tmp.path().join("back"));
    let donors = site.export.join("donors.csv");
    import::import(&back, &[(Table::Donors, donors), (Table::Samples, out)]).unwrap();
    assert_eq!(
        back.load_table(Table::Samples).unwrap(),
        dir.load_table(Table::Samples).unwrap()
    );
}
