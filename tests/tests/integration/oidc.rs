//! Identity against a real OpenID Connect provider: `oidc-provider` from npm
//! (OpenID certified), installed from `tests/oidc/package-lock.json` and
//! started on a loopback port. `scripts/test` installs it; without Node.js
//! or the packages these tests say so and do not run, unless
//! `BONEBANK_REQUIRE_OIDC_PROVIDER=1` (set by `.ci/run`) makes that a failure.
//!
//! The network trusts issuer "a". Issuer "b" is a second provider, for the
//! wrong-issuer case. Tokens for the refusal cases are signed by the
//! provider's script with the provider's own key (or deliberately another).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bonebank_cli::client::Client;
use bonebank_cli::login::{self, Approver, TokenCache};
use bonebank_coordinator::config::LoginConfig;
use bonebank_dev::local::{self, Identity, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_schemas::wire::{FederatedRequest, SiteStatus};
use bonebank_service::oidc::OidcSettings;
use bonebank_service::tls;
use serde_json::{Value, json};

const AUDIENCE: &str = "urn:bonebank";

fn oidc_dir() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("oidc")
}

/// The provider's process; killed when dropped.
struct Provider {
    child: Child,
    a: String,
    b: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the provider, or says plainly why these tests do not run here.
fn provider(test: &str) -> Option<Provider> {
    let required = std::env::var("BONEBANK_REQUIRE_OIDC_PROVIDER").is_ok_and(|v| v == "1");
    let installed = oidc_dir()
        .join("node_modules/oidc-provider/package.json")
        .exists();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed || !node {
        let why = if node {
            "its npm packages are not installed (npm ci --prefix tests/oidc)"
        } else {
            "Node.js is not installed"
        };
        assert!(
            !required,
            "{test}: the OIDC provider tests are required here, but {why}"
        );
        // Written to stderr directly, not through eprintln!, so that the
        // test harness does not hide it behind "ok".
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: {test} needs the oidc-provider test provider, and {why}. \
             scripts/test installs it; .ci/run requires it."
        );
        return None;
    }
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .current_dir(oidc_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok).unwrap_or_default());
        // Keep reading: a closed pipe would kill the provider on its next write.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the OIDC provider did not start within 60 s");
    let urls: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the provider printed {line:?}: {e}"));
    Some(Provider {
        child,
        a: urls["a"].as_str().unwrap().to_owned(),
        b: urls["b"].as_str().unwrap().to_owned(),
    })
}

/// The network's identity settings: issuer "a", the test clients.
fn identity(provider: &Provider, dir: &Path) -> Identity {
    let secret = dir.join("coordinator-client-secret");
    std::fs::write(&secret, "coordinator-test-secret\n").unwrap();
    Identity {
        oidc: OidcSettings {
            issuer: provider.a.clone(),
            audience: AUDIENCE.into(),
            leeway_seconds: 2,
            claims: Default::default(),
            ca: None,
        },
        login: LoginConfig {
            client_id: "bonebank-coordinator".into(),
            client_secret_file: Some(secret),
            cli_client_id: "bonebank-cli".into(),
            public_url: None,
            scopes: vec!["offline_access".into(), "bonebank".into()],
            resource: None,
            development: false,
        },
    }
}

fn generous() -> Policy {
    let mut p = Policy::default();
    p.budget.site = 1000.0;
    p.budget.project = 1000.0;
    p.budget.user = 1000.0;
    p
}

fn network(provider: &Provider, tmp: &tempfile::TempDir) -> LocalNetwork {
    let sites = local::demo_sites();
    for (i, s) in sites.iter().enumerate() {
        local::generate_site(tmp.path(), s, 150, 40 + i as u64).unwrap();
    }
    LocalNetwork::start_with_identity(
        tmp.path(),
        &sites,
        |_| generous(),
        10_000,
        identity(provider, tmp.path()),
    )
    .unwrap()
}

