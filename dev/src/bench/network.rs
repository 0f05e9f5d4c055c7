//! `bonebank-coordinator bench`: the network's speed on this machine. Three
//! sites with about a million samples each behind a coordinator, all on
//! loopback with mutual TLS, asked by 1 and by 16 concurrent clients; then
//! the cost of the fan-out itself with many small nodes.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::bench::node::{Latency, peak_rss_kib};
use bonebank_query::policy::{Budgets, Policy};
use bonebank_schemas::SiteId;
use bonebank_schemas::wire::{FederatedRequest, SiteStatus, Source};

use crate::local::{self, LocalNetwork};
use crate::{Error, Result};
use bonebank_cli::client::Client;

/// The benchmark's question: donor and sample counts, three filters, one
/// dimension. `i` picks the age range, from 20–39 up to 70–90, in a
/// scrambled order so that every series gets the same mix of narrow and
/// broad questions: 840 distinct questions.
pub fn bench_sql(i: usize) -> String {
    let j = (i * 7919) % 840; // 7919 is prime: i ↦ j is one-to-one on 0..840
    format!(
        "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples \
         WHERE sex = 'Female' AND age_at_sampling BETWEEN {} AND {} AND diagnosis LIKE 'S72%' GROUP BY sample_type",
        20 + j % 40,
        70 + j / 40
    )
}

/// A question the catalogues answer: donors and samples by sample type of
/// one sex, one ten-year band and one diagnosis category; `i` picks them
/// (64 distinct questions).
pub fn catalogue_sql(i: usize) -> String {
    let sex = ["Female", "Male"][i % 2];
    let band = 10 * (1 + (i / 2) % 8);
    let diagnosis = ["S72", "S32", "M16", "M81"][(i / 16) % 4];
    format!(
        "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples \
         WHERE sex = '{sex}' AND age_at_sampling BETWEEN {band} AND {} AND diagnosis LIKE '{diagnosis}%' GROUP BY sample_type",
        band + 9
    )
}

/// What a series asks: fresh questions ([`bench_sql`], charged), or the
/// catalogues' ([`catalogue_sql`], answered by the coordinator alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Fresh,
    Catalogue,
}

/// One series: `clients` concurrent clients asking `requests` questions in all.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub clients: usize,
    pub latency: Latency,
    pub per_second: f64,
    /// Answers in which some site did not answer.
    pub incomplete: usize,
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<34} {:>2} client(s): {}  {:7.1} queries/s",
            self.label, self.clients, self.latency, self.per_second
        )?;
        if self.incomplete > 0 {
            write!(f, "  ({} incomplete answers)", self.incomplete)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct FederationBench {
    pub samples_per_site: Vec<(String, u64)>,
    pub warmup_ms: f64,
    pub series: Vec<Series>,
    pub fanout: Vec<Series>,
    pub peak_rss_kib: Option<u64>,
}

pub(crate) fn policy() -> Policy {
    Policy::default().with_budgets(Budgets {
        site: 1e4,
        project: 1e4,
        user: 1e4,
    })
}

/// The benchmark's researcher.
pub(crate) fn bench_user() -> crate::devidp::DevUser {
    crate::devidp::DevUser::new(
        "bench",
        bonebank_schemas::Role::Researcher,
        Some("bench"),
        &[],
    )
}

/// Asks `questions` (by index into [`bench_sql`]) from `clients` concurrent
/// clients, each taking every `clients`-th question.
pub async fn series(
    url: &str,
    token: &str,
    label: &str,
    clients: usize,
    questions: std::ops::Range<usize>,
    ask: Ask,
) -> Result<Series> {
    let client =
        Arc::new(Client::new(url, token.to_owned()).map_err(|e| Error::Internal(e.to_string()))?);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            let mine: Vec<usize> = questions.clone().skip(c).step_by(clients).collect();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in mine {
                    let request = FederatedRequest {
                        sql: Some(match ask {
                            Ask::Fresh => bench_sql(i),
                            Ask::Catalogue => catalogue_sql(i),
                        }),
                        query: None,
                        loss: None,
                        sites: None,
                        fresh: ask == Ask::Fresh,
                        purpose: None,
                    };
                    let t = Instant::now();
                    let r = client
                        .query(&request)
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    let wanted = match ask {
                        Ask::Fresh => Source::Fresh,
                        Ask::Catalogue => Source::Catalogue,
                    };
                    let complete = r.sites.iter().all(|s| {
                        s.status == SiteStatus::Answered
                            && s.result.as_ref().is_some_and(|q| q.source == wanted)
                    });
                    out.push((t.elapsed().as_secs_f64() * 1000.0, complete));
                }
                Ok::<_, Error>(out)
            })
        })
        .collect();
    let mut ms = Vec::new();
    let mut incomplete = 0;
    for t in tasks {
        for (m, complete) in t.await.map_err(|e| Error::Internal(e.to_string()))?? {
            ms.push(m);
            incomplete += usize::from(!complete);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Series {
        label: label.into(),
        clients,
        per_second: ms.len() as f64 / elapsed,
        latency: Latency::of(ms),
        incomplete,
    })
}

