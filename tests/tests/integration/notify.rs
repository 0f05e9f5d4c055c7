//! Notifications against a real SMTP server and a real webhook receiver:
//! Python's `aiosmtpd` (from PyPI) on a loopback port, speaking STARTTLS
//! with a certificate of the network's CA and storing what it receives in
//! a maildir, and an HTTP receiver in this test that checks each webhook's
//! signature itself. `scripts/test` and `.ci/run` install aiosmtpd;
//! without it this test says so and does not run, unless
//! `BONEBANK_REQUIRE_SMTP=1` (set by `.ci/run`) makes that a failure.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_schemas::wire::{FederatedResult, SiteStatus};
use bonebank_schemas::{Role, SiteId};
use bonebank_service::notify::{EmailSettings, WebhookSettings};
use bonebank_service::tls;
use hmac::Mac as _;

/// The SMTP server's process; killed when dropped.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts aiosmtpd with STARTTLS required, or says why this test does not
/// run here.
fn smtp(dir: &Path, cert: &Path, key: &Path) -> Option<Smtp> {
    let required = std::env::var("BONEBANK_REQUIRE_SMTP").is_ok_and(|v| v == "1");
    let installed = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            !required,
            "the SMTP test is required here, but python3 cannot import aiosmtpd (pip install aiosmtpd)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: stewards_and_requesters_are_told needs Python's aiosmtpd (pip install aiosmtpd). \
             scripts/test installs it; .ci/run requires it."
        );
        return None;
    }
    // A port the system chooses, given to the server (aiosmtpd takes a
    // port, not a listening socket).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = dir.join("maildir");
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tlscert")
        .arg(cert)
        .arg("--tlskey")
        .arg(key)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 starts");
    let server = Smtp {
        child,
        port,
        maildir,
    };
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "aiosmtpd did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

/// A message as the SMTP server stored it, decoded.
#[derive(Debug, Clone)]
struct Mail {
    to: String,
    subject: String,
    body: String,
}

fn mails(maildir: &Path) -> Vec<Mail> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let raw = std::fs::read(e.path()).unwrap();
            let parsed = mailparse::parse_mail(&raw).unwrap();
            let header = |name: &str| {
                parsed
                    .headers
                    .iter()
                    .find(|h| h.get_key().eq_ignore_ascii_case(name))
                    .map(|h| h.get_value())
                    .unwrap_or_default()
            };
            out.push(Mail {
                to: header("To"),
                subject: header("Subject"),
                body: parsed.get_body().unwrap(),
            });
        }
    }
    out
}

/// Waits until `n` messages to `to` have arrived, and a little more to see
/// that no others follow; returns them.
fn wait_for_mail(maildir: &Path, to: &str, n: usize) -> Vec<Mail> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<Mail> = mails(maildir)
            .into_iter()
            .filter(|m| m.to.contains(to))
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < until,
            "{} of {n} messages to {to} within 30 s: {got:?}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many messages to addresses containing `to` have arrived.
fn sent_to(maildir: &Path, to: &str) -> usize {
    mails(maildir).iter().filter(|m| m.to.contains(to)).count()
}

/// Starts DK-ODE's node (the second) again with `config`, on its address.
async fn start_again(
    net: &mut LocalNetwork,
    config: bonebank_node::config::NodeConfig,
    node: bonebank_node::server::RunningNode,
) {
    node.stop().await;
    let restarted =
        bonebank_node::server::start(&config, bonebank_node::server::state(&config).unwrap())
            .unwrap();
    net.nodes.insert(1, (config, restarted));
}

/// A webhook as received: its headers (lower-case names) and body.
type Received = (HashMap<String, String>, Vec<u8>);

