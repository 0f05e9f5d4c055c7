//! JSON over HTTP as the tests' users send it: the status and the body.

use serde_json::Value;

/// `GET url`, with a bearer token if given.
pub async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    send(reqwest::Client::new().get(url), token, None).await
}

/// `POST url` with a JSON body, with a bearer token if given.
pub async fn post(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    send(reqwest::Client::new().post(url), token, Some(body)).await
}

async fn send(
    request: reqwest::RequestBuilder,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    bonebank_service::tls::install_default_provider();
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let request = match body {
        Some(b) => request.json(b),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The body of a `200 OK`, read as `T`.
pub fn ok<T: serde::de::DeserializeOwned>((status, body): (u16, Value)) -> T {
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// `GET url` as JSON over mutual TLS: the development CA, and the client
/// certificate `cert` with its `key`.
pub async fn get_with_certificate(
    url: &str,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Value {
    bonebank_service::tls::install_default_provider();
    let config = bonebank_service::tls::client_config(ca, cert, key).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
