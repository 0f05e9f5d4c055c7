//! Starting a coordinator: state from a config, bind, serve.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{HttpServer, web};
use bonebank_node::config::IdentityMode;
use bonebank_node::identity::{DevelopmentIdentity, IdentityVerifier};

use crate::api::{State, app};
use crate::config::CoordinatorConfig;
use crate::service::Coordinator;
use crate::{Error, Result};

/// A coordinator serving in the background; stops when dropped.
#[derive(Debug)]
pub struct RunningCoordinator {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl RunningCoordinator {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

impl Drop for RunningCoordinator {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Builds the coordinator for `config`, binds and starts serving on the
/// current Tokio runtime.
pub fn start(config: &CoordinatorConfig) -> Result<RunningCoordinator> {
    let coordinator = Coordinator::new(config)?;
    let identity: Arc<dyn IdentityVerifier> = match config.identity {
        IdentityMode::Development => {
            tracing::warn!(
                "DEVELOPMENT IDENTITY MODE: the coordinator trusts the X-Bonebank-User/-Project/-Role \
                 headers without checking them. It listens on loopback only."
            );
            Arc::new(DevelopmentIdentity)
        }
    };
    let state = web::Data::new(State {
        coordinator,
        identity,
    });
    let server = HttpServer::new(move || app(state.clone()))
        .workers(2)
        .bind(config.listen)
        .map_err(Error::io(format!("listen address {}", config.listen)))?;
    let addr = server.addrs()[0];
    let server = server.disable_signals().run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(RunningCoordinator { addr, handle })
}

/// `bonebank-coordinator serve`: serves until Ctrl-C.
pub async fn serve(config: CoordinatorConfig) -> Result<()> {
    let running = start(&config)?;
    println!("coordinator: {}", running.url());
    tokio::signal::ctrl_c()
        .await
        .map_err(Error::io("signal handler"))?;
    running.stop().await;
    Ok(())
}
