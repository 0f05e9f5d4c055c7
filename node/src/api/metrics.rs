//! Prometheus metrics: queries by outcome, their latency, and ε spent.

use std::time::Duration;

use bonebank_schemas::wire::QueryResult;
use bonebank_service::error::WireError;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder};

use crate::Error;

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    queries: IntCounterVec,
    latency: Histogram,
    epsilon: prometheus::Counter,
    /// Outbound mode: 1 while the link to the coordinator is up.
    pub link_up: prometheus::IntGauge,
    /// Outbound mode: how often the link failed and was made again.
    pub link_failures: prometheus::IntCounter,
    /// Bytes free to the node on its state directory's file system, read
    /// when the metrics are.
    storage_free: prometheus::IntGauge,
    state_dir: Option<std::path::PathBuf>,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let queries = IntCounterVec::new(
            Opts::new("bonebank_node_queries_total", "Queries by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let latency = Histogram::with_opts(
            HistogramOpts::new("bonebank_node_query_seconds", "Time to answer a query")
                .buckets(vec![0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),
        )
        .expect("valid metric");
        let epsilon = prometheus::Counter::new(
            "bonebank_node_loss_spent_total",
            "Privacy loss charged for new releases, in the site's measure (rho or epsilon)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(queries.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        let link_up = prometheus::IntGauge::new(
            "bonebank_node_outbound_connected",
            "Outbound mode: 1 while the node's link to the coordinator is up, else 0",
        )
        .expect("valid metric");
        let link_failures = prometheus::IntCounter::new(
            "bonebank_node_outbound_failures_total",
            "Outbound mode: polls that failed, after which the node connected again",
        )
        .expect("valid metric");
        let storage_free = prometheus::IntGauge::new(
            "bonebank_node_storage_free_bytes",
            "Bytes free to the node on its state directory's file system; at 0 no answer can be recorded, so none is given",
        )
        .expect("valid metric");
        for metric in [
            Box::new(epsilon.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(link_up.clone()),
            Box::new(link_failures.clone()),
            Box::new(storage_free.clone()),
        ] {
            registry.register(metric).expect("registered once");
        }
        Self {
            registry,
            queries,
            latency,
            epsilon,
            link_up,
            link_failures,
            storage_free,
            state_dir: None,
        }
    }
}

impl Metrics {
    pub fn observe(&self, result: &Result<QueryResult, Error>, took: Duration) {
        let outcome = match result {
            Ok(r) if r.remembered => "remembered",
            // A steward's release, picked up: not a release of its own.
            Ok(r) if r.source == bonebank_schemas::wire::Source::Approval => "remembered",
            Ok(_) => "released",
            Err(e) => match e.body().code {
                bonebank_schemas::wire::ErrorCode::BudgetExhausted => "budget_exhausted",
                bonebank_schemas::wire::ErrorCode::Internal => "error",
                bonebank_schemas::wire::ErrorCode::PendingApproval => "pending_approval",
                bonebank_schemas::wire::ErrorCode::StorageFull => "storage_full",
                _ => "refused",
            },
        };
        self.queries.with_label_values(&[outcome]).inc();
        self.latency.observe(took.as_secs_f64());
        if let Ok(r) = result {
            self.epsilon.inc_by(r.charged);
        }
    }

    /// The same metrics, with the free space of `dir`'s file system.
    pub fn with_state_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.state_dir = Some(dir);
        self
    }

    pub fn render(&self) -> String {
        if let Some(dir) = &self.state_dir
            && let Ok(fs) = rustix::fs::statvfs(dir)
        {
            let free = fs.f_bavail.saturating_mul(fs.f_frsize);
            self.storage_free
                .set(i64::try_from(free).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}
