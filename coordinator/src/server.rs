//! Starting a coordinator: state from a config, bind, serve.

use std::sync::Arc;

use actix_web::{HttpServer, web};
use bonebank_service::RunningServer;
use bonebank_service::oidc::TokenVerifier;

use crate::api::{State, app};
use crate::auth::Auth;
use crate::config::CoordinatorConfig;
use crate::service::Coordinator;
use crate::{Error, Result};

/// A coordinator serving in the background; stops when dropped.
pub type RunningCoordinator = RunningServer;

/// Builds the coordinator for `config`, binds and starts serving on the
/// current Tokio runtime.
pub fn start(config: &CoordinatorConfig) -> Result<RunningCoordinator> {
    config.validate()?;
    let coordinator = Coordinator::new(config)?;
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
        public_url,
        &config.state_dir,
    )?);
    if config.login.development {
        tracing::warn!(
            issuer = %config.oidc.issuer,
            "signing in through the DEVELOPMENT identity provider; never run a site like this"
        );
    }
    let state = web::Data::new(State { coordinator, auth });
    let server = HttpServer::new(move || app(state.clone()))
        .workers(2)
        .listen(listener)
        .map_err(Error::io(format!("listen address {}", config.listen)))?;
    Ok(RunningServer::spawn(
        server.disable_signals().run(),
        addr,
        false,
    ))
}

/// `bonebank-coordinator serve`: serves until Ctrl-C.
pub async fn serve(config: CoordinatorConfig) -> Result<()> {
    let running = start(&config)?;
    println!("coordinator: {}", running.url());
    running
        .until_ctrl_c()
        .await
        .map_err(Error::io("signal handler"))
}
