//! `doctor` on a running network with real certificates: the coordinator
//! reaches every node over mutual TLS and compares clocks, each node's
//! certificate and trust files check out, and a node that stops is one
//! FAIL line at the coordinator.

use bonebank_dev::local::{self, LocalNetwork};
use bonebank_query::policy::Policy;
use bonebank_service::tls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_network_passes_and_a_stopped_node_is_named() {
    tls::install_default_provider();
    let tmp = tempfile::tempdir().unwrap();
    let ids = local::demo_sites();
    for (i, s) in ids.iter().enumerate() {
        local::generate_site(tmp.path(), s, 100, 90 + i as u64).unwrap();
    }
    let mut net = LocalNetwork::start(tmp.path(), &ids, &Policy::default(), 10_000).unwrap();

    let all = bonebank_coordinator::doctor::run(&net.coordinator_config).await;
    assert!(all.iter().all(|f| f.ok), "{all:#?}");
    for id in &ids {
        let site = all
            .iter()
            .find(|f| f.check == format!("site {id}"))
            .unwrap();
        assert!(site.says.contains("answers over mutual TLS"), "{site}");
        assert!(
            all.iter()
                .any(|f| f.check == format!("clock ({id})") && f.ok)
        );
    }
    for (config, _) in &net.nodes {
        let node = bonebank_node::doctor::run(config).await;
        assert!(node.iter().all(|f| f.ok), "{node:#?}");
        let cert = node.iter().find(|f| f.check == "certificate").unwrap();
        assert!(cert.says.contains("matching its key"), "{cert}");
    }

    let (config, node) = net.nodes.remove(1);
    node.stop().await;
    let all = bonebank_coordinator::doctor::run(&net.coordinator_config).await;
    let fails: Vec<_> = all.iter().filter(|f| !f.ok).collect();
    assert_eq!(fails.len(), 1, "{all:#?}");
    assert_eq!(fails[0].check, format!("site {}", config.site_id));
    assert!(fails[0].says.contains("that its node runs"), "{}", fails[0]);
}
