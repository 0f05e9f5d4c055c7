//! Config files: TOML, every key overridable by an environment variable, and
//! a key that does not fit reported with its line.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use crate::{Error, Result};

/// Reads a TOML config file with every key overridable by an environment
/// variable `<prefix><KEY>` (nested keys joined with `__`). A key that does
/// not fit is reported with its line in the file.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path, env_prefix: &str) -> Result<T> {
    if !path.exists() {
        return Err(Error::Usage(format!(
            "config file {} does not exist",
            path.display()
        )));
    }
    Figment::new()
        .merge(Toml::file(path))
        .merge(Env::prefixed(env_prefix).split("__"))
        .extract()
        .map_err(|e: figment::Error| {
            let line = key_line(
                &std::fs::read_to_string(path).unwrap_or_default(),
                &e.path.join("."),
            )
            .map_or(String::new(), |l| format!(" line {l}"));
            Error::Usage(format!("config {}{line}: {e}", path.display()))
        })
}

/// A secret kept in a file of its own (a client secret), without the
/// surrounding whitespace; none without a file.
pub fn read_secret(path: Option<&Path>) -> Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .map_err(Error::io(p))
    })
    .transpose()
}

/// The line (1-based) that sets a dotted key such as
/// `policy.roles.industry.force_filter`: the `key = …` line under its table
/// (`[policy.roles.industry]`), or else the nearest enclosing table or key the
/// file has (the table of a key left out, a dotted key set inline).
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    let mut path: Vec<&str> = key.split('.').filter(|k| !k.is_empty()).collect();
    while !path.is_empty() {
        let wanted = path.join(".");
        let mut table = String::new();
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.starts_with('[') {
                table = l.trim_matches(['[', ']']).trim().to_owned();
                if table == wanted {
                    return Some(i + 1);
                }
            } else if let Some((k, _)) = l.split_once('=') {
                let k = k.trim().trim_matches('"');
                let full = if table.is_empty() {
                    k.to_owned()
                } else {
                    format!("{table}.{k}")
                };
                if full == wanted {
                    return Some(i + 1);
                }
            }
        }
        path.pop();
    }
    None
}
