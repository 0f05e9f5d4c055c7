//! The Debian package of the node, installed into a clean Debian root (a
//! chroot made by mmdebstrap from Debian's packages) as a site's IT would
//! install it: the system user, the modes of /etc/bonebank and
//! /var/lib/bonebank, the hardened unit (rated by `systemd-analyze
//! security`), and the node started from the packaged config with the
//! unit's command line, as the unit's user, answering on loopback.
//! Needs root, mmdebstrap and systemd-analyze; without them it says NOT RUN,
//! unless `BONEBANK_REQUIRE_PACKAGES=1` (set by `.ci/run`) makes that a
//! failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ready() -> bool {
    let required = std::env::var("BONEBANK_REQUIRE_PACKAGES").is_ok_and(|v| v == "1");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let why = if !root {
        Some("it must run as root (chroot, dpkg)")
    } else if !have("mmdebstrap") {
        Some("mmdebstrap is not installed (apt-get install mmdebstrap)")
    } else if !have("systemd-analyze") {
        Some("systemd-analyze is not installed")
    } else {
        None
    };
    if let Some(why) = why {
        assert!(!required, "the package tests are required here, but {why}");
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: the package test needs a clean Debian root, and {why}."
        );
        return false;
    }
    true
}

/// The node's package, built from this build's binary, in `dir`.
fn node_deb(dir: &Path) -> PathBuf {
    let deb = run(Command::new(repo().join("packaging/build-deb"))
        .args(["node", "--binary"])
        .arg(crate::cli::binary("bonebank-node"))
        .arg("--out")
        .arg(dir));
    PathBuf::from(deb.trim())
}

/// A minimal Debian (bookworm) with what the package depends on, from
/// Debian's mirror, kept as a tarball for later runs.
fn debian_root() -> PathBuf {
    let cache = PathBuf::from(std::env::var("HOME").unwrap())
        .join(".cache/bonebank/debian-bookworm-minbase.tar");
    if !cache.exists() {
        std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
        // Tests run side by side: each writes its own file, the last rename wins.
        let partial = tempfile::Builder::new()
            .suffix(".tar")
            .tempfile_in(cache.parent().unwrap())
            .unwrap()
            .into_temp_path();
        run(Command::new("mmdebstrap")
            .args([
                "--quiet",
                "--variant=minbase",
                "--include=libssl3,adduser,util-linux",
                "bookworm",
            ])
            .arg(&*partial));
        partial.persist(&cache).unwrap();
    }
    cache
}

/// Unmounts the chroot's /proc and /dev however the test ends.
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

