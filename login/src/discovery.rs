//! The OpenID Connect client side, shared by the coordinator's browser login
//! and the CLI's device flow: discovery (with the device and end-session
//! endpoints, which the core metadata leaves out), and the HTTP client the
//! `openidconnect` crate talks through.

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, ProviderMetadata,
};
use serde::{Deserialize, Serialize};

/// Discovery fields beyond the core ones.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A client made from discovery: authorization endpoint set, token and
/// userinfo endpoints as discovered.
pub type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Fetches the issuer's discovery document (and its keys).
pub async fn discover(issuer: &str, http: &reqwest::Client) -> Result<Metadata, String> {
    let url = IssuerUrl::new(issuer.to_owned()).map_err(|e| format!("issuer {issuer:?}: {e}"))?;
    Metadata::discover_async(url, http)
        .await
        .map_err(|e| format!("discovery at {issuer} failed: {}", error_chain(&e)))
}

/// A client for `client_id` from discovered metadata.
pub fn client(
    metadata: Metadata,
    client_id: &str,
    secret: Option<String>,
) -> (DiscoveredClient, ExtraMetadata) {
    let extra = metadata.additional_metadata().clone();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.to_owned()),
        secret.map(ClientSecret::new),
    );
    (client, extra)
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