/// An HTTP receiver on loopback: answers the first request 503 (so that
/// the sender must try again) and every later one 200.
fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    std::thread::spawn(move || {
        for (served, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap(); // the request line
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            kept.lock().unwrap().push((headers, body));
            let status = if served == 0 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

/// The signature a receiver expects, computed here from the HMAC crate
/// directly rather than with bonebank's own function.
fn expected_signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The webhooks received so far whose signature and timestamp check out,
/// as their JSON; panics on one that does not.
fn checked_events(got: &Mutex<Vec<Received>>, secret: &[u8]) -> Vec<serde_json::Value> {
    let now = bonebank_service::unix_now();
    got.lock()
        .unwrap()
        .iter()
        .map(|(headers, body)| {
            let ts = &headers["x-bonebank-timestamp"];
            assert_eq!(
                headers["x-bonebank-signature"],
                expected_signature(secret, ts, body)
            );
            let sent: i64 = ts.parse().unwrap();
            assert!(now.abs_diff(sent) < 120, "an old timestamp: {ts}");
            serde_json::from_slice(body).unwrap()
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < until, "{what} within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stewards_and_requesters_are_told_without_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = local::demo_sites();
    for (i, s) in ids.iter().enumerate() {
        local::generate_site(tmp.path(), s, 300, 40 + i as u64).unwrap();
    }
    // DK-ODE's stewards approve every industry question (the demo's rule).
    let policy = |site: &SiteId| Policy {
        rules: local::demo_policy(site).rules,
        ..Policy::default()
    };
    let mut net = LocalNetwork::start_with(tmp.path(), &ids, policy, 10_000).unwrap();
    let ode = SiteId::parse(SiteId::ODENSE).unwrap();
    let Some(smtp) = smtp(
        tmp.path(),
        &net.pki.node_cert(&ode),
        &net.pki.node_key(&ode),
    ) else {
        return;
    };
    let ca = net.pki.ca_cert();
    let email = |from: &str| EmailSettings {
        // STARTTLS, checked against the network's CA (the server shows a
        // certificate for localhost).
        smtp: format!("smtp://localhost:{}?tls=required", smtp.port),
        from: from.into(),
        user: None,
        password_file: None,
        ca: Some(ca.clone()),
    };
    // doctor finds the mail server, with STARTTLS and the site's CA, and
    // says plainly when it is not there.
    let found = bonebank_service::doctor::email("notices (email)", &email("b <b@x.example>")).await;
    assert!(found.ok, "{found}");
    let mut nowhere = email("b <b@x.example>");
    nowhere.smtp = format!("smtp://localhost:{}?tls=required", smtp.port + 1);
    let missing = bonebank_service::doctor::email("notices (email)", &nowhere).await;
    assert!(
        !missing.ok && missing.says.contains("firewall"),
        "{missing}"
    );
    let (hook_url, hooks) = receiver();
    let secret = "a webhook secret of the site";
    let secret_file = tmp.path().join("webhook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let short = tmp.path().join("short.secret");
    std::fs::write(&short, "too short\n").unwrap();
    let hook = |secret_file: &Path| WebhookSettings {
        url: hook_url.clone(),
        secret_file: secret_file.to_owned(),
        attempts: 4,
    };
    assert!(bonebank_service::doctor::webhook("notices (webhook)", &hook(&secret_file)).ok);
    let refused = bonebank_service::doctor::webhook("notices (webhook)", &hook(&short));
    assert!(
        !refused.ok && refused.says.contains("shorter than 16"),
        "{refused}"
    );

    // DK-ODE's node, restarted with notices: Danish, a digest at most
    // hourly, no expiry reminders yet.
    let restart = |net: &mut LocalNetwork, expiry_hours: u64| {
        let (mut config, node) = net.nodes.remove(1);
        config.listen = node.addr;
        config.notify = Some(bonebank_node::notify::NotifyConfig {
            stewards: vec!["steward@ode.example".into()],
            language: "da".into(),
            link: Some("https://stewards.ode.example/#queue".into()),
            digest_minutes: 60,
            expiry_hours,
            check_seconds: 1,
            email: Some(email("bonebank DK-ODE <bonebank@ode.example>")),
            webhook: Some(hook(&secret_file)),
        });
        (config, node)
    };
    let (config, node) = restart(&mut net, 0);
    start_again(&mut net, config, node).await;

    // A coordinator that tells requesters, beside the network's own.
    let mut cc = net.coordinator_config.clone();
    cc.listen = "127.0.0.1:0".parse().unwrap();
    cc.state_dir = tmp.path().join("coordinator-told");
    cc.notify = Some(bonebank_coordinator::notify::NotifyConfig {
        email: email("bonebank <network@bonebank.example>"),
        app_url: Some("https://bonebank.example".into()),
        check_seconds: 1,
    });
    let coordinator = bonebank_coordinator::server::start(&cc).unwrap();
    let url = coordinator.url();

    tls::install_default_provider();
    let ingrid = net.token(
        &DevUser::new("ingrid", Role::Industry, Some("msc-scoping"), &[])
            .with_email("ingrid@industry.example"),
    );
    let ask = |sql: &'static str| {
        let (url, token) = (url.clone(), ingrid.clone());
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/query"))
                .bearer_auth(token)
                .header("Accept-Language", "de-DE,de;q=0.9")
                .json(&serde_json::json!({
                    "sql": sql, "loss": 0.05, "fresh": true,
                    "purpose": { "text": "scoping an MSC study" },
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<FederatedResult>().await.unwrap()
        }
    };
    let first = ask("SELECT sex, COUNT(*) FROM samples GROUP BY sex").await;
    assert_eq!(first.sites[1].status, SiteStatus::WaitingForApproval);
    let ticket = first.sites[1].ticket.clone().expect("the site's ticket");
    assert_eq!(ticket.len(), 32);

    // The stewards hear once, by email and by webhook.
    let to_stewards = wait_for_mail(&smtp.maildir, "steward@ode.example", 1);
    wait_until("a webhook delivered after one 503", || {
        hooks.lock().unwrap().len() >= 2
    });
    let m = &to_stewards[0];
    assert!(
        m.subject.contains("DK-ODE") && m.subject.contains("venter"),
        "{m:?}"
    );
    assert!(
        m.body.contains("https://stewards.ode.example/#queue"),
        "{m:?}"
    );
    for leak in [
        "ingrid",
        "msc-scoping",
        "SELECT",
        "sex",
        "scoping an MSC study",
    ] {
        assert!(
            !m.body.contains(leak) && !m.subject.contains(leak),
            "{leak}: {m:?}"
        );
    }
    let events = checked_events(&hooks, secret.as_bytes());
    // The first delivery was answered 503 and sent again, signed afresh.
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["event"], "questions_waiting");
        assert_eq!(e["site"], "DK-ODE");
        let mut keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["event", "link", "sent_at", "site"], "{e}");
    }
    // A signature does not survive a changed body.
    {
        let got = hooks.lock().unwrap();
        let (headers, _) = &got[1];
        let forged = br#"{"event":"questions_waiting","site":"DE-LUE"}"#;
        assert_ne!(
            headers["x-bonebank-signature"],
            expected_signature(secret.as_bytes(), &headers["x-bonebank-timestamp"], forged)
        );
    }

    // A second question within the hour is not announced on its own.
    let second = ask("SELECT COUNT(*) FROM samples").await;
    let second_ticket = second.sites[1].ticket.clone().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sent_to(&smtp.maildir, "steward@"), 1);
    assert_eq!(hooks.lock().unwrap().len(), 2);

    // Restarted with reminders for questions that expire within a year
    // (so, both): one reminder per channel, and the digest not repeated.
    let (config, node) = restart(&mut net, 24 * 365);
    start_again(&mut net, config, node).await;
    let to_stewards = wait_for_mail(&smtp.maildir, "steward@ode.example", 2);
    wait_until("the reminder's webhook", || {
        hooks.lock().unwrap().len() >= 3
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sent_to(&smtp.maildir, "steward@"), 2);
    assert!(
        to_stewards.iter().any(|m| m.body.contains("udløber")),
        "{to_stewards:?}"
    );
    let events = checked_events(&hooks, secret.as_bytes());
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2]["event"], "questions_expiring");

    // Nobody has told ingrid anything yet.
    assert!(
        mails(&smtp.maildir)
            .iter()
            .all(|m| !m.to.contains("ingrid"))
    );
    // The steward approves the first and rejects the second.
    for (t, decision) in [
        (&ticket, serde_json::json!({ "decision": "approve" })),
        (
            &second_ticket,
            serde_json::json!({ "decision": "reject", "reason": "no agreement" }),
        ),
    ] {
        let (status, body) = crate::federation::steward_call(
            &net,
            1,
            "DK-ODE",
            reqwest::Method::POST,
            &format!("/v1/approvals/{t}"),
            Some(decision),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let to_ingrid = wait_for_mail(&smtp.maildir, "ingrid@industry.example", 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sent_to(&smtp.maildir, "ingrid"),
        2,
        "each decision is told once"
    );
    let of = |id: i64| {
        to_ingrid
            .iter()
            .find(|m| {
                m.body
                    .contains(&format!("https://bonebank.example/#a={id}"))
            })
            .unwrap_or_else(|| panic!("no message links answer {id}: {to_ingrid:?}"))
    };
    let approved = of(first.id.unwrap());
    assert!(approved.body.contains("freigegeben"), "{approved:?}");
    assert!(approved.subject.contains("DK-ODE"), "{approved:?}");
    let rejected = of(second.id.unwrap());
    assert!(rejected.body.contains("abgelehnt"), "{rejected:?}");
    // Only that it was decided: not the steward's reason, and no count.
    for m in [approved, rejected] {
        assert!(!m.body.contains("no agreement"), "{m:?}");
        let digits: String = m
            .body
            .replace(&format!("#a={}", first.id.unwrap()), "")
            .replace(&format!("#a={}", second.id.unwrap()), "")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        // Only the day the question was asked, YYYY-MM-DD.
        assert_eq!(digits.len(), 8, "{m:?}");
    }
    coordinator.stop().await;
}
