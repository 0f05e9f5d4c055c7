//! Every import rule, each with a bad file: refused with a message naming file,
//! row, column and value, and the data directory left byte for byte as it was.

use bonebank_node::dataset::DataDir;
use bonebank_node::import::{self, Problem};
use bonebank_schemas::Table;

use crate::common::{Csv, Site, refused, snapshot};

/// One broken input and the problem it must produce.
struct Case {
    name: &'static str,
    table: Table,
    edit: fn(&mut Csv) -> usize,
    column: &'static str,
    message: &'static str,
}

/// The first data row (from 1) whose `column` satisfies `pred`.
fn find(csv: &Csv, column: &str, pred: impl Fn(&str) -> bool) -> usize {
    let c = csv.col(column);
    1 + csv
        .rows
        .iter()
        .position(|r| pred(&r[c]))
        .expect("a matching row")
}

const CASES: &[Case] = &[
    Case {
        name: "unknown sex code",
        table: Table::Donors,
        column: "sex",
        edit: |c| {
            c.set(3, "sex", "F");
            3
        },
        message: "is not a sex code; allowed: Female, Male, Unknown, Undifferentiated, NotApplicable",
    },
    Case {
        name: "code in the wrong case",
        table: Table::Donors,
        column: "sex",
        edit: |c| {
            c.set(2, "sex", "female");
            2
        },
        message: "did you mean 'Female'?",
    },
    Case {
        name: "missing required value",
        table: Table::Donors,
        column: "sex",
        edit: |c| {
            c.set(4, "sex", "");
            4
        },
        message: "a value is required",
    },
    Case {
        name: "boolean that is not one",
        table: Table::Donors,
        column: "consent_commercial",
        edit: |c| {
            c.set(5, "consent_commercial", "yes");
            5
        },
        message: "allowed: true or false",
    },
    Case {
        name: "decimal out of range",
        table: Table::Donors,
        column: "bmi",
        edit: |c| {
            c.set(6, "bmi", "5.5");
            6
        },
        message: "allowed: a number from 10 to 80",
    },
    Case {
        name: "duplicate donor id",
        table: Table::Donors,
        column: "donor_id",
        edit: |c| {
            let first = c.get(1, "donor_id").to_owned();
            c.rows.push(c.rows[0].clone());
            let n = c.rows.len();
            c.set(n, "donor_id", &first);
            n
        },
        message: "the same donor_id is already in row 1; ids must be unique",
    },
    Case {
        name: "id with surrounding spaces",
        table: Table::Donors,
        column: "donor_id",
        edit: |c| {
            c.rows.push(c.rows[0].clone());
            let n = c.rows.len();
            c.set(n, "donor_id", " NEW-1");
            n
        },
        message: "must not start or end with spaces",
    },
    Case {
        name: "age that is not a number",
        table: Table::Samples,
        column: "age_at_sampling",
        edit: |c| {
            c.set(2, "age_at_sampling", "eighty");
            2
        },
        message: "is not a whole number",
    },
    Case {
        name: "age over 120",
        table: Table::Samples,
        column: "age_at_sampling",
        edit: |c| {
            c.set(3, "age_at_sampling", "121");
            3
        },
        message: "is out of range; allowed: whole numbers from 0 to 120",
    },
    Case {
        name: "negative aliquots",
        table: Table::Samples,
        column: "aliquots_available",
        edit: |c| {
            c.set(4, "aliquots_available", "-1");
            4
        },
        message: "is out of range; allowed: whole numbers from 0 to 100000",
    },
    Case {
        name: "sampling date in the future",
        table: Table::Samples,
        column: "sampling_date",
        edit: |c| {
            let d = (chrono::Local::now().date_naive() + chrono::Days::new(2)).to_string();
            c.set(5, "sampling_date", &d);
            5
        },
        message: "is in the future",
    },
    Case {
        name: "date in another format",
        table: Table::Samples,
        column: "sampling_date",
        edit: |c| {
            c.set(6, "sampling_date", "17.03.2024");
            6
        },
        message: "write dates as YYYY-MM-DD",
    },
    Case {
        name: "unknown storage temperature",
        table: Table::Samples,
        column: "storage_temperature",
        edit: |c| {
            c.set(7, "storage_temperature", "-80");
            7
        },
        message: "is not a storage temperature code",
    },
    Case {
        name: "unknown sample type",
        table: Table::Samples,
        column: "sample_type",
        edit: |c| {
            c.set(8, "sample_type", "Marrow");
            8
        },
        message: "is not a sample type code",
    },
    Case {
        name: "sample whose donor does not exist",
        table: Table::Samples,
        column: "donor_id",
        edit: |c| {
            c.set(9, "donor_id", "LUE-NOBODY");
            9
        },
        message: "no such id in the current donors table",
    },
    Case {
        name: "duplicate sample id",
        table: Table::Samples,
        column: "sample_id",
        edit: |c| {
            let id = c.get(1, "sample_id").to_owned();
            c.set(10, "sample_id", &id);
            10
        },
        message: "the same sample_id is already in row 1",
    },
    Case {
        name: "passage number on a non-culture",
        table: Table::Samples,
        column: "passage_number",
        edit: |c| {
            let r = find(c, "material_subtype", |m| m == "serum");
            c.set(r, "passage_number", "2");
            r
        },
        message: "only msc_culture samples have a passage number",
    },
    Case {
        name: "material that does not fit the sample type",
        table: Table::Samples,
        column: "material_subtype",
        edit: |c| {
            let r = find(c, "sample_type", |t| t == "Serum");
            c.set(r, "material_subtype", "cancellous_bone");
            r
        },
        message: "does not fit sample type Serum; cancellous_bone is recorded as: Bone",
    },
    Case {
        name: "passage number out of range",
        table: Table::Samples,
        column: "passage_number",
        edit: |c| {
            let r = find(c, "material_subtype", |m| m == "msc_culture");
            c.set(r, "passage_number", "51");
            r
        },
        message: "whole numbers from 0 to 50",
    },
    Case {
        name: "NUL byte in free text",
        table: Table::Samples,
        column: "comment",
        edit: |c| {
            c.set(12, "comment", "thawed\0once");
            12
        },
        message: "has a control character",
    },
    Case {
        name: "escape sequence in free text",
        table: Table::Samples,
        column: "storage_location",
        edit: |c| {
            c.set(13, "storage_location", "rack \u{1b}[2J 4");
            13
        },
        message: "has a control character",
    },
    Case {
        name: "free text too long",
        table: Table::Samples,
        column: "comment",
        edit: |c| {
            let long = "x".repeat(2001);
            c.set(11, "comment", &long);
            11
        },
        message: "longer than the 2000 characters",
    },
    Case {
        name: "text that is not an ICD-10 code",
        table: Table::Diagnoses,
        column: "diagnosis",
        edit: |c| {
            c.set(2, "diagnosis", "hip fracture");
            2
        },
        message: "is not an ICD-10 code",
    },
    Case {
        name: "diagnosis of a missing sample",
        table: Table::Diagnoses,
        column: "sample_id",
        edit: |c| {
            c.set(3, "sample_id", "LUE-S0");
            3
        },
        message: "no such id in the current samples table",
    },
    Case {
        name: "two primary diagnoses",
        table: Table::Diagnoses,
        column: "is_primary",
        edit: |c| {
            let r = find(c, "is_primary", |p| p == "false");
            c.set(r, "is_primary", "true");
            r
        },
        message: "already has a primary diagnosis; a sample has at most one",
    },
    Case {
        name: "same diagnosis twice for a sample",
        table: Table::Diagnoses,
        column: "sample_id",
        edit: |c| {
            let row = c.rows[0].clone();
            let mut copy = row;
            let p = c.col("is_primary");
            copy[p] = "false".into();
            c.rows.push(copy);
            c.rows.len()
        },
        message: "this sample already has diagnosis",
    },
];

