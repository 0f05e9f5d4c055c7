//! Clients that send a body slowly or never cannot take the coordinator
//! down: one address holds at most its share of open requests, each body
//! must arrive within the listener's body timeout or the connection is
//! closed, so questions are answered meanwhile and the memory such
//! connections took is given back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_schemas::Role;
use bonebank_schemas::wire::FederatedResult;
use bonebank_service::server::{BODY_TIMEOUT, REQUESTS_PER_ADDRESS};

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
    // Warm up (first loads, every site's catalogue measured and fetched,
    // connections to the nodes), then the baseline: a catalogue measured
    // while the slow bodies arrive would count as memory they kept.
    net.wait_for_catalogues(Duration::from_secs(60))
        .await
        .expect("every site's catalogue");
    ask("SELECT COUNT(*) FROM samples").await;
    let before = rss_mb();

    // 2,000 connections from another address (127.0.0.2; the questions
    // come from 127.0.0.1) that announce a 60,000-byte question and send
    // one byte of it.
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let mut slow: Vec<TcpStream> = Vec::new();
    for _ in 0..2_000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let c = socket.connect(target).await.unwrap().into_std().unwrap();
        c.set_nonblocking(false).unwrap();
        let mut c = c;
        c.write_all(
            b"POST /v1/query HTTP/1.1\r\nHost: coordinator\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{",
        )
        .unwrap();
        slow.push(c);
    }

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
    let answers: Vec<Option<String>> = tokio::task::spawn_blocking(move || {
        slow.into_iter()
            .map(|c| {
                let mut c = c;
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut all = Vec::new();
                // The server's answer, then the end of the stream.
                c.read_to_end(&mut all)
                    .ok()
                    .map(|_| String::from_utf8_lossy(&all).into_owned())
            })
            .collect()
    })
    .await
    .unwrap();
    let closed = answers.iter().flatten().count();
    assert_eq!(closed, 2_000, "connections the server closed");
    // One address holds at most its share of open requests: the rest were
    // turned away at once with 429.
    let turned_away = answers
        .iter()
        .flatten()
        .filter(|a| a.starts_with("HTTP/1.1 429"))
        .count();
    assert_eq!(
        turned_away,
        2_000 - REQUESTS_PER_ADDRESS as usize,
        "requests past the address's share"
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
