//! The commands as people run them: the demo, and the researcher CLI doing
//! exactly what the demo prints.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A workspace binary from this build: `cargo test --workspace` builds every
/// package's binaries next to the test binaries' `deps` folder. (Cargo names
/// only a test's own package's binaries in `CARGO_BIN_EXE_*`; these two are
/// the dev tools' and the researcher CLI's.)
pub(crate) fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it with cargo build --workspace (scripts/test does)",
        path.display()
    );
    path
}

fn demo_binary() -> std::path::PathBuf {
    binary("bonebank-dev")
}

fn cli_binary() -> std::path::PathBuf {
    binary("bonebank")
}

/// Splits a printed command line: words, and double-quoted words.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').expect("closing quote");
            out.push(r[..end].to_owned());
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            out.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    out
}

/// Kills the demo when the test ends, however it ends.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_runs_and_its_printed_commands_work_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Demo(
        Command::new(demo_binary())
            .args(["demo", "--donors", "500", "--dir"])
            .arg(tmp.path().join("demo"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| panic!("the demo stalled; so far:\n{}", lines.join("\n")));
        let done = line == "Running until Ctrl-C.";
        lines.push(line);
        if done {
            break;
        }
    }
    let out = lines.join("\n");
    let url = lines
        .iter()
        .find_map(|l| l.strip_prefix("coordinator: "))
        .unwrap_or_else(|| panic!("no coordinator line in:\n{out}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    for site in ["DE-LUE", "DK-ODE", "DK-NAE"] {
        assert!(out.contains(&format!("{site}  answered")), "{out}");
    }
    assert!(out.lines().any(|l| l.starts_with("total   Bone ")), "{out}");

    // Every printed command, run as printed (cargo run … -- replaced by the
    // binary), with the token cache in the test's directory.
    let config_dir = tmp.path().join("config");
    let bonebank = || {
        let mut c = Command::new(cli_binary());
        c.env("BONEBANK_CONFIG_DIR", &config_dir);
        c
    };
    let commands: Vec<&String> = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("cargo run"))
        .collect();
    assert_eq!(commands.len(), 3, "{out}");
    assert!(commands[0].contains(" login "), "sign in first: {out}");
    for command in commands {
        let w = words(command);
        let args = &w[w.iter().position(|a| a == "--").unwrap() + 1..];
        let run = bonebank().args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{command}\n{stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        if args[0] == "login" {
            assert!(stdout.contains("as alice (researcher"), "{stdout}");
        } else {
            assert!(stdout.contains("DK-NAE"), "{stdout}");
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config_dir.join("tokens.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token cache is for its owner only");
    }
    let who = bonebank()
        .args(["whoami", "--coordinator", url])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&who.stdout).starts_with("alice (researcher, project "));

    // --user is for demo users only.
    let stranger = bonebank()
        .args(["login", "--coordinator", url, "--user", "mallory"])
        .output()
        .unwrap();
    assert!(!stranger.status.success());
    assert!(
        String::from_utf8_lossy(&stranger.stderr).contains("did not sign in \"mallory\""),
        "{}",
        String::from_utf8_lossy(&stranger.stderr)
    );

    // Failures say what went wrong and what to do.
    let refused = bonebank()
        .args([
            "query",
            "--coordinator",
            url,
            "--sql",
            "SELECT donor_id FROM samples",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("the coordinator refused")
            && err.contains("donor_id")
            && err.contains("hint:"),
        "{err}"
    );

    let json = bonebank()
        .args([
            "query",
            "--json",
            "--coordinator",
            url,
            "--sql",
            "SELECT COUNT(*) FROM samples",
        ])
        .output()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["sites"].as_array().unwrap().len(), 3);

    // After logout, commands say how to sign in again.
    assert!(
        bonebank()
            .args(["logout", "--coordinator", url])
            .status()
            .unwrap()
            .success()
    );
    let out = bonebank()
        .args(["sites", "--coordinator", url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not signed in") && err.contains("bonebank login"),
        "{err}"
    );
}

#[test]
fn the_cli_says_when_the_coordinator_is_not_there() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_dir = tempfile::tempdir().unwrap();
    let run = Command::new(cli_binary())
        .env("BONEBANK_CONFIG_DIR", config_dir.path())
        .args([
            "login",
            "--coordinator",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("cannot reach the coordinator") && err.contains("bonebank-dev demo"),
        "{err}"
    );

    let run = Command::new(cli_binary())
        .args(["sites"])
        .env_remove("BONEBANK_COORDINATOR")
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--coordinator URL"));
}