fn matches(p: &Problem, file: &str, row: usize, case: &Case) -> bool {
    p.file.ends_with(file)
        && p.row == Some(row as u64)
        && p.column.as_deref() == Some(case.column)
        && p.message.contains(case.message)
}

#[test]
fn every_rule_refuses_with_its_message_and_changes_nothing() {
    let site = Site::new(150);
    let before = snapshot(site.dir.path());
    for case in CASES {
        let mut csv = site.csv(case.table);
        let row = (case.edit)(&mut csv);
        let name = format!("bad-{}.csv", case.table);
        let path = site.write(&name, &csv);
        let (total, problems) = refused(&site.dir, &[(case.table, path)]);
        assert!(total >= 1, "{}", case.name);
        assert!(
            problems.iter().any(|p| matches(p, &name, row, case)),
            "{}: expected row {row}, column {}, '{}'; got:\n{}",
            case.name,
            case.column,
            case.message,
            problems
                .iter()
                .map(|p| format!("  {p}\n"))
                .collect::<String>()
        );
        assert!(
            snapshot(site.dir.path()) == before,
            "{}: the data directory changed",
            case.name
        );
    }
    // The untouched export still imports: the refusals were about the edits.
    import::import(&site.dir, &Site::all_files(&site.export)).unwrap();
}

