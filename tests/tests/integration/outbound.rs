//! Sites behind a hospital firewall: nodes that only connect out. The
//! network runs on loopback; the firewall is a network namespace the test
//! makes for itself with an nftables rule that drops every connection to the
//! node, and the forward proxy is a real one (tinyproxy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bonebank_dev::devidp::DevUser;
use bonebank_dev::local::{self, LocalNetwork};
use bonebank_dev::pki::{self, Ca, PkiDir};
use bonebank_node::server;
use bonebank_query::policy::Policy;
use bonebank_schemas::wire::{FederatedResult, SiteListing, SiteStatus};
use bonebank_schemas::{Role, SiteId};
use bonebank_service::tls;

use crate::http::{get, get_with_certificate, ok, post};
use bonebank_coordinator::link::SITE_HEADER;

const DONORS: u64 = 300;
/// The deadline of every network here: far longer than the link needs to
/// notice a dead connection, so that `unreachable` before it shows the
/// heartbeat at work, not the deadline.
const DEADLINE_MS: u64 = 20_000;

fn nae() -> SiteId {
    SiteId::parse(SiteId::NAESTVED).unwrap()
}

fn ode() -> SiteId {
    SiteId::parse(SiteId::ODENSE).unwrap()
}

fn sites(root: &Path) -> Vec<SiteId> {
    let sites = local::demo_sites();
    for (i, s) in sites.iter().enumerate() {
        local::generate_site(root, s, DONORS, 30 + i as u64).unwrap();
    }
    sites
}

fn generous(_: &SiteId) -> Policy {
    let mut p = Policy::default();
    p.budget.site = 1000.0;
    p.budget.project = 1000.0;
    p.budget.user = 1000.0;
    p.zcdp.budget = p.budget;
    p
}

fn token(net: &LocalNetwork) -> String {
    net.token(&DevUser::new("ada", Role::Researcher, Some("p1"), &[]))
}

/// Asks the network a question; the answer and how long it took.
async fn ask(net: &LocalNetwork, sql: &str) -> (FederatedResult, Duration) {
    let request = serde_json::json!({ "sql": sql, "loss": 0.05 });
    let started = Instant::now();
    let url = format!("{}/v1/query", net.coordinator.url());
    let answer = ok(post(&url, Some(&token(net)), &request).await);
    (answer, started.elapsed())
}

async fn listing(net: &LocalNetwork) -> Vec<SiteListing> {
    let url = format!("{}/v1/sites", net.coordinator.url());
    ok(get(&url, Some(&token(net))).await)
}

fn status_of(result: &FederatedResult, site: &SiteId) -> (SiteStatus, String) {
    let s = result
        .sites
        .iter()
        .find(|s| s.site_id == site.as_str())
        .unwrap();
    (s.status, s.message.clone().unwrap_or_default())
}

/// Whether the coordinator counts `site` as connected.
fn connected(net: &LocalNetwork, site: &SiteId) -> bool {
    net.coordinator
        .links
        .as_ref()
        .unwrap()
        .site(site)
        .unwrap()
        .connected()
}