/// A browser: keeps cookies, follows no redirects by itself.
fn browser() -> reqwest::Client {
    tls::install_default_provider();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name="…" value="…"` of every hidden input on a page.
fn hidden_inputs(page: &str) -> Vec<(String, String)> {
    page.split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| {
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
                Some(tag[start..start + tag[start..].find('"')?].to_owned())
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

/// The `action` of the page's form.
fn form_action(page: &str) -> String {
    let start = page.find("action=\"").expect("a form") + 8;
    page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&")
}

/// Clicks through the provider's pages as `user` would in a browser: signs
/// in, enters and confirms a device code. Returns the last page's URL and
/// text.
async fn browse(
    http: &reqwest::Client,
    start: reqwest::Url,
    user: &str,
    user_code: Option<&str>,
) -> (reqwest::Url, String) {
    let mut url = start;
    let mut form: Option<Vec<(String, String)>> = None;
    for _ in 0..20 {
        let request = match form.take() {
            None => http.get(url.clone()),
            Some(fields) => http.post(url.clone()).form(&fields),
        };
        let response = request.send().await.unwrap();
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str().unwrap();
            url = url.join(location).unwrap();
            continue;
        }
        let page = response.text().await.unwrap();
        if page.contains("id=\"login\"") {
            url = url.join(&form_action(&page)).unwrap();
            form = Some(vec![("login".into(), user.into())]);
        } else if page.contains("op.deviceInputForm") {
            url = url.join(&form_action(&page)).unwrap();
            let mut fields = hidden_inputs(&page);
            fields.push(("user_code".into(), user_code.expect("a device code").into()));
            form = Some(fields);
        } else if page.contains("DEVELOPMENT identity provider")
            && page.contains("action=\"/authorize\"")
        {
            // bonebank's development provider: pick a demo user.
            url = url.join(&form_action(&page)).unwrap();
            let mut fields = hidden_inputs(&page);
            fields.push(("user".into(), user.into()));
            form = Some(fields);
        } else if page.contains("op.deviceConfirmForm") {
            url = url.join(&form_action(&page)).unwrap();
            form = Some(hidden_inputs(&page));
        } else {
            return (url, page);
        }
    }
    panic!("more than 20 pages to sign in; last at {url}");
}

fn question() -> FederatedRequest {
    FederatedRequest {
        sql: Some("SELECT COUNT(*) FROM samples".into()),
        query: None,
        loss: Some(0.02),
        sites: None,
        fresh: true,
        purpose: None,
    }
}

async fn get(http: &reqwest::Client, base: &reqwest::Url, path: &str) -> reqwest::Response {
    http.get(base.join(path).unwrap()).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_with_code_and_pkce_and_out_again() {
    let Some(provider) = provider("browser login") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let net = network(&provider, &tmp);
    // Beacon counts below come from the sites' catalogues.
    net.wait_for_catalogues(std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let base = reqwest::Url::parse(&net.coordinator.url()).unwrap();
    let http = browser();

    // Not signed in: the API says so with a 401.
    let r = http
        .post(base.join("/v1/query").unwrap())
        .json(&question())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The login redirect carries PKCE (S256), state and nonce, and binds the
    // state to this browser with an HttpOnly cookie.
    let r = get(&http, &base, "/auth/login").await;
    assert_eq!(r.status(), 303);
    let to_provider = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        to_provider.as_str().starts_with(&provider.a),
        "{to_provider}"
    );
    let params: std::collections::HashMap<_, _> = to_provider.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    for key in ["code_challenge", "state", "nonce"] {
        assert!(params[key].len() >= 20, "{key}: {:?}", params.get(key));
    }
    let login_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Lax"),
        "{login_cookie}"
    );

    // A callback with a state this browser was not sent off with is refused.
    let forged = get(
        &http,
        &base,
        &format!("/auth/callback?code=x&state=not-{}", params["state"]),
    )
    .await;
    assert_eq!(forged.status(), 401);
    // So is the right state arriving in another browser (login CSRF).
    let elsewhere = get(
        &browser(),
        &base,
        &format!("/auth/callback?code=x&state={}", params["state"]),
    )
    .await;
    assert_eq!(elsewhere.status(), 401);
    let body: Value = elsewhere.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not started in this browser"),
        "{body}"
    );

    // Signing in at the provider brings the browser back to the app, with a
    // session.
    let (url, page) = browse(&http, to_provider, "alice", None).await;
    assert_eq!(url.as_str(), base.join("/").unwrap().as_str(), "{page}");
    assert!(page.contains("/app/main.js"), "{page}");
    let who: Value = get(&http, &base, "/v1/whoami").await.json().await.unwrap();
    assert_eq!(who["user"], "alice");
    assert_eq!(who["project"], "hip-fracture-msc");
    let csrf = who["csrf"]
        .as_str()
        .expect("a session has a CSRF token")
        .to_owned();

    // A request that changes something needs the session's CSRF token.
    let r = http
        .post(base.join("/v1/query").unwrap())
        .json(&question())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF token");
    // The session's token reaches the nodes, which check it themselves.
    let r = http
        .post(base.join("/v1/query").unwrap())
        .header("X-CSRF-Token", &csrf)
        .json(&question())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let result: bonebank_schemas::wire::FederatedResult = r.json().await.unwrap();
    assert!(
        result
            .sites
            .iter()
            .all(|s| s.status == SiteStatus::Answered),
        "{:?}",
        result.sites
    );
    let who: Value = get(&http, &base, "/v1/whoami").await.json().await.unwrap();
    assert_eq!(who["user"], "alice");

    // A Beacon GET counts at every site and is charged, so a session's
    // needs the CSRF token too: a link on another origin cannot spend
    // alice's budget.
    let spent = |http: reqwest::Client, base: reqwest::Url| async move {
        let budgets: Vec<bonebank_schemas::wire::BudgetListing> =
            get(&http, &base, "/v1/budgets").await.json().await.unwrap();
        budgets
            .iter()
            .map(|b| b.budget.as_ref().map_or(0.0, |b| b.user.spent))
            .sum::<f64>()
    };
    let before = spent(http.clone(), base.clone()).await;
    let r = get(&http, &base, "/beacon/v2/individuals").await;
    assert_eq!(
        r.status(),
        403,
        "a session's Beacon GET without its CSRF token"
    );
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["errorCode"], 403, "{e}");
    assert_eq!(
        spent(http.clone(), base.clone()).await,
        before,
        "nothing charged"
    );
    let r = http
        .get(base.join("/beacon/v2/individuals").unwrap())
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "with its CSRF token it counts");
    let counted: Value = r.json().await.unwrap();
    assert!(
        counted["responseSummary"]["exists"].is_boolean(),
        "{counted}"
    );
    // From the sites' catalogues: free of the user's budget.
    assert_eq!(
        spent(http.clone(), base.clone()).await,
        before,
        "a Beacon count is answered from the catalogues"
    );

    // The code cannot be replayed: the state is used up.
    let replay = get(
        &http,
        &base,
        &format!("/auth/callback?code=x&state={}", params["state"]),
    )
    .await;
    assert_eq!(replay.status(), 401);

    // Logout ends the session; the old cookie no longer works.
    let session = get(&http, &base, "/v1/whoami").await;
    assert_eq!(session.status(), 200);
    let r = http
        .post(base.join("/auth/logout").unwrap())
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = get(&http, &base, "/v1/whoami").await;
    assert_eq!(r.status(), 401);
}

/// The demo's browser login: the same coordinator code against bonebank's
/// development provider (needs no Node.js).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_through_the_development_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let sites = local::demo_sites();
    for (i, s) in sites.iter().enumerate() {
        local::generate_site(tmp.path(), s, 100, 50 + i as u64).unwrap();
    }
    let net = LocalNetwork::start(tmp.path(), &sites, &generous(), 10_000).unwrap();
    let base = reqwest::Url::parse(&net.coordinator.url()).unwrap();
    let http = browser();
    let (url, page) = browse(
        &http,
        base.join("/auth/login").unwrap(),
        "steward-dk-ode",
        None,
    )
    .await;
    assert_eq!(url.as_str(), base.join("/").unwrap().as_str(), "{page}");
    assert!(page.contains("/app/main.js"), "{page}");
    let who: Value = get(&http, &base, "/v1/whoami").await.json().await.unwrap();
    assert_eq!(who["user"], "steward-dk-ode");
    assert_eq!(who["role"], "steward");
    assert_eq!(who["sites"], json!(["DK-ODE"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_in_with_the_device_flow_and_refreshes() {
    let Some(provider) = provider("device flow") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let net = network(&provider, &tmp);
    let url = net.coordinator.url();
    let cache = TokenCache::at(&tmp.path().join("config"));

    // The user opens the page shown and signs in, in a browser, while the
    // CLI polls.
    let (prompt_tx, prompt_rx) = tokio::sync::oneshot::channel();
    let user_side = tokio::spawn(async move {
        let prompt: login::DevicePrompt = prompt_rx.await.unwrap();
        let start = reqwest::Url::parse(&prompt.verification_uri).unwrap();
        browse(&browser(), start, "alice", Some(&prompt.user_code)).await
    });
    let signed_in = tokio::time::timeout(
        Duration::from_secs(60),
        login::login(&url, Approver::Show, &cache, move |p| {
            prompt_tx.send(p.clone()).unwrap();
        }),
    )
    .await
    .expect("the device sign-in finishes within a minute")
    .unwrap();
    let (_, page) = user_side.await.unwrap();
    assert!(page.contains("Device signed in"), "{page}");
    assert!(signed_in.refresh_token.is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The cached token works.
    let token = login::access_token(&url, &cache).await.unwrap();
    assert_eq!(token, signed_in.access_token);
    let client = Client::new(&url, token.clone()).unwrap();
    assert_eq!(client.whoami().await.unwrap().user, "alice");
    let r = client.query(&question()).await.unwrap();
    assert!(
        r.sites.iter().all(|s| s.status == SiteStatus::Answered),
        "{:?}",
        r.sites
    );

    // Once the access token has expired, the refresh token gets a new one
    // (and the provider rotates the refresh token).
    let mut expired = signed_in.clone();
    expired.expires_at = chrono_now() - 5;
    cache.put(&url, expired).unwrap();
    let renewed = login::access_token(&url, &cache).await.unwrap();
    assert_ne!(renewed, token);
    let cached = cache.get(&url).unwrap().unwrap();
    assert_eq!(cached.access_token, renewed);
    assert!(cached.expires_at > chrono_now() + 60);
    assert_ne!(cached.refresh_token, signed_in.refresh_token);
    let r = Client::new(&url, renewed)
        .unwrap()
        .query(&question())
        .await
        .unwrap();
    assert!(r.sites.iter().all(|s| s.status == SiteStatus::Answered));

    // A refresh token the provider no longer honours means signing in again.
    let mut dead = cache.get(&url).unwrap().unwrap();
    dead.expires_at = chrono_now() - 5;
    dead.refresh_token = Some("revoked".into());
    cache.put(&url, dead).unwrap();
    let e = login::access_token(&url, &cache).await.unwrap_err();
    assert!(
        e.contains("has expired") && e.contains("bonebank login"),
        "{e}"
    );

    // --user is for the development provider only.
    let e = login::login(&url, Approver::DemoUser("alice".into()), &cache, |_| {})
        .await
        .unwrap_err();
    assert!(e.contains("development identity provider"), "{e}");
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token signed by the provider's script: `key` is "own" (the issuer's
/// published key), "stray" (a key it does not publish) or
/// "rsa-with-own-kid" (an RSA key under the published EC key's id).
async fn mint(issuer: &str, claims: Value, key: &str) -> String {
    reqwest::Client::new()
        .post(format!("{issuer}/test/mint"))
        .json(&json!({ "claims": claims, "key": key }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn claims(issuer: &str, user: &str, extra: Value) -> Value {
    let now = chrono_now();
    let mut c = json!({
        "iss": issuer, "aud": AUDIENCE, "sub": user, "iat": now, "exp": now + 300,
        "bonebank_role": "researcher", "bonebank_project": "p1",
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// A call straight to node `i` over mutual TLS with the coordinator's
/// certificate, with `token`.
async fn call_node(
    net: &LocalNetwork,
    i: usize,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> (u16, Value) {
    tls::install_default_provider();
    let config = tls::client_config(
        &net.pki.ca_cert(),
        &net.pki.coordinator_cert(),
        &net.pki.coordinator_key(),
    )
    .unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap();
    let mut req = http
        .request(
            method.clone(),
            format!("https://localhost:{}{path}", net.nodes[i].1.addr.port()),
        )
        .bearer_auth(token);
    if method == reqwest::Method::POST && path == "/v1/query" {
        req = req.json(&json!({ "sql": "SELECT COUNT(*) FROM samples", "loss": 0.01 }));
    } else if method == reqwest::Method::POST {
        req = req.json(&json!({ "decision": "approve" }));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_refuses_tokens_that_do_not_check_out() {
    let Some(provider) = provider("token refusals") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let net = network(&provider, &tmp);
    let a = provider.a.as_str();
    let post = reqwest::Method::POST;

    // The control: a good token is answered.
    let good = mint(a, claims(a, "rita", json!({})), "own").await;
    let (status, body) = call_node(&net, 0, post.clone(), "/v1/query", &good).await;
    assert_eq!(status, 200, "{body}");

    let now = chrono_now();
    let [h, p, s]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let flip = |sig: &str| {
        let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        bytes[10] ^= 0x01;
        URL_SAFE_NO_PAD.encode(bytes)
    };
    let unsigned = format!(
        "{}.{p}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#)
    );
    let other_payload = URL_SAFE_NO_PAD.encode(claims(a, "mallory", json!({})).to_string());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            mint(
                a,
                claims(a, "rita", json!({"iat": now - 600, "exp": now - 60})),
                "own",
            )
            .await,
            "expired",
        ),
        (
            "not yet valid",
            mint(a, claims(a, "rita", json!({"nbf": now + 120})), "own").await,
            "not valid yet",
        ),
        (
            "wrong audience",
            mint(
                a,
                claims(a, "rita", json!({"aud": "urn:something-else"})),
                "own",
            )
            .await,
            "another audience",
        ),
        (
            "wrong issuer",
            mint(&provider.b, claims(&provider.b, "rita", json!({})), "own").await,
            // Refused at the key: b signs with keys a does not publish.
            "does not publish",
        ),
        (
            "wrong issuer claim under a's key",
            mint(a, claims(a, "rita", json!({"iss": provider.b})), "own").await,
            "another issuer",
        ),
        (
            "bad signature",
            format!("{h}.{p}.{}", flip(s)),
            "does not verify",
        ),
        (
            "payload swapped under a valid signature",
            format!("{h}.{other_payload}.{s}"),
            "does not verify",
        ),
        (
            "unknown key id",
            mint(a, claims(a, "rita", json!({})), "stray").await,
            "does not publish",
        ),
        (
            "algorithm not published for the key",
            mint(a, claims(a, "rita", json!({})), "rsa-with-own-kid").await,
            "publishes this key for",
        ),
        ("alg none", unsigned, "unsigned"),
        ("not a JWT", "x".into(), "not a signed JWT"),
    ];
    for (case, token, says) in &cases {
        for node in 0..3 {
            let (status, body) = call_node(&net, node, post.clone(), "/v1/query", token).await;
            assert_eq!(status, 401, "{case} at node {node}: {body}");
            assert_eq!(body["code"], "unauthenticated", "{case}: {body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(says), "{case}: {message}");
        }
    }

    // The coordinator refuses them too, before asking anyone.
    for (case, token, _) in &cases[..3] {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/query", net.coordinator.url()))
            .bearer_auth(token)
            .json(&question())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{case}");
    }

    // Valid tokens without the needed role get 403.
    let steward = |site: &str| {
        claims(
            a,
            "sam",
            json!({"bonebank_role": "steward", "bonebank_sites": [site]}),
        )
    };
    let get = reqwest::Method::GET;
    let de_lue_steward = mint(a, steward("DE-LUE"), "own").await;
    let (status, body) = call_node(&net, 0, get.clone(), "/v1/approvals", &de_lue_steward).await;
    assert_eq!(status, 200, "a steward of DE-LUE at DE-LUE: {body}");
    let (status, body) = call_node(&net, 1, get.clone(), "/v1/approvals", &de_lue_steward).await;
    assert_eq!(status, 403, "a steward of DE-LUE at DK-ODE: {body}");
    let (status, body) = call_node(&net, 0, get.clone(), "/v1/approvals", &good).await;
    assert_eq!(status, 403, "a researcher at the steward endpoint: {body}");
    let (status, body) = call_node(&net, 0, post.clone(), "/v1/approvals/t-1", &good).await;
    assert_eq!(status, 403, "a researcher deciding: {body}");
    let no_role = mint(
        a,
        claims(a, "rita", json!({"bonebank_role": "admin"})),
        "own",
    )
    .await;
    let (status, body) = call_node(&net, 0, post.clone(), "/v1/query", &no_role).await;
    assert_eq!(status, 403, "{body}");

    // Budgets follow the verified claims: rita's query (the control above)
    // is charged to rita and to project p1; rosa of p1 shares the project's
    // account but not rita's; olga of p2 shares neither.
    let budget = |user: &str, project: &str| {
        let token = mint(
            a,
            claims(a, user, json!({"bonebank_project": project})),
            "own",
        );
        async {
            let (status, body) = call_node(&net, 0, get.clone(), "/v1/budget", &token.await).await;
            assert_eq!(status, 200, "{body}");
            (
                body["user"]["spent"].as_f64().unwrap(),
                body["project"]["spent"].as_f64().unwrap(),
            )
        }
    };
    let (rita_user, p1) = budget("rita", "p1").await;
    assert!(
        (rita_user - 0.01).abs() < 1e-9 && (p1 - 0.01).abs() < 1e-9,
        "{rita_user} {p1}"
    );
    assert_eq!(budget("rosa", "p1").await, (0.0, p1));
    assert_eq!(budget("olga", "p2").await, (0.0, 0.0));
}