/// A case name, an edit of the header, the column and message expected.
type HeaderCase = (&'static str, fn(&mut Csv), &'static str, &'static str);

#[test]
fn header_problems_name_the_column() {
    let site = Site::new(20);
    let before = snapshot(site.dir.path());
    let cases: [HeaderCase; 3] = [
        (
            "unknown column",
            |c| c.header[9] = "smoker".into(),
            "smoker",
            "is not a column of the donors table",
        ),
        (
            "doubled column",
            |c| c.header[9] = "bmi".into(),
            "bmi",
            "appears twice in the header",
        ),
        (
            "missing required column",
            |c| {
                let i = c.col("consent_withdrawn");
                c.header.remove(i);
                c.rows.iter_mut().for_each(|r| {
                    r.remove(i);
                });
            },
            "consent_withdrawn",
            "is required but missing from the header",
        ),
    ];
    for (name, edit, column, message) in cases {
        let mut csv = site.csv(Table::Donors);
        edit(&mut csv);
        let path = site.write("donors-header.csv", &csv);
        let (_, problems) = refused(&site.dir, &[(Table::Donors, path)]);
        assert!(
            problems.iter().any(|p| p.row.is_none()
                && p.column.as_deref() == Some(column)
                && p.message.contains(message)),
            "{name}: {problems:?}"
        );
        assert!(
            snapshot(site.dir.path()) == before,
            "{name}: the data directory changed"
        );
    }
}

#[test]
fn a_missing_optional_column_imports_as_empty() {
    let site = Site::new(20);
    let mut csv = site.csv(Table::Donors);
    let i = csv.col("smoking_status");
    csv.header.remove(i);
    csv.rows.iter_mut().for_each(|r| {
        r.remove(i);
    });
    let path = site.write("donors-no-smoking.csv", &csv);
    import::import(&site.dir, &[(Table::Donors, path)]).unwrap();
    let batches = site.dir.load_table(Table::Donors).unwrap();
    assert!(
        batches
            .iter()
            .all(|b| b.column_by_name("smoking_status").unwrap().null_count() == b.num_rows())
    );
}

#[test]
fn unreadable_rows_and_files_are_refused() {
    let site = Site::new(20);
    let before = snapshot(site.dir.path());
    let text = std::fs::read_to_string(site.export.join("donors.csv")).unwrap();

    let ragged = site.tmp.path().join("ragged.csv");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[5] = "LUE-X,Female,true";
    std::fs::write(&ragged, lines.join("\n")).unwrap();
    let (_, problems) = refused(&site.dir, &[(Table::Donors, ragged)]);
    assert!(
        problems[0]
            .message
            .contains("could not be read past this point"),
        "{problems:?}"
    );

    let latin1 = site.tmp.path().join("latin1.csv");
    let mut bytes = text.clone().into_bytes();
    let at = bytes.iter().rposition(|b| *b == b'F').unwrap();
    bytes[at] = 0xD8; // 'Ø' in Latin-1, invalid as UTF-8
    std::fs::write(&latin1, bytes).unwrap();
    let (_, problems) = refused(&site.dir, &[(Table::Donors, latin1)]);
    assert!(
        problems[0].message.contains("could not be read"),
        "{problems:?}"
    );

    let empty = site.tmp.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let err = import::import(&site.dir, &[(Table::Donors, empty)]).unwrap_err();
    assert!(err.to_string().contains("the file is empty"), "{err}");

    let unknown = site.tmp.path().join("donors.xlsx");
    std::fs::write(&unknown, "PK").unwrap();
    let err = import::import(&site.dir, &[(Table::Donors, unknown)]).unwrap_err();
    assert!(
        err.to_string().contains("use a .csv or .parquet file"),
        "{err}"
    );

    assert!(snapshot(site.dir.path()) == before);
}

/// Import opens regular files only, and reads a bounded header: a link to
/// `/dev/zero` once read until memory ran out, and a FIFO hung it.
#[test]
fn files_that_are_not_regular_files_are_refused_by_their_kind() {
    let site = Site::new(20);
    let before = snapshot(site.dir.path());
    // Runs the import on a thread of its own, so that a hang fails the test
    // instead of stalling it.
    let import_within = |path: std::path::PathBuf| {
        let dir = site.dir.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(import::import(&dir, &[(Table::Donors, path)]).map(|_| ()));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the import answered within 10 s")
    };

    let zero = site.tmp.path().join("zero.csv");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let err = import_within(zero).unwrap_err().to_string();
    assert!(
        err.contains("is a character device") && err.contains("regular files only"),
        "{err}"
    );
    let zero = site.tmp.path().join("zero.parquet");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let err = import_within(zero).unwrap_err().to_string();
    assert!(err.contains("is a character device"), "{err}");

    let fifo = site.tmp.path().join("fifo.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = import_within(fifo).unwrap_err().to_string();
    assert!(err.contains("is a FIFO"), "{err}");

    let folder = site.tmp.path().join("folder.csv");
    std::fs::create_dir(&folder).unwrap();
    let err = import_within(folder).unwrap_err().to_string();
    assert!(err.contains("is a directory"), "{err}");

    // A regular file whose first line never ends: no header.
    let endless = site.tmp.path().join("endless.csv");
    std::fs::write(&endless, "x".repeat(3 << 20)).unwrap();
    let err = import_within(endless).unwrap_err().to_string();
    assert!(err.contains("no header line in the first 1 MiB"), "{err}");

    assert!(snapshot(site.dir.path()) == before);
}

/// A file that is not a table's export gets no line of itself printed:
/// the header is its first line, and a link to a secret file would show it.
#[test]
fn a_first_line_that_is_no_header_is_not_echoed() {
    let site = Site::new(20);
    let secret = site.tmp.path().join("shadow.csv");
    std::fs::write(
        &secret,
        "root:$y$j9T$Q0Zf3secrethash:19000:0:99999:7:::\nmore\n",
    )
    .unwrap();
    let err = import::import(&site.dir, &[(Table::Donors, secret)])
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("secrethash") && !err.contains("root:"),
        "{err}"
    );
    assert!(
        err.contains("number 1 of the header (its text is not shown)"),
        "{err}"
    );
}

/// Text in a Parquet file that is not UTF-8 is refused, not imported as
/// missing values (arrow's safe cast once made it null).
#[test]
fn parquet_text_that_is_not_utf8_is_refused() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BinaryArray, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    let site = Site::new(20);
    let before = snapshot(site.dir.path());
    // The donors' export as Parquet, but with sex as raw bytes, one of them
    // Latin-1.
    let csv = site.csv(Table::Donors);
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, name) in csv.header.iter().enumerate() {
        let values: Vec<Vec<u8>> = csv
            .rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                if name == "sex" && r == 3 {
                    b"M\xe6nd".to_vec()
                } else {
                    row[i].clone().into_bytes()
                }
            })
            .collect();
        fields.push(Field::new(name, DataType::Binary, false));
        columns.push(Arc::new(BinaryArray::from_iter_values(values.iter())));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let path = site.tmp.path().join("donors.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let err = match import::import(&site.dir, &[(Table::Donors, path)]) {
        Err(import::Error::Refused(p)) => p.to_string(),
        Err(e) => e.to_string(),
        Ok(_) => panic!("a donor's sex that is not UTF-8 was imported"),
    };
    assert!(err.contains("UTF-8"), "{err}");
    assert!(!err.contains("a value is required"), "{err}");
    assert!(snapshot(site.dir.path()) == before);
}

