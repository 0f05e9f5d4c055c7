//! Starting a node: build the state from a config, bind, serve.

use std::sync::Arc;

use actix_web::{HttpServer, web};
use bonebank_service::grant::GrantVerifier;
use bonebank_service::oidc::TokenVerifier;
use bonebank_service::{RunningServer, tls};

use crate::api::{AppState, Metrics, app};
use crate::config::NodeConfig;
use crate::dataset::DataDir;
use crate::engine::SurfaceEngine;
use crate::privacy::{NoiseMechanism, OpenDpNoise};
use crate::service::QueryService;
use crate::store::Store;
use crate::{Error, Result};

/// The state of a node for `config`, with OpenDP noise.
pub fn state(config: &NodeConfig) -> Result<AppState> {
    state_with_noise(config, Arc::new(OpenDpNoise))
}

/// The state of a node with a chosen noise mechanism (tests use fixed noise).
pub fn state_with_noise(config: &NodeConfig, noise: Arc<dyn NoiseMechanism>) -> Result<AppState> {
    config.validate()?;
    let engine = Arc::new(
        SurfaceEngine::new(
            DataDir::new(&config.data_dir),
            config.site_id.clone(),
            config.policy.diagnosis_categories.clone(),
        )
        .with_plan_timeout(config.limits.plan_timeout()),
    );
    let store = Store::open(&config.state_db())?;
    let service = QueryService::new(
        config.site_id.clone(),
        config.policy.clone(),
        engine,
        noise,
        store,
    )
    .with_limits(config.limits);
    service.note_policy()?;
    let identity = web::Data::new(TokenVerifier::new(config.oidc.clone())?);
    let grants = config
        .tls
        .as_ref()
        .map(|tls| {
            GrantVerifier::from_file(
                &tls.coordinator_grant_key,
                config.site_id.as_str(),
                config.oidc.leeway_seconds,
            )
            .map(web::Data::new)
        })
        .transpose()?;
    Ok(AppState {
        service,
        identity,
        grants,
        metrics: Metrics::default().with_state_dir(config.state_dir.clone()),
    })
}

/// A node serving in the background: its API and, where the config asks
/// for them, the stewards' pages. Stops when dropped.
#[derive(Debug)]
pub struct RunningNode {
    pub api: RunningServer,
    pub steward_pages: Option<RunningServer>,
    /// The connection out to the coordinator, in outbound mode.
    pub link: Option<crate::link::Link>,
    /// The stewards' messenger, where `[notify]` is set; stopped on drop.
    pub notifier: Option<bonebank_service::server::Background>,
}

impl std::ops::Deref for RunningNode {
    type Target = RunningServer;

    fn deref(&self) -> &RunningServer {
        &self.api
    }
}

impl RunningNode {
    /// Stops accepting requests and waits for running ones; the link out
    /// goes last.
    pub async fn stop(self) {
        let Self {
            api,
            steward_pages,
            link,
            notifier,
        } = self;
        drop(notifier);
        bonebank_service::server::stop_all(steward_pages.into_iter().chain([api])).await;
        drop(link);
    }

    /// Serves until Ctrl-C, then stops gracefully.
    pub async fn until_ctrl_c(self) -> std::io::Result<()> {
        bonebank_service::server::until_ctrl_c(self.stop()).await
    }
}

/// Binds and starts serving on the current Tokio runtime.
pub fn start(config: &NodeConfig, state: AppState) -> Result<RunningNode> {
    crate::dataset::remove_leftovers(&crate::dataset::DataDir::new(&config.data_dir));
    state.service.watch_data();
    let state = web::Data::new(state);
    let steward_pages = crate::pages::start(config, state.clone())?;
    let link = crate::link::start(config, state.clone())?;
    let notifier = match &config.notify {
        Some(notify) => {
            let queue = steward_pages
                .as_ref()
                .map(|p| {
                    let base = config
                        .steward_pages
                        .as_ref()
                        .and_then(|s| s.public_url.clone())
                        .unwrap_or_else(|| p.url());
                    format!("{}/#queue", base.trim_end_matches('/'))
                })
                .unwrap_or_default();
            let notifier = crate::notify::Notifier::new(
                config.site_id.as_str(),
                notify,
                queue,
                state.service.store().clone(),
            )?;
            Some(bonebank_service::server::Background::spawn(notifier.run()))
        }
        None => None,
    };
    let server = HttpServer::new(move || app(state.clone()))
        .workers(2)
        .max_connections(bonebank_service::server::CONNECTIONS_PER_WORKER);
    let server = match &config.tls {
        Some(tls) => server.bind_rustls_0_23(config.listen, tls::server_config(tls)?),
        None => server.bind(config.listen),
    }
    .map_err(Error::io(format!("listen address {}", config.listen)))?;
    let addr = server.addrs()[0];
    Ok(RunningNode {
        api: RunningServer::spawn(server.disable_signals().run(), addr, config.tls.is_some()),
        steward_pages,
        link,
        notifier,
    })
}

/// `bonebank-node serve`: serves until Ctrl-C.
pub async fn serve(config: NodeConfig) -> Result<()> {
    // Held while the node serves: a restore refuses to run under it.
    let _running = crate::backup::hold(&config)?;
    let state = state(&config)?;
    let node = start(&config, state)?;
    println!("node {} listening on {}", config.site_id, node.url());
    if let Some(pages) = &node.steward_pages {
        println!("stewards' pages of {} on {}", config.site_id, pages.url());
    }
    if let Some(outbound) = &config.outbound {
        println!(
            "node {} connects out to the coordinator at {}",
            config.site_id, outbound.coordinator
        );
    }
    node.until_ctrl_c()
        .await
        .map_err(Error::io("signal handler"))
}
