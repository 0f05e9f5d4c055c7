//! A service serving in the background: its address and a handle that stops
//! it. Node, coordinator and the development identity provider all run as
//! one of these.

use std::net::SocketAddr;

use actix_web::dev::{Server, ServerHandle};

/// A server running on the current Tokio runtime; stops when dropped.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Whether it speaks HTTPS.
    pub tls: bool,
    handle: ServerHandle,
}

impl RunningServer {
    /// Spawns `server` (built with signals disabled: the owner decides when
    /// it stops) on the current Tokio runtime.
    pub fn spawn(server: Server, addr: SocketAddr, tls: bool) -> Self {
        let handle = server.handle();
        tokio::spawn(server);
        Self { addr, tls, handle }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting requests and waits for running ones.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    /// Serves until Ctrl-C, then stops gracefully.
    pub async fn until_ctrl_c(self) -> std::io::Result<()> {
        until_ctrl_c(self.stop()).await
    }
}

/// Stops each of a service's servers (its API, its pages or link listener)
/// in turn, waiting for their running requests.
pub async fn stop_all(servers: impl IntoIterator<Item = RunningServer>) {
    for server in servers {
        server.stop().await;
    }
}

/// Serves until Ctrl-C, then runs `stop` (a service's graceful stop).
pub async fn until_ctrl_c(stop: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
    tokio::signal::ctrl_c().await?;
    stop.await;
    Ok(())
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// A task a service runs beside its server (the node's link out, its
/// stewards' notices): it ends when this is dropped.
#[derive(Debug)]
pub struct Background(tokio::task::JoinHandle<()>);

impl Background {
    /// Spawns `task` on the current Tokio runtime.
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub use bonebank_login::is_loopback;

/// Plain HTTP is for this machine only: `url` must be https, or http on
/// loopback. `what` names the setting in the error.
pub fn check_https_or_loopback(url: &str, what: &str) -> crate::Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| crate::Error::Usage(format!("{what} {url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        _ => Err(crate::Error::Usage(format!(
            "{what} {url} must be https (plain http only on this machine's loopback)"
        ))),
    }
}

/// The Tokio runtime a service's command runs on: multi-threaded (one worker
/// per core), with I/O and timers.
pub fn runtime() -> crate::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(crate::Error::io("tokio runtime"))
}

/// How long a request's body may take to arrive, from when its head was
/// read. Every body a bonebank listener takes is small (a question is at
/// most 64 KiB), so a body still arriving after this is a client holding
/// the connection open; it is answered with an error and the connection
/// closed. (The head has actix-web's own limit, `client_request_timeout`.)
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The most connections one worker of a listener keeps open at once; past
/// it, new connections wait in the kernel's backlog.
pub const CONNECTIONS_PER_WORKER: usize = 4_096;

/// The most requests one client address may have open at one listener at
/// once. A request counts from when its head is read until its answer is
/// sent or its connection closes, so a client holding bodies back holds at
/// most this many; past it, its new requests are answered 429 at once and
/// their connections closed. Generous enough for a coordinator asking a
/// node for many researchers, or a hospital's many users behind one
/// address.
pub const REQUESTS_PER_ADDRESS: u32 = 256;

/// Open requests per listener and client address.
static OPEN: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<(SocketAddr, std::net::IpAddr), u32>>,
> = std::sync::LazyLock::new(Default::default);

/// One open request, counted until dropped.
struct Open((SocketAddr, std::net::IpAddr));

impl Drop for Open {
    fn drop(&mut self) {
        let mut open = OPEN.lock().expect("open requests");
        if let Some(n) = open.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.0);
            }
        }
    }
}

/// Middleware for every listener: at most [`REQUESTS_PER_ADDRESS`] open
/// requests per client address.
pub async fn per_address<B: actix_web::body::MessageBody + 'static>(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error> {
    let Some(peer) = req.peer_addr() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let key = (req.app_config().local_addr(), peer.ip());
    let open = {
        let mut open = OPEN.lock().expect("open requests");
        let n = open.entry(key).or_default();
        if *n >= REQUESTS_PER_ADDRESS {
            drop(open);
            let body = bonebank_schemas::wire::ErrorBody {
                code: bonebank_schemas::wire::ErrorCode::TooManyRequests,
                message: format!(
                    "more than {REQUESTS_PER_ADDRESS} requests at once from your address; wait for the open ones"
                ),
                hint: None,
                ticket: None,
            };
            let response = actix_web::HttpResponse::TooManyRequests()
                .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
                .force_close()
                .json(body);
            return Ok(req.into_response(response).map_into_right_body());
        }
        *n += 1;
        Open(key)
    };
    let response = next.call(req).await;
    drop(open);
    Ok(response?.map_into_left_body())
}

/// Middleware for every listener: the request's body is read within
/// [`BODY_TIMEOUT`], or reading it fails (`408`-like: the extractor's
/// error, and the connection is closed as its body was not read).
pub async fn body_deadline(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    let payload = req.take_payload();
    let timed = futures::stream::unfold(Some(payload), move |state| async move {
        let mut payload = state?;
        tokio::select! {
            item = payload.next() => item.map(|item| (item, Some(payload))),
            () = tokio::time::sleep_until(deadline) => Some((
                Err(actix_web::error::PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
                ))),
                None,
            )),
        }
    });
    req.set_payload(actix_web::dev::Payload::Stream {
        payload: Box::pin(timed),
    });
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "https://idp.example",
            "http://127.0.0.1:8080",
            "http://localhost/x",
            "http://[::1]:9/",
        ] {
            assert!(check_https_or_loopback(ok, "oidc.issuer").is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(
                check_https_or_loopback(bad, "oidc.issuer").is_err(),
                "{bad}"
            );
        }
    }
}
