//! Clients that send a body slowly or never cannot take the coordinator
//! down: each body must arrive within the listener's body timeout or the
//! connection is closed, so questions are answered meanwhile and the memory
//! such connections took is given back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_schemas::Role;
use bonebank_schemas::wire::FederatedResult;
use bonebank_service::server::BODY_TIMEOUT;

use crate::http::{ok, post};

/// The resident memory of this process (where the network runs), in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_bodies_neither_stop_questions_nor_keep_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = local::demo_sites();
    for (i, s) in ids.iter().enumerate() {
        local::generate_site(tmp.path(), s, 200, 40 + i as u64).unwrap();
    }
    let net = LocalNetwork::start(tmp.path(), &ids, &Policy::default(), 10_000).unwrap();
    let url = net.coordinator.url();
    let addr = url.trim_start_matches("http://").to_owned();
    let ada = net.token(&DevUser::new("ada", Role::Researcher, Some("p1"), &[]));
    let ask = |sql: &'static str| {
        let (url, ada) = (url.clone(), ada.clone());
        async move {
            let started = Instant::now();
            let r: FederatedResult = ok(post(
                &format!("{url}/v1/query"),
                Some(&ada),
                &serde_json::json!({ "sql": sql }),
            )
            .await);
            (r, started.elapsed())
        }
    };
    // Warm up (first loads, connections to the nodes), then the baseline.
    ask("SELECT COUNT(*) FROM samples").await;
    let before = rss_mb();

    // 2,000 connections that announce a 60,000-byte question and send one
    // byte of it.
    let slow: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..2_000)
            .map(|_| {
                let mut c = TcpStream::connect(&addr).unwrap();
                c.write_all(
                    b"POST /v1/query HTTP/1.1\r\nHost: coordinator\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{",
                )
                .unwrap();
                c
            })
            .collect()
    })
    .await
    .unwrap();

    // Questions are answered meanwhile, fresh ones too.
    for sql in [
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sex = 'Female'",
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sex = 'Male'",
    ] {
        let (r, took) = ask(sql).await;
        assert!(r.no_total.is_none(), "{r:?}");
        assert!(
            took < Duration::from_secs(1),
            "{sql} took {took:?} with 2,000 slow bodies held"
        );
    }

    // Past the body timeout every slow connection is answered and closed.
    tokio::time::sleep(BODY_TIMEOUT + Duration::from_secs(2)).await;
    let closed = tokio::task::spawn_blocking(move || {
        slow.into_iter()
            .filter(|c| {
                let mut c = c;
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut all = Vec::new();
                // The server's answer, then the end of the stream.
                c.read_to_end(&mut all).is_ok()
            })
            .count()
    })
    .await
    .unwrap();
    assert_eq!(
        closed, 2_000,
        "connections the server closed after the body timeout"
    );
    // The memory they took is given back (the allocator may keep a little).
    let after = rss_mb();
    assert!(
        after < before + 50.0,
        "resident memory {before:.0} MB before, {after:.0} MB after the slow bodies"
    );
    let (r, took) = ask("SELECT COUNT(*) FROM samples WHERE sex = 'Female'").await;
    assert!(r.no_total.is_none() && took < Duration::from_secs(1));
}
