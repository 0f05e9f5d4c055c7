//! A client of the coordinator's API, used by the `bonebank` CLI and the demo.

use std::time::Duration;

use bonebank_schemas::wire::{ErrorBody, FederatedRequest, FederatedResult, SiteListing};
use serde::de::DeserializeOwned;

/// A client that acts with one access token.
pub struct Client {
    base: reqwest::Url,
    http: reqwest::Client,
    token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish()
    }
}

/// Why a call to the coordinator failed, in words for its user.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the coordinator at {url}: {why}\nhint: is it running? `bonebank-dev demo` starts one on this machine"
    )]
    Unreachable { url: String, why: String },
    #[error("the coordinator refused: {}{}", .0.message, .0.hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Refused(ErrorBody),
    #[error("{0}")]
    Other(String),
}

impl Client {
    /// A client of the coordinator at `url`, sending `token` as its bearer
    /// token.
    pub fn new(url: &str, token: String) -> Result<Self, ClientError> {
        let mut base = reqwest::Url::parse(url)
            .map_err(|e| ClientError::Other(format!("coordinator URL {url:?}: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        bonebank_login::install_default_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(Self { base, http, token })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.base.join(path).expect("static paths join"))
            .bearer_auth(&self.token)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.to_string(),
            why: if e.is_connect() {
                "connection refused".into()
            } else {
                e.to_string()
            },
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Other(format!("reading the answer: {e}")))?;
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| {
                ClientError::Other(format!("unreadable answer from the coordinator: {e}"))
            })
        } else {
            match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(e) => Err(ClientError::Refused(e)),
                Err(_) => Err(ClientError::Other(format!(
                    "the coordinator answered HTTP {status}"
                ))),
            }
        }
    }

    pub async fn query(&self, request: &FederatedRequest) -> Result<FederatedResult, ClientError> {
        self.send(
            self.request(reqwest::Method::POST, "v1/query")
                .json(request),
        )
        .await
    }

    /// What a question would cost and how precise its answers would be.
    pub async fn preview(
        &self,
        request: &FederatedRequest,
    ) -> Result<bonebank_schemas::wire::FederatedPreview, ClientError> {
        self.send(
            self.request(reqwest::Method::POST, "v1/preview")
                .json(request),
        )
        .await
    }

    /// A question from the history, with waiting sites asked again.
    pub async fn look_again(&self, id: i64) -> Result<FederatedResult, ClientError> {
        self.send(self.request(reqwest::Method::GET, &format!("v1/history/{id}")))
            .await
    }

    pub async fn sites(&self) -> Result<Vec<SiteListing>, ClientError> {
        self.send(self.request(reqwest::Method::GET, "v1/sites"))
            .await
    }

    /// Who the token says the user is.
    pub async fn whoami(&self) -> Result<bonebank_schemas::wire::WhoAmI, ClientError> {
        self.send(self.request(reqwest::Method::GET, "v1/whoami"))
            .await
    }
}