#[test]
fn the_node_package_installs_into_a_clean_debian_and_serves() {
    if !ready() {
        return;
    }
    // The unit is rated before anything is installed.
    let unit = repo().join("packaging/systemd/bonebank-node.service");
    let rating = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit));
    let overall = rating
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .expect("a rating")
        .to_owned();
    println!("systemd-analyze security: {overall}");
    assert!(
        overall.contains(" OK") || overall.contains("SAFE"),
        "{overall}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let deb = node_deb(tmp.path());
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(debian_root())
        .arg("-C")
        .arg(&root));
    let mut mounts = Mounts(Vec::new());
    for (what, args) in [
        ("proc", vec!["-t", "proc", "proc"]),
        ("dev", vec!["--bind", "/dev"]),
    ] {
        let at = root.join(what);
        run(Command::new("mount").args(&args).arg(&at));
        mounts.0.push(at);
    }
    std::fs::copy(&deb, root.join("tmp/node.deb")).unwrap();
    let chroot = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.arg(&root)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    };
    let said = run(&mut chroot(&["dpkg", "-i", "/tmp/node.deb"]));
    assert!(said.contains("edit /etc/bonebank/node.toml"), "{said}");

    // What the package made: the user, and the modes.
    let user = run(&mut chroot(&["getent", "passwd", "bonebank"]));
    assert!(
        user.contains("/var/lib/bonebank") && user.contains("nologin"),
        "{user}"
    );
    let modes = run(&mut chroot(&[
        "stat",
        "-c",
        "%a %U %G %n",
        "/etc/bonebank",
        "/etc/bonebank/node.toml",
        "/var/lib/bonebank",
    ]));
    assert_eq!(
        modes.lines().collect::<Vec<_>>(),
        [
            "750 root bonebank /etc/bonebank",
            "640 root bonebank /etc/bonebank/node.toml",
            "750 bonebank bonebank /var/lib/bonebank"
        ],
    );
    let conffiles = run(&mut chroot(&[
        "dpkg-query",
        "--showformat=${Conffiles}",
        "--show",
        "bonebank-node",
    ]));
    assert!(conffiles.contains("/etc/bonebank/node.toml"), "{conffiles}");

    // The operator sets the site's id, and imports (here: generates) its data.
    let config = root.join("etc/bonebank/node.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("site_id = \"XX-SITE\"", "site_id = \"DK-ODE\"");
    std::fs::write(&config, text).unwrap();
    run(&mut chroot(&[
        "runuser",
        "-u",
        "bonebank",
        "--",
        "bonebank-node",
        "generate",
        "--site",
        "DK-ODE",
        "--donors",
        "200",
        "--out",
        "/var/lib/bonebank/data",
    ]));

    // The unit's own command line, as the unit's user, on a free port.
    let exec = std::fs::read_to_string(&unit)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=").map(str::to_owned))
        .unwrap();
    let mut args = vec![
        "setpriv",
        "--reuid=bonebank",
        "--regid=bonebank",
        "--init-groups",
        "--",
    ];
    args.extend(exec.split_whitespace());
    let mut node = chroot(&args)
        .env("BONEBANK_NODE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = node.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the node says where it listens");
        if let Some(rest) = line.strip_prefix("node DK-ODE listening on ") {
            break rest.trim().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no listening line"
        );
    };
    let health = Command::new("curl")
        .args(["-fsS", "--max-time", "10", &format!("{url}/health")])
        .output();
    let _ = node.kill();
    let _ = node.wait();
    let health = health.unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&health.stdout).trim(),
        r#"{"status":"up"}"#
    );
    // The state it made belongs to the unit's user.
    let state = run(&mut chroot(&[
        "stat",
        "-c",
        "%U %a",
        "/var/lib/bonebank/state/node.sqlite",
    ]));
    assert_eq!(state.split_whitespace().next(), Some("bonebank"), "{state}");
    drop(mounts);
}

#[test]
fn the_node_image_is_built_from_debian_packages_and_the_deb_only() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let deb = node_deb(tmp.path());
    let tar = tmp.path().join("image.tar");
    let podman = Command::new("sh")
        .args(["-c", "command -v podman"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut build = Command::new(repo().join("packaging/build-image"));
    build
        .args(["node", "--deb"])
        .arg(&deb)
        .arg("--tar")
        .arg(&tar);
    if !podman {
        build.arg("--no-import");
    }
    run(&mut build);
    let files = run(Command::new("tar").arg("-tf").arg(&tar));
    for f in [
        "./usr/bin/bonebank-node",
        "./etc/bonebank/node.toml",
        "./lib/systemd/system/bonebank-node.service",
    ] {
        // Debian's /lib is /usr/lib (merged /usr).
        let merged = f.replacen("./lib/", "./usr/lib/", 1);
        assert!(
            files.lines().any(|l| l == f || l == merged),
            "{f} is not in the image"
        );
    }
    let passwd = run(Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("./etc/passwd"));
    assert!(
        passwd.lines().any(|l| l.starts_with("bonebank:")),
        "{passwd}"
    );
    if podman {
        // Imported: the service's user, entry point and config. (Running
        // it needs a container runtime this machine may not allow; the
        // README says what was run.)
        let version = env!("CARGO_PKG_VERSION");
        let config = run(Command::new("podman").args([
            "image",
            "inspect",
            &format!("localhost/bonebank-node:{version}"),
            "--format",
            "{{.Config.User}} {{.Config.Entrypoint}} {{.Config.Cmd}}",
        ]));
        assert_eq!(config.trim(), "bonebank [/usr/bin/bonebank-node] [serve]");
        let _ = Command::new("podman")
            .args(["rmi", "-f", &format!("localhost/bonebank-node:{version}")])
            .output();
        let _ = Command::new("podman")
            .args(["image", "prune", "-f"])
            .output();
    }
}
