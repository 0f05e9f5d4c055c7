//! The docs match the code: the README lists every column and code, and the
//! example export imports cleanly.

use std::path::Path;

use bonebank_node::dataset::DataDir;
use bonebank_node::import;
use bonebank_schemas::{ColumnKind, Table, ValueSet};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn readme_lists_every_column_and_code() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for table in Table::ALL {
        assert!(
            readme.contains(&format!("**{table}**")),
            "README has no section for {table}"
        );
        for column in table.columns() {
            assert!(
                readme.contains(&format!("`{}`", column.name)),
                "README misses column {}",
                column.name
            );
            if let ColumnKind::Code { codes, .. } = column.kind {
                for code in codes {
                    assert!(
                        readme.contains(&format!("`{code}`")),
                        "README misses code {code} of {}",
                        column.name
                    );
                }
            }
        }
    }
}

#[test]
fn example_export_imports() {
    let export = repo().join("examples/export");
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("dk-ode"));
    let files: Vec<_> = Table::ALL
        .iter()
        .map(|t| (*t, export.join(format!("{t}.csv"))))
        .collect();
    let report = import::import(&dir, &files).unwrap();
    assert_eq!(report.rows[&Table::Donors], 12);
}