#[test]
fn many_problems_show_twenty_and_count_all() {
    let site = Site::new(80);
    let mut csv = site.csv(Table::Samples);
    for row in 1..=137 {
        csv.set(row, "aliquots_available", "-3");
    }
    let path = site.write("many.csv", &csv);
    let (total, problems) = refused(&site.dir, &[(Table::Samples, path)]);
    assert_eq!(total, 137);
    assert_eq!(problems.len(), 20);
}

#[test]
fn replacing_donors_must_keep_the_donors_samples_refer_to() {
    let site = Site::new(40);
    let before = snapshot(site.dir.path());
    let mut csv = site.csv(Table::Donors);
    let dropped = csv.rows.remove(0)[0].clone();
    let path = site.write("fewer-donors.csv", &csv);
    let (_, problems) = refused(&site.dir, &[(Table::Donors, path)]);
    assert!(
        problems
            .iter()
            .all(|p| p.file == "the current samples table"),
        "{problems:?}"
    );
    assert_eq!(problems[0].value.as_deref(), Some(dropped.as_str()));
    assert!(
        problems[0]
            .message
            .contains("import samples again together with donors")
    );
    assert!(snapshot(site.dir.path()) == before);
}

#[test]
fn a_refused_first_import_leaves_no_directory() {
    let site = Site::new(10);
    let mut csv = site.csv(Table::Donors);
    csv.set(1, "sex", "X");
    let path = site.write("bad-donors.csv", &csv);
    let fresh = DataDir::new(site.tmp.path().join("nested/new-site"));
    refused(&fresh, &[(Table::Donors, path)]);
    assert!(!site.tmp.path().join("nested").exists());
}

#[test]
fn samples_before_donors_are_refused_with_a_hint() {
    let site = Site::new(10);
    let fresh = DataDir::new(site.tmp.path().join("fresh"));
    let (_, problems) = refused(&fresh, &[(Table::Samples, site.export.join("samples.csv"))]);
    assert!(
        problems[0]
            .message
            .contains("import donors first, or together with this file"),
        "{problems:?}"
    );
}

#[test]
fn diagnoses_are_normalised_on_import() {
    let site = Site::new(30);
    let mut csv = site.csv(Table::Diagnoses);
    let hip = find(&csv, "diagnosis", |d| d == "S72.1");
    csv.set(hip, "diagnosis", "DS721");
    let path = site.write("sks.csv", &csv);
    import::import(&site.dir, &[(Table::Diagnoses, path)]).unwrap();
    let original = Csv::read(&site.export.join("diagnoses.csv"));
    let out = site.tmp.path().join("diagnoses-out.csv");
    bonebank_node::export::to_csv(&site.dir, Table::Diagnoses, &out).unwrap();
    assert_eq!(Csv::read(&out).rows, original.rows);
}
