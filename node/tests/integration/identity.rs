//! The node's token checks against the development provider (a real
//! HTTP provider with real ES256 keys): leeway, key rotation, the refetch
//! limit, and an unreachable issuer. The same checks against oidc-provider
//! are in tests/tests/oidc.rs.

use std::time::Duration;

use bonebank_dev::devidp::{DevProvider, DevUser};
use bonebank_schemas::Role;
use bonebank_service::Error;
use bonebank_service::oidc::{OidcSettings, REFETCH_AFTER, TokenVerifier};
use serde_json::json;

fn provider() -> DevProvider {
    DevProvider::start(
        "127.0.0.1:0".parse().unwrap(),
        "bonebank",
        Vec::new(),
        Duration::from_secs(300),
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(idp: &DevProvider, exp: u64) -> serde_json::Value {
    json!({
        "iss": idp.issuer(), "aud": "bonebank", "sub": "rita", "exp": exp,
        "bonebank_role": "researcher", "bonebank_project": "p1",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_checked_with_the_configured_leeway() {
    let idp = provider();
    let verifier = TokenVerifier::new(OidcSettings {
        leeway_seconds: 30,
        ..idp.settings()
    })
    .unwrap();
    let caller = verifier
        .verify(&idp.sign(&claims(&idp, now() - 10)))
        .await
        .unwrap();
    assert_eq!(
        (caller.user.as_str(), caller.role, caller.project.as_str()),
        ("rita", Role::Researcher, "p1")
    );
    let late = verifier.verify(&idp.sign(&claims(&idp, now() - 40))).await;
    assert!(
        matches!(&late, Err(Error::Unauthenticated(m)) if m.contains("expired")),
        "{late:?}"
    );
    let mut early = claims(&idp, now() + 300);
    early["nbf"] = json!(now() + 60);
    let early = verifier.verify(&idp.sign(&early)).await;
    assert!(
        matches!(&early, Err(Error::Unauthenticated(m)) if m.contains("not valid yet")),
        "{early:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_and_made_up_key_ids_do_not_hammer_the_issuer() {
    let idp = provider();
    let verifier = TokenVerifier::new(idp.settings()).unwrap();
    let user = DevUser::new("rita", Role::Researcher, Some("p1"), &[]);
    verifier.verify(&idp.token_for(&user)).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 1);
    // Cached: more tokens under the same key fetch nothing.
    for _ in 0..5 {
        verifier.verify(&idp.token_for(&user)).await.unwrap();
    }
    assert_eq!(idp.jwks_fetches(), 1);

    // The provider rotates its key; the first token under the new key id
    // makes the node fetch the keys again (once the refetch pause is over).
    idp.rotate_key().unwrap();
    tokio::time::sleep(REFETCH_AFTER + Duration::from_millis(200)).await;
    verifier.verify(&idp.token_for(&user)).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 2);

    // Tokens naming key ids nobody publishes: refused, and at most one fetch
    // per pause however many arrive.
    tokio::time::sleep(REFETCH_AFTER + Duration::from_millis(200)).await;
    let good = idp.token_for(&user);
    let header = base64_url(&json!({"alg": "ES256", "kid": "made-up"}).to_string());
    let rest = good.split_once('.').unwrap().1;
    let forged = format!("{header}.{rest}");
    for _ in 0..20 {
        let refused = verifier.verify(&forged).await;
        assert!(
            matches!(&refused, Err(Error::Unauthenticated(m)) if m.contains("does not publish")),
            "{refused:?}"
        );
    }
    assert_eq!(
        idp.jwks_fetches(),
        3,
        "one refetch for twenty made-up key ids"
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_is_a_503_not_a_401() {
    let idp = provider();
    let token = idp.token_for(&DevUser::new("rita", Role::Researcher, Some("p1"), &[]));
    let settings = idp.settings();
    idp.stop().await;
    drop(idp);
    let verifier = TokenVerifier::new(settings).unwrap();
    let e = verifier.verify(&token).await;
    assert!(matches!(e, Err(Error::IdentityUnavailable(_))), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_fetched_before_keep_working_while_the_issuer_is_down() {
    let idp = provider();
    let user = DevUser::new("rita", Role::Researcher, Some("p1"), &[]);
    let verifier = TokenVerifier::new(idp.settings()).unwrap();
    verifier.verify(&idp.token_for(&user)).await.unwrap();
    let later = idp.token_for(&user);
    idp.rotate_key().unwrap();
    let unknown_key = idp.token_for(&user);
    idp.stop().await;
    drop(idp);
    tokio::time::sleep(REFETCH_AFTER + Duration::from_millis(200)).await;
    // A token under the known key still checks out.
    verifier.verify(&later).await.unwrap();
    // One under a key the node could not fetch cannot be checked: 503.
    let e = verifier.verify(&unknown_key).await;
    assert!(matches!(e, Err(Error::IdentityUnavailable(_))), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_checked_before_is_still_refused_once_it_expires() {
    let idp = provider();
    let verifier = TokenVerifier::new(OidcSettings {
        leeway_seconds: 0,
        ..idp.settings()
    })
    .unwrap();
    let token = idp.sign(&claims(&idp, now() + 2));
    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    let fetches = idp.jwks_fetches();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let late = verifier.verify(&token).await;
    assert!(
        matches!(&late, Err(Error::Unauthenticated(m)) if m.contains("expired")),
        "{late:?}"
    );
    assert_eq!(idp.jwks_fetches(), fetches);
}
