//! `bonebank-node doctor`: a healthy node passes every check; each
//! problem an operator can have is one FAIL line that says what to do, and
//! the command exits non-zero.

use std::sync::Arc;
use std::time::Duration;

use bonebank_dev::devidp::DevProvider;
use bonebank_dev::pki::{Ca, PkiDir};
use bonebank_node::doctor::{self, Finding};
use bonebank_node::privacy::OpenDpNoise;
use bonebank_schemas::{Role, SiteId};
use bonebank_service::tls::NodeTls;

use crate::common::{TestSite, caller, node_command, pure, sql};

fn finding<'a>(all: &'a [Finding], check: &str) -> &'a Finding {
    all.iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check} check in {all:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_node_passes_and_each_problem_says_what_to_do() {
    let idp = DevProvider::start(
        "127.0.0.1:0".parse().unwrap(),
        "bonebank",
        Vec::new(),
        Duration::from_secs(300),
    )
    .unwrap();
    let mut site = TestSite::new("DK-ODE", 60, pure());
    site.config.oidc.issuer = idp.issuer().to_owned();
    let service = site.service(Arc::new(OpenDpNoise));
    service
        .run(
            &caller("ana", "p1", Role::Researcher),
            &sql("SELECT COUNT(*) FROM samples", 0.1),
        )
        .await
        .unwrap();
    drop(service);

    let all = doctor::run(&site.config).await;
    assert!(all.iter().all(|f| f.ok), "{all:#?}");
    let checks: Vec<&str> = all.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(
        checks,
        [
            "config",
            "certificates",
            "identity provider",
            "disk (data)",
            "disk (state)",
            "data",
            "state"
        ]
    );
    assert!(
        finding(&all, "identity provider")
            .says
            .contains("signing key")
    );
    assert!(finding(&all, "state").says.contains("audit log of"));

    // Certificates: a good one, then one that ends in 10 days.
    let pki = PkiDir::new(site.tmp.path().join("pki"));
    let ca = Ca::generate("test CA").unwrap();
    let dk_ode = SiteId::parse("DK-ODE").unwrap();
    pki.init_with(&ca, std::slice::from_ref(&dk_ode)).unwrap();
    let mut tls_site = site.config.clone();
    tls_site.tls = Some(NodeTls {
        certificate: pki.node_cert(&dk_ode),
        key: pki.node_key(&dk_ode),
        client_ca: pki.ca_cert(),
        allowed_clients: vec!["coordinator".into()],
        coordinator_grant_key: pki.grant_public_key(),
    });
    let all = doctor::run(&tls_site).await;
    let cert = finding(&all, "certificate");
    assert!(
        cert.ok && cert.says.contains("valid until 2035-01-01"),
        "{cert}"
    );
    assert!(finding(&all, "trusted CA").ok && finding(&all, "grant key").ok);
    let soon = ca
        .issue_node_until(
            &["dk-ode.example".into()],
            time::OffsetDateTime::now_utc() + time::Duration::days(10),
        )
        .unwrap();
    bonebank_dev::pki::write(&pki.node_cert(&dk_ode), &soon.cert_pem, false).unwrap();
    bonebank_dev::pki::write(&pki.node_key(&dk_ode), &soon.key_pem, true).unwrap();
    let cert = doctor::run(&tls_site)
        .await
        .into_iter()
        .find(|f| f.check == "certificate")
        .unwrap();
    assert!(!cert.ok && cert.says.contains("renew it now"), "{cert}");

    // Through the binary: a provider that does not answer, a damaged table
    // file, and state from a later bonebank; each one line, exit non-zero.
    let config = site.write_config(""); // its [oidc] names a closed port
    let samples = std::fs::read_dir(site.config.data_dir.join("tables"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("samples-")
        })
        .unwrap();
    let mut bytes = std::fs::read(&samples).unwrap();
    bytes.push(0);
    std::fs::write(&samples, bytes).unwrap();
    rusqlite::Connection::open(site.config.state_db())
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let out = node_command(&config, &["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 3, "{stdout}");
    assert!(
        fails[0].starts_with("FAIL identity provider:") && fails[0].contains("check oidc.issuer"),
        "{stdout}"
    );
    assert!(
        fails[1].starts_with("FAIL data:") && fails[1].contains("does not match its checksum"),
        "{stdout}"
    );
    assert!(
        fails[2].starts_with("FAIL state:") && fails[2].contains("state version 99"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 of 7 checks failed"));

    // A config that does not load: said first, nothing else checked.
    std::fs::write(&config, "site_id = \"XX\"\n").unwrap();
    let out = node_command(&config, &["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && stdout.starts_with("FAIL config:"),
        "{stdout}"
    );
}
