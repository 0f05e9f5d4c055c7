//! `bonebank-dev bench soak`: a node's memory over a long, bounded load.
//!
//! One synthetic site is served by a real `bonebank-node serve` process
//! (mutual TLS, the development identity provider), and asked for the
//! whole run by four clients at once, as a coordinator and its users would:
//! fresh and remembered questions under a rotating set of users (by the
//! coordinator's grants and by users' own tokens), previews, budgets, the
//! site's description, and tokens that do not check out. Every minute the
//! node's resident memory (VmRSS from /proc) is read. The first minute is
//! warm-up (the dataset loads, pools and caches fill); the growth after it
//! is what the run reports, against a stated bound.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bonebank_query::policy::{Budgets, Policy};
use bonebank_schemas::{Role, SiteId};
use bonebank_service::grant::GrantSigner;

use crate::bench::network::bench_sql;
use crate::devidp::{DEMO_AUDIENCE, DevProvider, DevUser};
use crate::local;
use crate::pki::PkiDir;
use crate::{Error, Result};

/// Growth after warm-up the node must stay within: the caches it keeps are
/// bounded by count (tokens checked 10,000, grants taken 65,536, rate
/// buckets, halfwidths), so what is left to grow is the allocator's slack.
pub const BOUND_MIB: f64 = 32.0;
/// Clients asking at once.
const CLIENTS: usize = 4;

#[derive(Debug)]
pub struct Soak {
    pub minutes: u64,
    pub samples: u64,
    pub users: usize,
    /// Minute, resident memory in MiB, requests answered by then.
    pub readings: Vec<(u64, f64, u64)>,
    pub requests: u64,
    pub failures: u64,
}

impl Soak {
    /// Resident memory after warm-up and at the end.
    fn ends(&self) -> (f64, f64) {
        let start = self.readings.get(1).or(self.readings.first());
        let end = self.readings.last();
        (start.map_or(0.0, |r| r.1), end.map_or(0.0, |r| r.1))
    }

    pub fn growth_mib(&self) -> f64 {
        let (start, end) = self.ends();
        end - start
    }
}

impl fmt::Display for Soak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "soak: one node process, {} samples, {} minutes, {CLIENTS} clients, {} users",
            self.samples, self.minutes, self.users
        )?;
        writeln!(f, "minute  RSS MiB  requests")?;
        for (minute, rss, requests) in &self.readings {
            writeln!(f, "{minute:>6}  {rss:>7.1}  {requests:>8}")?;
        }
        let (start, end) = self.ends();
        writeln!(
            f,
            "requests: {} answered, {} unexpected answers",
            self.requests, self.failures
        )?;
        let half = self
            .readings
            .get(self.readings.len() / 2)
            .map_or(0.0, |r| r.1);
        writeln!(
            f,
            "second half: RSS {half:.1} MiB at minute {}, {end:.1} MiB at the end ({:+.1} MiB)",
            self.readings.len() / 2,
            end - half
        )?;
        let growth = self.growth_mib();
        let per_minute = growth / (self.minutes.saturating_sub(1).max(1)) as f64;
        write!(
            f,
            "RSS after warm-up {start:.1} MiB, at the end {end:.1} MiB: growth {growth:+.1} MiB ({per_minute:+.2} MiB a minute); bound {BOUND_MIB} MiB: {}",
            if growth <= BOUND_MIB && self.failures == 0 {
                "within"
            } else {
                "EXCEEDED"
            }
        )
    }
}

/// The node process, stopped when dropped.
struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("a free loopback port"))?;
    Ok(listener
        .local_addr()
        .map_err(Error::io("a free loopback port"))?
        .port())
}