/// Waits (at most `within`) until `site`'s connection is as wanted.
async fn until_connected(net: &LocalNetwork, site: &SiteId, want: bool, within: Duration) {
    let until = Instant::now() + within;
    while connected(net, site) != want {
        assert!(
            Instant::now() < until,
            "{site} still {} after {within:?}",
            if want { "disconnected" } else { "connected" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops `site`'s node, waits until the coordinator has noticed, and starts
/// another from its config changed by `change` (e.g. other files).
async fn restart_node(
    net: &mut LocalNetwork,
    site: &SiteId,
    change: impl FnOnce(&mut bonebank_node::config::NodeConfig),
) {
    let i = net
        .nodes
        .iter()
        .position(|(c, _)| &c.site_id == site)
        .unwrap();
    let (mut config, running) = net.nodes.remove(i);
    running.stop().await;
    until_connected(net, site, false, Duration::from_secs(10)).await;
    change(&mut config);
    let running = server::start(&config, server::state(&config).unwrap()).unwrap();
    net.nodes.insert(i, (config, running));
}

/// Writes a certificate and key the way an operator's tooling should:
/// each file replaced whole.
fn install(cert: &Path, key: &Path, issued: &pki::Issued) {
    for (path, pem, secret) in [
        (key, &issued.key_pem, true),
        (cert, &issued.cert_pem, false),
    ] {
        let tmp = path.with_extension("new");
        pki::write(&tmp, pem, secret).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

const COUNT: &str = "SELECT COUNT(*) FROM samples";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_is_not_connected_is_unreachable_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(tmp.path());
    let mut net = LocalNetwork::start_mixed(tmp.path(), &ids, &[nae()], generous, DEADLINE_MS)
        .await
        .unwrap();

    let (r, _) = ask(&net, COUNT).await;
    assert!(
        r.sites.iter().all(|s| s.status == SiteStatus::Answered),
        "{:?}",
        r.sites
    );
    let list = listing(&net).await;
    let nae_listed = list.iter().find(|s| s.site_id == nae().as_str()).unwrap();
    assert_eq!(nae_listed.connection, "outbound");
    assert_eq!(nae_listed.status, "up");
    assert!(nae_listed.last_seen.is_some(), "{nae_listed:?}");
    let lue = list.iter().find(|s| s.site_id == "DE-LUE").unwrap();
    assert_eq!(
        (lue.connection.as_str(), &lue.last_seen),
        ("inbound", &None)
    );

    // The link listener describes itself to a node, as every service does.
    let link = net.coordinator.link.as_ref().unwrap();
    let doc = get_with_certificate(
        &format!("{}/openapi.json", link.url()),
        &net.pki.ca_cert(),
        &net.pki.node_cert(&nae()),
        &net.pki.node_key(&nae()),
    )
    .await;
    assert!(doc["paths"]["/v1/link/poll"]["get"].is_object(), "{doc}");
    assert!(doc["paths"]["/v1/link/answer"]["post"].is_object(), "{doc}");

    // The node stops: its connections close and the site is gone at once.
    let i = net
        .nodes
        .iter()
        .position(|(c, _)| c.site_id == nae())
        .unwrap();
    let (_, node) = net.nodes.remove(i);
    node.stop().await;
    until_connected(&net, &nae(), false, Duration::from_secs(8)).await;
    let (r, took) = ask(&net, COUNT).await;
    let (status, message) = status_of(&r, &nae());
    assert_eq!(status, SiteStatus::Unreachable, "{message}");
    assert!(message.contains("not connected"), "{message}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(status_of(&r, &ode()).0, SiteStatus::Answered);
    let list = listing(&net).await;
    let nae_listed = list.iter().find(|s| s.site_id == nae().as_str()).unwrap();
    assert!(
        nae_listed.status.contains("not connected"),
        "{nae_listed:?}"
    );
    assert!(nae_listed.last_seen.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_and_a_renewed_one_used_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(tmp.path());
    let ca = Ca::generate("bonebank test CA").unwrap();
    let pki_dir = PkiDir::new(tmp.path().join("pki"));
    pki_dir.init_with(&ca, &ids).unwrap();
    // Naestved's certificate runs out a few seconds into the test.
    let names = [pki::node_name(&nae())];
    let short = ca
        .issue_node_until(&names, SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    install(
        &pki_dir.node_cert(&nae()),
        &pki_dir.node_key(&nae()),
        &short,
    );

    let net = LocalNetwork::start_mixed(tmp.path(), &ids, &[nae()], generous, DEADLINE_MS)
        .await
        .unwrap();
    let (r, _) = ask(&net, COUNT).await;
    assert_eq!(status_of(&r, &nae()).0, SiteStatus::Answered);

    // Expired: the open connection is refused at its next poll, and a new
    // handshake with the certificate fails.
    until_connected(&net, &nae(), false, Duration::from_secs(20)).await;
    let (r, _) = ask(&net, COUNT).await;
    let (status, message) = status_of(&r, &nae());
    assert_eq!(status, SiteStatus::Unreachable);
    assert!(message.contains("certificate expired on"), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !connected(&net, &nae()),
        "an expired certificate got back in"
    );

    // A renewed certificate is picked up by the running node.
    let renewed = ca.issue_server(&names).unwrap();
    install(
        &pki_dir.node_cert(&nae()),
        &pki_dir.node_key(&nae()),
        &renewed,
    );
    until_connected(&net, &nae(), true, Duration::from_secs(30)).await;
    let (r, _) = ask(&net, COUNT).await;
    assert_eq!(status_of(&r, &nae()).0, SiteStatus::Answered);
}

/// The certificate a TLS server at `addr` shows (checked against `ca`).
fn served_certificate(addr: SocketAddr, ca: &Path) -> Vec<u8> {
    use std::io::Write;
    let roots = tls::read_roots(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(pki::COORDINATOR_NAME).unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The handshake completes (the server then wants a client certificate,
    // which it does not get; the server's certificate is what matters here).
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            break;
        }
    }
    let _ = sock.flush();
    conn.peer_certificates().expect("the server's certificate")[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_shows_a_rotated_certificate_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(tmp.path());
    let ca = Ca::generate("bonebank test CA").unwrap();
    let pki_dir = PkiDir::new(tmp.path().join("pki"));
    pki_dir.init_with(&ca, &ids).unwrap();
    let net = LocalNetwork::start_mixed(tmp.path(), &ids, &[nae()], generous, DEADLINE_MS)
        .await
        .unwrap();
    let link = net.coordinator.link.as_ref().unwrap().addr;
    let ca_file = pki_dir.ca_cert();
    let before = tokio::task::spawn_blocking({
        let ca_file = ca_file.clone();
        move || served_certificate(link, &ca_file)
    })
    .await
    .unwrap();
    assert_eq!(
        before,
        der_of(&std::fs::read_to_string(pki_dir.coordinator_cert()).unwrap())
    );

    let rotated = ca.issue_client(pki::COORDINATOR_NAME).unwrap();
    install(
        &pki_dir.coordinator_cert(),
        &pki_dir.coordinator_key(),
        &rotated,
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let after = tokio::task::spawn_blocking(move || served_certificate(link, &ca_file))
        .await
        .unwrap();
    assert_eq!(
        after,
        der_of(&rotated.cert_pem),
        "the old certificate is still shown"
    );

    // The node, connecting again, trusts the rotated one.
    let (r, _) = ask(&net, COUNT).await;
    assert_eq!(status_of(&r, &nae()).0, SiteStatus::Answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_certificate_names_another_site_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(tmp.path());
    let ca = Ca::generate("bonebank test CA").unwrap();
    let pki_dir = PkiDir::new(tmp.path().join("pki"));
    pki_dir.init_with(&ca, &ids).unwrap();
    let mut net =
        LocalNetwork::start_mixed(tmp.path(), &ids, &[ode(), nae()], generous, DEADLINE_MS)
            .await
            .unwrap();

    // Naestved's node comes back with Odense's certificate.
    let (ode_cert, ode_key) = (pki_dir.node_cert(&ode()), pki_dir.node_key(&ode()));
    restart_node(&mut net, &nae(), |c| {
        let tls = c.tls.as_mut().unwrap();
        tls.certificate = ode_cert.clone();
        tls.key = ode_key.clone();
    })
    .await;
    until_connected(&net, &nae(), false, Duration::from_secs(8)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !connected(&net, &nae()),
        "a node with Odense's certificate connected as Naestved"
    );
    let (r, _) = ask(&net, COUNT).await;
    let (status, message) = status_of(&r, &nae());
    assert_eq!(status, SiteStatus::Unreachable);
    assert!(message.contains("DK-ODE's certificate"), "{message}");
    // Odense itself is not disturbed.
    assert_eq!(status_of(&r, &ode()).0, SiteStatus::Answered);

    // A certificate from the network's CA for a name no site has, a
    // wildcard from it that covers every site's name (which once polled as
    // Naestved and received users' tokens), and one for Naestved's name
    // from another CA: refused in the handshake.
    let dir = tmp.path().join("intruders");
    std::fs::create_dir_all(&dir).unwrap();
    let other_ca = Ca::generate("someone else's CA").unwrap();
    for (n, issued) in [
        ca.issue_server(&["intruder.node.bonebank.test".into()])
            .unwrap(),
        ca.issue_server(&["*.node.bonebank.test".into()]).unwrap(),
        other_ca.issue_server(&[pki::node_name(&nae())]).unwrap(),
    ]
    .into_iter()
    .enumerate()
    {
        let (cert, key) = (dir.join(format!("{n}.crt")), dir.join(format!("{n}.key")));
        install(&cert, &key, &issued);
        restart_node(&mut net, &nae(), |c| {
            let tls = c.tls.as_mut().unwrap();
            tls.certificate = cert.clone();
            tls.key = key.clone();
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!connected(&net, &nae()), "intruder {n} connected");
        let (r, took) = ask(&net, COUNT).await;
        assert_eq!(status_of(&r, &nae()).0, SiteStatus::Unreachable);
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}

/// tinyproxy on loopback, killed when dropped.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Proxy {
    /// Starts tinyproxy on `port` (0: one the system chooses), letting
    /// CONNECT through to `link_port` only.
    fn start(dir: &Path, port: u16, link_port: u16) -> Option<Self> {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let log = dir.join("tinyproxy.log");
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nConnectPort {link_port}\n\
                 LogFile \"{}\"\nLogLevel Connect\nMaxClients 20\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "tinyproxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, port, log })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a test that needs `tool` runs; without it the test says NOT RUN,
/// unless `require` is set (CI sets it).
fn have(tool: &str, require: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but {tool} is not installed"
        );
        eprintln!("NOT RUN: {tool} is not installed (CI installs it)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_connects_out_through_a_forward_proxy_and_back_after_it_dies() {
    if !have("tinyproxy", "BONEBANK_REQUIRE_PROXY") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(tmp.path());
    let mut net = LocalNetwork::start_mixed(tmp.path(), &ids, &[nae()], generous, DEADLINE_MS)
        .await
        .unwrap();
    let link_port = net.coordinator.link.as_ref().unwrap().addr.port();
    let proxy = Proxy::start(tmp.path(), 0, link_port).expect("tinyproxy starts");
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    restart_node(&mut net, &nae(), |c| {
        c.outbound.as_mut().unwrap().proxy = Some(proxy_url.clone());
    })
    .await;
    until_connected(&net, &nae(), true, Duration::from_secs(20)).await;
    let (r, _) = ask(&net, COUNT).await;
    assert_eq!(status_of(&r, &nae()).0, SiteStatus::Answered);
    let log = std::fs::read_to_string(&proxy.log).unwrap_or_default();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{link_port}")) || log.contains("CONNECT"),
        "the proxy saw no CONNECT:\n{log}"
    );

    // The proxy dies: the site is gone at once, not at the deadline.
    let port = proxy.port;
    drop(proxy);
    until_connected(&net, &nae(), false, Duration::from_secs(8)).await;
    let (r, took) = ask(&net, COUNT).await;
    assert_eq!(status_of(&r, &nae()).0, SiteStatus::Unreachable);
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // It comes back on the same address; the node reconnects by itself.
    let _proxy = Proxy::start(tmp.path(), port, link_port).expect("tinyproxy starts again");
    until_connected(&net, &nae(), true, Duration::from_secs(30)).await;
    let (r, _) = ask(&net, COUNT).await;
    assert_eq!(status_of(&r, &nae()).0, SiteStatus::Answered);
}

/// Runs `nft` with a script, in the current thread's network namespace.
fn nft(script: &str) {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft failed on:\n{script}");
}

/// Set in the copy of this test that runs inside its own network namespace.
const IN_NAMESPACE: &str = "BONEBANK_TEST_IN_NETNS";

#[test]
fn a_node_behind_a_firewall_answers_and_its_dead_link_is_noticed_in_seconds() {
    const NAME: &str =
        "outbound::a_node_behind_a_firewall_answers_and_its_dead_link_is_noticed_in_seconds";
    if std::env::var_os(IN_NAMESPACE).is_some() {
        // The copy inside the namespace: everything here, the firewall
        // rules included, touches nothing else on the machine.
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(up.unwrap().success(), "ip link set lo up");
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(behind_a_firewall());
        return;
    }
    if !have("nft", "BONEBANK_REQUIRE_NETNS")
        || !have("ip", "BONEBANK_REQUIRE_NETNS")
        || !have("unshare", "BONEBANK_REQUIRE_NETNS")
    {
        return;
    }
    let allowed = Command::new("unshare")
        .args(["--net", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        assert!(
            std::env::var_os("BONEBANK_REQUIRE_NETNS").is_none(),
            "BONEBANK_REQUIRE_NETNS is set but no network namespace could be made"
        );
        eprintln!("NOT RUN: no network namespace could be made here; it needs root");
        return;
    }
    // This test again, alone, in a network namespace of its own.
    let status = Command::new("unshare")
        .arg("--net")
        .arg(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .status()
        .unwrap();
    assert!(status.success(), "the test in its network namespace failed");
}

async fn behind_a_firewall() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(tmp.path());
    let net = LocalNetwork::start_mixed(tmp.path(), &ids, &[nae()], generous, DEADLINE_MS)
        .await
        .unwrap();
    let node = &net
        .nodes
        .iter()
        .find(|(c, _)| c.site_id == nae())
        .unwrap()
        .1;
    let mut ports = vec![node.addr.port()];
    ports.extend(node.steward_pages.as_ref().map(|p| p.addr.port()));
    let ports = ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // The hospital's firewall: nothing gets in to the node.
    nft(&format!(
        "table inet hospital {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    tcp dport {{ {ports} }} drop\n  }}\n}}\n"
    ));
    let direct = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(node.addr),
    )
    .await;
    assert!(
        !matches!(direct, Ok(Ok(_))),
        "the node could still be reached inbound"
    );

    let (r, _) = ask(&net, COUNT).await;
    assert!(
        r.sites.iter().all(|s| s.status == SiteStatus::Answered),
        "{:?}",
        r.sites
    );

    // The link goes silently dead (every packet of it dropped) while a
    // question waits: the site is reported within seconds of the heartbeat.
    let link = net.coordinator.link.as_ref().unwrap().addr.port();
    nft(&format!(
        "table inet cut {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    tcp dport {link} drop\n    tcp sport {link} drop\n  }}\n}}\n"
    ));
    let (r, took) = ask(&net, COUNT).await;
    let (status, message) = status_of(&r, &nae());
    eprintln!("link cut: {} after {took:?}: {message}", status.as_str());
    assert_eq!(status, SiteStatus::Unreachable, "{message}");
    assert!(
        took < Duration::from_secs(8),
        "took {took:?}; the deadline was {DEADLINE_MS} ms"
    );
    assert_eq!(status_of(&r, &ode()).0, SiteStatus::Answered);

    // The link comes back; the node reconnects by itself.
    nft("delete table inet cut\n");
    until_connected(&net, &nae(), true, Duration::from_secs(40)).await;
    let (r, _) = ask(&net, COUNT).await;
    assert_eq!(status_of(&r, &nae()).0, SiteStatus::Answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_link_is_checked_as_on_the_nodes_own_port() {
    use bonebank_schemas::wire::LinkRequest;
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(tmp.path());
    let net = LocalNetwork::start_mixed(tmp.path(), &ids, &[nae()], generous, DEADLINE_MS)
        .await
        .unwrap();
    let config = &net
        .nodes
        .iter()
        .find(|(c, _)| c.site_id == nae())
        .unwrap()
        .0;
    let state = server::state(config).unwrap();
    let request = |grant: Option<String>, path: &str, sql: &str| LinkRequest {
        id: 1,
        method: if path == "v1/site" { "GET" } else { "POST" }.into(),
        path: path.into(),
        grant,
        body: Some(serde_json::json!({ "sql": sql, "loss": 0.05 })),
    };
    let answer = |r| bonebank_node::link::answer(&state, r);

    // No token, and a token signed by another provider's keys.
    let r = answer(request(None, "v1/query", COUNT)).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let stranger = bonebank_dev::devidp::DevProvider::start(
        "127.0.0.1:0".parse().unwrap(),
        bonebank_dev::devidp::DEMO_AUDIENCE,
        Vec::new(),
        Duration::from_secs(60),
    )
    .unwrap();
    let forged = stranger.token_for(&DevUser::new("ada", Role::Researcher, Some("p1"), &[]));
    let r = answer(request(Some(forged), "v1/query", COUNT)).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // A real token: the site's checks still apply, and unknown paths are not served.
    let real = Some(token(&net));
    let r = answer(request(real.clone(), "v1/query", "SELECT * FROM samples")).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("query_refused"))
    );
    let r = answer(request(real.clone(), "v1/approvals", COUNT)).await;
    assert_eq!(r.status, 404);
    let r = answer(request(real, "v1/query", COUNT)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["site_id"], nae().as_str());
    // The public description needs no token.
    let r = answer(request(None, "v1/site", "")).await;
    assert_eq!(r.status, 200);
}

/// A client with `pki`'s certificate and key for `site`: the node of that
/// site, or someone who took them from it.
fn as_node(pki: &PkiDir, site: &SiteId) -> reqwest::Client {
    tls::install_default_provider();
    let config =
        tls::client_config(&pki.ca_cert(), &pki.node_cert(site), &pki.node_key(site)).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_site_receives_is_no_users_token_and_works_nowhere_else() {
    use bonebank_schemas::wire::{LinkPoll, LinkRequest, LinkResponse};
    let tmp = tempfile::tempdir().unwrap();
    let ids = sites(tmp.path());
    let mut net = LocalNetwork::start_mixed(tmp.path(), &ids, &[nae()], generous, DEADLINE_MS)
        .await
        .unwrap();
    // Naestved's node goes, and someone with its certificate and key (a
    // compromised site) polls in its place.
    let i = net
        .nodes
        .iter()
        .position(|(c, _)| c.site_id == nae())
        .unwrap();
    let (nae_config, running) = net.nodes.remove(i);
    running.stop().await;
    until_connected(&net, &nae(), false, Duration::from_secs(10)).await;
    let rogue = as_node(&net.pki, &nae());
    let link = net.coordinator.link.as_ref().unwrap().url();
    let poll = || {
        rogue
            .get(format!("{link}/v1/link/poll"))
            .header(SITE_HEADER, nae().as_str())
            .send()
    };
    ok::<LinkPoll>({
        let r = poll().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    });
    until_connected(&net, &nae(), true, Duration::from_secs(10)).await;

    let alice = token(&net);
    let asked = tokio::spawn({
        let url = format!("{}/v1/query", net.coordinator.url());
        let alice = alice.clone();
        async move {
            post(
                &url,
                Some(&alice),
                // Fresh: the site is asked the question itself, not only
                // for its catalogue.
                &serde_json::json!({ "sql": COUNT, "loss": 0.05, "fresh": true }),
            )
            .await
        }
    });
    let captured: LinkRequest = {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < until, "no question reached the rogue node");
            let r = poll().await.unwrap();
            let mut p: LinkPoll = ok((r.status().as_u16(), r.json().await.unwrap()));
            if let Some(q) = p.requests.pop() {
                break q;
            }
        }
    };
    // A forged answer, so that the question finishes.
    let forged = LinkResponse {
        id: captured.id,
        status: 503,
        body: serde_json::json!({ "code": "internal", "message": "forged" }),
    };
    rogue
        .post(format!("{link}/v1/link/answer"))
        .header(SITE_HEADER, nae().as_str())
        .json(&forged)
        .send()
        .await
        .unwrap();
    asked.await.unwrap();

    // The user's token is nowhere in what the site received.
    let wire = serde_json::to_string(&captured).unwrap();
    assert!(!wire.contains(&alice), "the site received alice's token");
    let grant = captured
        .grant
        .clone()
        .expect("a grant comes with the question");
    assert!(bonebank_service::grant::is_grant(&grant));

    // Taken to Odense's node (with the coordinator's own certificate, as
    // if the thief had that too): refused, as a grant for another site.
    let ode_url = net
        .nodes
        .iter()
        .find(|(c, _)| c.site_id == ode())
        .map(|(_, n)| n.api.url())
        .unwrap();
    let coordinator_cert = tls::client_config(
        &net.pki.ca_cert(),
        &net.pki.coordinator_cert(),
        &net.pki.coordinator_key(),
    )
    .unwrap();
    let as_coordinator = reqwest::Client::builder()
        .use_preconfigured_tls(coordinator_cert)
        .build()
        .unwrap();
    let r = as_coordinator
        .post(format!("{ode_url}/v1/query"))
        .bearer_auth(&grant)
        .json(&serde_json::json!({ "sql": COUNT, "loss": 0.05 }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("another site"),
        "{body}"
    );

    // Taken to the coordinator: not a user's token, refused.
    let (status, body) = post(
        &format!("{}/v1/query", net.coordinator.url()),
        Some(&grant),
        &serde_json::json!({ "sql": COUNT, "loss": 0.05 }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated")),
        "{body}"
    );

    // At Naestved's real node it is taken once, as the coordinator's word
    // for alice; a second time it is refused.
    let state = server::state(&nae_config).unwrap();
    let again = |grant: String| LinkRequest {
        grant: Some(grant),
        ..captured.clone()
    };
    let r = bonebank_node::link::answer(&state, again(grant.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = bonebank_node::link::answer(&state, again(grant)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap().contains("used before"),
        "{}",
        r.body
    );
}
