//! Starting a coordinator: state from a config, bind, serve.

use std::sync::Arc;

use actix_web::{HttpServer, web};
use bonebank_service::RunningServer;
use bonebank_service::oidc::TokenVerifier;

use crate::api::{State, app};
use crate::auth::Auth;
use crate::config::CoordinatorConfig;
use crate::link::Links;
use crate::service::Coordinator;
use crate::{Error, Result};

/// A coordinator serving in the background: its API and, where sites
/// connect out, its link listener. Stops when dropped.
#[derive(Debug)]
pub struct RunningCoordinator {
    pub api: RunningServer,
    pub link: Option<RunningServer>,
    /// The sites that connect out, and whether they are connected.
    pub links: Option<Arc<Links>>,
    /// The sites' catalogues as the coordinator keeps them.
    pub catalogues: Arc<crate::catalogues::Catalogues>,
}

impl std::ops::Deref for RunningCoordinator {
    type Target = RunningServer;

    fn deref(&self) -> &RunningServer {
        &self.api
    }
}

impl RunningCoordinator {
    /// Stops accepting requests and waits for running ones.
    pub async fn stop(self) {
        bonebank_service::server::stop_all(self.link.into_iter().chain([self.api])).await;
    }

    /// Serves until Ctrl-C, then stops gracefully.
    pub async fn until_ctrl_c(self) -> std::io::Result<()> {
        bonebank_service::server::until_ctrl_c(self.stop()).await
    }
}

/// Starts the listener nodes in outbound mode connect to.
fn start_link(config: &CoordinatorConfig, links: &Arc<Links>) -> Result<Option<RunningServer>> {
    let Some(listener) = &config.link else {
        return Ok(None);
    };
    let tls = bonebank_service::tls::mutual_server_config(
        listener
            .certificate
            .as_ref()
            .unwrap_or(&config.tls.certificate),
        listener.key.as_ref().unwrap_or(&config.tls.key),
        &config.tls.ca,
        &links.names(),
        "the server_name of sites without a url",
    )?;
    links.watch();
    let data = web::Data::from(links.clone());
    let on_connect = links.clone();
    let server = HttpServer::new(move || crate::link::app(data.clone()))
        .workers(2)
        .max_connections(bonebank_service::server::CONNECTIONS_PER_WORKER)
        .on_connect(move |connection, data| crate::link::on_connect(&on_connect, connection, data))
        .bind_rustls_0_23(listener.listen, tls)
        .map_err(Error::io(format!(
            "link listen address {}",
            listener.listen
        )))?;
    let addr = server.addrs()[0];
    Ok(Some(RunningServer::spawn(
        server.disable_signals().run(),
        addr,
        true,
    )))
}

/// Builds the coordinator for `config`, binds and starts serving on the
/// current Tokio runtime.
pub fn start(config: &CoordinatorConfig) -> Result<RunningCoordinator> {
    config.validate()?;
    let mut coordinator = Coordinator::new(config)?;
    coordinator.keep_catalogues_fresh();
    let verifier = Arc::new(TokenVerifier::new(config.oidc.clone())?);
    // Bound first, so that the public URL of a port-0 listener is known.
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(Error::io(format!("listen address {}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io(format!("listen address {}", config.listen)))?;
    let public_url = config
        .login
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let auth = web::Data::new(Auth::new(
        verifier,
        config.login.clone(),
        public_url.clone(),
        &config.state_dir,
    )?);
    if config.login.development {
        tracing::warn!(
            issuer = %config.oidc.issuer,
            "signing in through the DEVELOPMENT identity provider; never run a site like this"
        );
    }
    if let Some(notify) = &config.notify {
        coordinator.tell_requesters(notify, &public_url)?;
    }
    let link = match &coordinator.links {
        Some(links) => start_link(config, links)?,
        None => None,
    };
    let links = coordinator.links.clone();
    let catalogues = coordinator.catalogues_kept();
    let negotiator = crate::negotiator::Negotiator::new(config, &public_url)?;
    let state = web::Data::new(State {
        coordinator,
        auth,
        negotiator,
    });
    let server = HttpServer::new(move || app(state.clone()))
        .workers(2)
        .max_connections(bonebank_service::server::CONNECTIONS_PER_WORKER)
        .listen(listener)
        .map_err(Error::io(format!("listen address {}", config.listen)))?;
    Ok(RunningCoordinator {
        api: RunningServer::spawn(server.disable_signals().run(), addr, false),
        link,
        links,
        catalogues,
    })
}

/// `bonebank-coordinator serve`: serves until Ctrl-C.
pub async fn serve(config: CoordinatorConfig) -> Result<()> {
    // Held while the coordinator serves: a restore refuses to run under it.
    let _running = crate::backup::hold(&config)?;
    let running = start(&config)?;
    println!("coordinator: {}", running.url());
    if let Some(link) = &running.link {
        println!("nodes that connect out: {}", link.url());
    }
    running
        .until_ctrl_c()
        .await
        .map_err(Error::io("signal handler"))
}