pub fn run(minutes: u64, samples: u64, users: usize) -> Result<Soak> {
    let minutes = minutes.clamp(1, 240);
    let users = users.clamp(1, 100_000);
    let work = tempfile::tempdir().map_err(Error::io("temporary directory"))?;
    let root = work.path();
    let site = SiteId::parse(SiteId::LUEBECK).expect("a valid id");
    eprintln!("generating {site} with about {samples} samples …");
    // About three samples a donor at the fracture sites.
    local::generate_site(root, &site, (samples / 3).max(100), 7)?;
    let pki = PkiDir::new(root.join("pki"));
    pki.init(std::slice::from_ref(&site))?;
    let node_binary = std::env::current_exe()
        .map_err(Error::io("this program's path"))?
        .with_file_name("bonebank-node");
    if !node_binary.exists() {
        return Err(Error::Usage(format!(
            "{} is missing: build it first (cargo build --release --bins)",
            node_binary.display()
        )));
    }

    bonebank_service::server::runtime()?.block_on(async {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let idp = DevProvider::start(
            loopback,
            DEMO_AUDIENCE,
            Vec::new(),
            Duration::from_secs(7200),
        )?;
        // Budgets no run can spend: the soak is about memory, not refusals.
        let policy = Policy::default().with_budgets(Budgets {
            site: 1e4,
            project: 1e4,
            user: 1e4,
        });
        let mut config = local::node_config(
            root,
            &pki,
            &site,
            policy,
            idp.settings(),
            bonebank_node::limits::WorkLimits::unthrottled(),
        );
        config.steward_pages = None;
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config_path = root.join("node.toml");
        let text = toml::to_string(&config).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&config_path, text).map_err(Error::io(&config_path))?;
        let log = std::fs::File::create(root.join("node.log")).map_err(Error::io("node.log"))?;
        let child = Command::new(&node_binary)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("BONEBANK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(Error::io(&node_binary))?;
        let node = NodeProcess(child);
        let pid = node.0.id();

        let tls = bonebank_service::tls::client_config(
            &pki.ca_cert(),
            &pki.coordinator_cert(),
            &pki.coordinator_key(),
        )?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let base = format!("https://{}", config.listen);
        wait_up(&client, &base, root).await?;

        let grants = Arc::new(GrantSigner::from_file(&pki.grant_key(), 60)?);
        let tokens: Arc<Vec<(DevUser, String)>> = Arc::new(
            (0..users)
                .map(|u| {
                    let user = DevUser::new(
                        &format!("soak{u}"),
                        Role::Researcher,
                        Some(&format!("project{}", u % 50)),
                        &[],
                    );
                    let token = idp.token_for(&user);
                    (user, token)
                })
                .collect(),
        );
        let answered = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let until = started + Duration::from_secs(minutes * 60);
        // Bounded in count too: at most 10,000 requests a second on
        // average, far more than one node answers on this machine.
        let most = minutes * 60 * 10_000;
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (client, base, grants, tokens) =
                (client.clone(), base.clone(), grants.clone(), tokens.clone());
            let (answered, failures, next) = (answered.clone(), failures.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= most {
                        break;
                    }
                    // A remembered question is one asked fresh four
                    // requests before, by the same user.
                    let asker = if matches!(i % 10, 4 | 5) { i - 4 } else { i };
                    let (user, token) = &tokens[(asker as usize) % tokens.len()];
                    let caller = bonebank_service::Caller {
                        user: user.name.clone(),
                        project: user.project.clone().unwrap_or_default(),
                        role: Role::Researcher,
                        sites: Vec::new(),
                        email: None,
                    };
                    let grant = || grants.sign(&caller, SiteId::LUEBECK);
                    let question =
                        |n: u64| serde_json::json!({ "sql": bench_sql(n as usize), "loss": 0.001 });
                    let (request, want) = match i % 10 {
                        // Fresh: a new question for this user, by grant
                        // (three in ten requests carry a grant, which keeps
                        // them under the 2,800 a second a node remembers).
                        0 | 1 => (
                            client
                                .post(format!("{base}/v1/query"))
                                .bearer_auth(grant())
                                .json(&question(i)),
                            200,
                        ),
                        // Fresh, by the user's own token.
                        2 | 3 => (
                            client
                                .post(format!("{base}/v1/query"))
                                .bearer_auth(token)
                                .json(&question(i)),
                            200,
                        ),
                        // Remembered: asked again, by the user's own token.
                        4 | 5 => (
                            client
                                .post(format!("{base}/v1/query"))
                                .bearer_auth(token)
                                .json(&question(asker)),
                            200,
                        ),
                        6 => (
                            client
                                .post(format!("{base}/v1/preview"))
                                .bearer_auth(grant())
                                .json(&question(i)),
                            200,
                        ),
                        7 => (
                            client.get(format!("{base}/v1/budget")).bearer_auth(token),
                            200,
                        ),
                        8 => (
                            client
                                .get(format!("{base}/v1/budget"))
                                .bearer_auth(format!("{token}x")),
                            401,
                        ),
                        _ => (client.get(format!("{base}/v1/site")), 200),
                    };
                    match request.send().await {
                        Ok(r) if r.status().as_u16() == want => {
                            let _ = r.bytes().await;
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("unexpected {status} (wanted {want}): {body}");
                            }
                        }
                        Err(e) => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("request failed: {e}");
                            }
                        }
                    }
                }
            }));
        }
        let mut readings = Vec::new();
        for minute in 0..=minutes {
            let at = started + Duration::from_secs(minute * 60);
            tokio::time::sleep_until(at.into()).await;
            let rss = rss_mib(pid).ok_or_else(|| {
                Error::Internal(format!(
                    "the node process exited; its log is {}",
                    root.join("node.log").display()
                ))
            })?;
            let done = answered.load(Ordering::Relaxed);
            eprintln!("minute {minute}: RSS {rss:.1} MiB, {done} requests answered");
            let _ = std::io::stderr().flush();
            readings.push((minute, rss, done));
        }
        for t in tasks {
            let _ = t.await;
        }
        drop(node);
        idp.stop().await;
        Ok(Soak {
            minutes,
            samples,
            users,
            readings,
            requests: answered.load(Ordering::Relaxed),
            failures: failures.load(Ordering::Relaxed),
        })
    })
}

/// Waits until the node answers `/health`, at most a minute.
async fn wait_up(client: &reqwest::Client, base: &str, root: &Path) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > until {
            let log = std::fs::read_to_string(root.join("node.log")).unwrap_or_default();
            return Err(Error::Internal(format!(
                "the node did not come up in a minute; its log ends:\n{}",
                log.lines()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
