//! The docs match the code: the README lists every column and code, and the
//! example export imports cleanly.

use std::path::Path;

use bonebank_node::dataset::DataDir;
use bonebank_node::import;
use bonebank_schemas::{ColumnKind, Table, ValueSet};

/// The repository, read when the test runs (cargo sets the variable), not
/// baked in at build time: a shared build cache may hold a binary built in
/// another checkout.
fn repo() -> std::path::PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .parent()
        .unwrap()
        .to_owned()
}

#[test]
fn readme_lists_every_column_and_code() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for table in Table::ALL {
        assert!(
            readme.contains(&format!("**{table}**")),
            "README has no section for {table}"
        );
        for column in table.columns() {
            assert!(
                readme.contains(&format!("`{}`", column.name)),
                "README misses column {}",
                column.name
            );
            if let ColumnKind::Code { codes, .. } = column.kind {
                for code in codes {
                    assert!(
                        readme.contains(&format!("`{code}`")),
                        "README misses code {code} of {}",
                        column.name
                    );
                }
            }
        }
    }
}

#[test]
fn example_export_imports() {
    let export = repo().join("examples/export");
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("dk-ode"));
    let files: Vec<_> = Table::ALL
        .iter()
        .map(|t| (*t, export.join(format!("{t}.csv"))))
        .collect();
    let report = import::import(&dir, &files).unwrap();
    assert_eq!(report.rows[&Table::Donors], 12);
}

#[test]
fn example_node_configs_load() {
    let dir = repo().join("examples/nodes");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let config = bonebank_node::config::NodeConfig::load(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            path.file_stem().unwrap().to_string_lossy(),
            config.site_id.as_str()
        );
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn the_outbound_example_fits_together() {
    let coordinator = bonebank_coordinator::config::CoordinatorConfig::load(
        &repo().join("examples/outbound/coordinator.toml"),
    )
    .unwrap();
    let node =
        bonebank_node::config::NodeConfig::load(&repo().join("examples/outbound/DK-NAE.toml"))
            .unwrap();
    let outbound = node.outbound.as_ref().expect("the node connects out");
    let link = coordinator
        .link
        .as_ref()
        .expect("the coordinator has a link listener");
    assert_eq!(outbound.coordinator, format!("https://{}", link.listen));
    assert_eq!(
        outbound.server_name.as_deref(),
        Some(bonebank_dev::pki::COORDINATOR_NAME)
    );
    let site = coordinator
        .sites
        .iter()
        .find(|s| s.id == node.site_id)
        .unwrap();
    assert_eq!(site.url, None, "the site connects out");
    assert_eq!(
        site.server_name.as_deref(),
        Some(bonebank_dev::pki::node_name(&node.site_id).as_str())
    );
    let tls = node.tls.as_ref().unwrap();
    assert_eq!(tls.client_ca, coordinator.tls.ca);
    // Everything but the connection is the same site as examples/nodes/.
    let inbound =
        bonebank_node::config::NodeConfig::load(&repo().join("examples/nodes/DK-NAE.toml"))
            .unwrap();
    assert_eq!(node.policy, inbound.policy);
    assert_eq!(node.tls, inbound.tls);
}

#[test]
fn example_coordinator_config_matches_the_node_configs() {
    use bonebank_dev::pki::{self, PkiDir};
    let config = bonebank_coordinator::config::CoordinatorConfig::load(
        &repo().join("examples/coordinator.toml"),
    )
    .unwrap();
    // Every file comes from one development PKI, as `pki init` lays it out.
    let pki = PkiDir::new(config.tls.ca.parent().unwrap());
    assert_eq!(config.tls.certificate, pki.coordinator_cert());
    assert_eq!(config.tls.key, pki.coordinator_key());
    assert_eq!(config.tls.grant_key, pki.grant_key());
    assert_eq!(config.sites.len(), 3);
    for site in &config.sites {
        let node = bonebank_node::config::NodeConfig::load(
            &repo().join(format!("examples/nodes/{}.toml", site.id)),
        )
        .unwrap();
        assert_eq!(site.url, Some(format!("https://{}", node.listen)));
        assert_eq!(
            site.server_name.as_deref(),
            Some(pki::node_name(&site.id).as_str())
        );
        let tls = node.tls.expect("example nodes use mutual TLS");
        assert_eq!(tls.certificate, pki.node_cert(&site.id));
        assert_eq!(tls.key, pki.node_key(&site.id));
        assert_eq!(tls.coordinator_grant_key, pki.grant_public_key());
        assert_eq!(tls.client_ca, pki.ca_cert());
        assert_eq!(tls.allowed_clients, vec![pki::COORDINATOR_NAME.to_owned()]);
        assert_eq!(
            node.oidc, config.oidc,
            "node and coordinator trust one provider"
        );
    }
}

#[test]
fn example_queries_pass_the_checks() {
    use bonebank_node::service::QueryService;
    use bonebank_query::check;
    use bonebank_schemas::wire::QueryRequest;

    let policy = bonebank_query::policy::Policy::default();
    let site = bonebank_schemas::SiteId::parse("DE-LUE").unwrap();
    let dir = repo().join("examples/queries");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let request = QueryRequest {
            sql: Some(text),
            query: None,
            loss: None,
            purpose: None,
        };
        let query =
            QueryService::parse(&request).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(
            &query,
            None,
            bonebank_schemas::Role::Researcher,
            &site,
            &policy,
        )
        .unwrap_or_else(|(e, _)| panic!("{}: {e} ({})", path.display(), e.hint));
        n += 1;
    }
    assert!(n >= 4);
}

#[test]
fn example_identity_provider_configs_are_valid() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Identity {
        oidc: bonebank_service::oidc::OidcSettings,
        login: bonebank_coordinator::config::LoginConfig,
    }
    for name in ["keycloak", "entra"] {
        let path = repo().join(format!("examples/oidc/{name}.toml"));
        use figment::providers::Format as _;
        let identity: Identity = figment::Figment::new()
            .merge(figment::providers::Toml::file(&path))
            .extract()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        identity.oidc.validate().unwrap();
        assert!(identity.oidc.issuer.starts_with("https://"), "{name}");
        assert!(identity.login.public_url.unwrap().starts_with("https://"));
        assert!(!identity.login.development, "{name} is a real provider");
    }
}
