//! The `bonebank-node` binary as an operator runs it.

use std::process::Command;

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bonebank-node"))
}

#[test]
fn generate_import_and_a_refusal_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    let out = node()
        .args([
            "generate", "--site", "DK-ODE", "--donors", "50", "--seed", "4", "--format", "csv",
            "--out",
        ])
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let data = tmp.path().join("data");
    let out = node()
        .args(["import", "--data-dir"])
        .arg(&data)
        .arg("--table")
        .arg("donors")
        .arg(export.join("donors.csv"))
        .arg("--table")
        .arg("samples")
        .arg(export.join("samples.csv"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported 50 donors rows"), "{stdout}");
    assert!(stdout.contains("is current"), "{stdout}");

    let bad = tmp.path().join("bad.csv");
    let text = std::fs::read_to_string(export.join("samples.csv")).unwrap();
    std::fs::write(&bad, text.replacen("-60to-85", "-80C", 1)).unwrap();
    let out = node()
        .args(["import", "--data-dir"])
        .arg(&data)
        .args(["--table", "samples"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("import refused: 1 problem found; nothing was changed."),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "column storage_temperature, value '-80C': is not a storage temperature code"
        ),
        "{stderr}"
    );

    let out = node()
        .args(["info", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("samples"));

    // A reader that stops early (`info | head -3`) is no failure: the
    // reading end is closed before the command writes.
    let mut child = node()
        .args(["info", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "{:?} {stderr}",
        out.status
    );
}

#[test]
fn bad_arguments_get_clear_messages() {
    let out = node()
        .args([
            "generate", "--site", "SE-UPP", "--donors", "5", "--out", "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the country must be DE or DK"));

    let out = node()
        .args([
            "generate", "--site", "DE-KIE", "--donors", "5", "--out", "x",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one with --profile"));

    let out = node()
        .args(["import", "--data-dir", "x", "--table", "patients", "p.csv"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("'patients' is not a table code; allowed: donors, samples, diagnoses")
    );
}