/// Runs the benchmark. `samples` per large site; `requests` per series;
/// `small` lists the node counts of the fan-out series.
pub fn run(samples: u64, requests: usize, small: &[usize]) -> Result<FederationBench> {
    let requests = requests.clamp(16, 400);
    let work = tempfile::tempdir().map_err(Error::io(std::env::temp_dir()))?;
    let sites = local::demo_sites();
    let mut samples_per_site = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        eprintln!("generating {site} with {samples} samples …");
        local::generate_site_with(work.path(), site, samples, Some(samples), 7 + i as u64)?;
        samples_per_site.push((site.to_string(), samples));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::io("tokio runtime"))?;
    runtime.block_on(async {
        let net = LocalNetwork::start_unthrottled(work.path(), &sites, &policy(), 60_000)?;
        let url = net.coordinator.url();
        let token = net.token(&bench_user());
        // The first question loads each site's dataset version into memory.
        eprintln!("loading the sites' data …");
        let t = Instant::now();
        series(&url, &token, "warm-up", 1, 839..840, Ask::Fresh).await?;
        let warmup_ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut out = Vec::new();
        eprintln!("fresh and remembered questions, 1 and 16 clients …");
        let half = requests;
        out.push(
            series(
                &url,
                &token,
                "fresh (noise + ledger at 3 sites)",
                1,
                0..half,
                Ask::Fresh,
            )
            .await?,
        );
        out.push(
            series(
                &url,
                &token,
                "fresh (noise + ledger at 3 sites)",
                16,
                half..2 * half,
                Ask::Fresh,
            )
            .await?,
        );
        out.push(series(&url, &token, "remembered", 1, 0..half, Ask::Fresh).await?);
        out.push(series(&url, &token, "remembered", 16, 0..2 * half, Ask::Fresh).await?);
        drop(net);

        let mut fanout = Vec::new();
        for &n in small {
            eprintln!("fan-out to {n} small nodes …");
            let root = work.path().join(format!("fanout-{n}"));
            let ids: Vec<SiteId> = (0..n)
                .map(|i| {
                    let id = format!(
                        "DK-{}{}{}",
                        'Q',
                        (b'A' + (i / 26) as u8) as char,
                        (b'A' + (i % 26) as u8) as char
                    );
                    SiteId::parse(&id).expect("generated ids are valid")
                })
                .collect();
            for (i, id) in ids.iter().enumerate() {
                local::generate_site_with(&root, id, 200, None, i as u64)?;
            }
            let net = LocalNetwork::start_unthrottled(&root, &ids, &policy(), 60_000)?;
            let url = net.coordinator.url();
            let token = net.token(&bench_user());
            series(&url, &token, "warm-up", 1, 839..840, Ask::Fresh).await?;
            let k = requests.min(100);
            for (what, clients) in [("fresh", 1), ("remembered", 1), ("remembered", 16)] {
                let label = format!("{n} nodes, {what}");
                fanout.push(series(&url, &token, &label, clients, 0..k, Ask::Fresh).await?);
            }
        }
        Ok(FederationBench {
            samples_per_site,
            warmup_ms,
            series: out,
            fanout,
            peak_rss_kib: peak_rss_kib(),
        })
    })
}

impl fmt::Display for FederationBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sites: Vec<String> = self
            .samples_per_site
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        writeln!(
            f,
            "federation over mutual TLS on loopback, 3 nodes and a coordinator in one process ({})",
            sites.join(", ")
        )?;
        writeln!(f, "  query: {}", bench_sql(0))?;
        writeln!(
            f,
            "  first question (loads every site's data): {:.0} ms",
            self.warmup_ms
        )?;
        for s in &self.series {
            writeln!(f, "  {s}")?;
        }
        if !self.fanout.is_empty() {
            writeln!(
                f,
                "fan-out cost, small nodes (200 donors each), same process"
            )?;
            for s in &self.fanout {
                writeln!(f, "  {s}")?;
            }
        }
        if let Some(kib) = self.peak_rss_kib {
            write!(f, "peak RSS of the benchmark process: {} MiB", kib / 1024)?;
        }
        Ok(())
    }
}
