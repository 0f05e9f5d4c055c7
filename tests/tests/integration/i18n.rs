//! Every string of the pages comes from the language catalogues: each key
//! the scripts and pages name is in English, German and Danish alike.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn catalogue(lang: &str) -> serde_json::Map<String, serde_json::Value> {
    let path = root().join(format!("service/web/i18n/{lang}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The keys a page or script names: `t('key')`, `t(\`key\`)` without
/// placeholders, `data-i18n="key"` and `data-i18n-attr="attr:key"`.
fn keys_named(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut take = |start: &str, ends: &[char]| {
        for (i, _) in text.match_indices(start) {
            // `t(` itself, not the end of `set(` or `createElement(`.
            let before = text[..i].chars().next_back();
            if start.starts_with('t')
                && before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
            {
                continue;
            }
            let rest = &text[i + start.len()..];
            if let Some(end) = rest.find(ends) {
                let key = &rest[..end];
                if !key.contains('$') && !key.is_empty() {
                    keys.insert(key.to_owned());
                }
            }
        }
    };
    take("t('", &['\'']);
    take("t(`", &['`']);
    take("data-i18n=\"", &['"']);
    for (i, _) in text.match_indices("data-i18n-attr=\"") {
        let rest = &text[i + 16..];
        let attrs = &rest[..rest.find('"').unwrap()];
        for pair in attrs.split(',') {
            keys.insert(pair.split(':').nth(1).unwrap().trim().to_owned());
        }
    }
    keys
}

#[test]
fn every_key_the_pages_name_is_in_every_catalogue() {
    let mut named = BTreeSet::new();
    for dir in ["service/web", "coordinator/web", "node/web"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("js" | "html")
            ) {
                named.extend(keys_named(&std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    assert!(named.len() > 100, "{} keys found", named.len());
    for lang in ["en", "de", "da"] {
        let have = catalogue(lang);
        let missing: Vec<_> = named.iter().filter(|k| !have.contains_key(*k)).collect();
        assert!(missing.is_empty(), "{lang}: no text for {missing:?}");
    }
}

#[test]
fn status_and_role_names_cover_the_wire() {
    let en = catalogue("en");
    for status in [
        "answered",
        "waiting_for_approval",
        "refused",
        "budget_exhausted",
        "unreachable",
        "timed_out",
        "failed",
        "busy",
    ] {
        let json = serde_json::to_value(
            serde_json::from_value::<bonebank_schemas::wire::SiteStatus>(status.into()).unwrap(),
        )
        .unwrap();
        assert_eq!(json, status);
        assert!(en.contains_key(&format!("status.{status}")), "{status}");
    }
    for role in ["researcher", "industry", "steward"] {
        assert!(en.contains_key(&format!("role.{role}")), "{role}");
    }
}
