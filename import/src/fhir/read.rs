//! The resources of FHIR files: Bundles (collection or transaction) in
//! JSON, or one resource per line (NDJSON), each with where it came from.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde_json::Value;

use crate::{Problem, Problems, Result};

/// A resource and where it came from.
pub(super) struct Found {
    pub resource: Value,
    /// The file, and the entry or line in it.
    pub place: String,
    /// The entry's full URL, which other entries may refer to it by.
    pub full_url: Option<String>,
}

/// The resources of the input files, and problems with the files
/// themselves.
pub(super) fn read_resources(files: &[PathBuf], problems: &mut Problems) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for path in files {
        let name = crate::problems::printable(&path.display().to_string());
        let file = crate::read::open_regular(path, &name)?;
        let mut problem = |place: String, message: String| {
            problems.add(|| Problem {
                file: name.clone(),
                row: None,
                column: (!place.is_empty()).then_some(place),
                value: None,
                message,
            })
        };
        let ndjson = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ndjson"));
        let documents: Vec<(String, std::result::Result<Value, String>)> = if ndjson {
            BufReader::new(file)
                .lines()
                .enumerate()
                .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(|(i, line)| {
                    let parsed = line
                        .map_err(|e| e.to_string())
                        .and_then(|l| serde_json::from_str(&l).map_err(|e| e.to_string()));
                    (format!("line {}", i + 1), parsed)
                })
                .collect()
        } else {
            let parsed = serde_json::from_reader(BufReader::new(file)).map_err(|e| e.to_string());
            vec![(String::new(), parsed)]
        };
        for (place, document) in documents {
            let document = match document {
                Ok(d) => d,
                Err(e) => {
                    problem(place, format!("not JSON: {e}"));
                    continue;
                }
            };
            match document.get("resourceType").and_then(Value::as_str) {
                Some("Bundle") => {
                    let kind = document.get("type").and_then(Value::as_str).unwrap_or("");
                    if !["collection", "transaction"].contains(&kind) {
                        problem(
                            join(&place, "Bundle.type"),
                            format!("a {kind:?} Bundle; give a collection or transaction Bundle"),
                        );
                        continue;
                    }
                    let entries = document.get("entry").and_then(Value::as_array);
                    for (i, entry) in entries.into_iter().flatten().enumerate() {
                        let full_url = entry
                            .get("fullUrl")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        match entry.get("resource") {
                            Some(resource) => {
                                let mut resource = resource.clone();
                                // A transaction may create resources that
                                // have only their urn:uuid so far.
                                if resource.get("id").is_none()
                                    && let Some(uuid) = full_url
                                        .as_deref()
                                        .and_then(|u| u.strip_prefix("urn:uuid:"))
                                {
                                    resource["id"] = Value::from(uuid);
                                }
                                found.push(Found {
                                    resource,
                                    place: format!(
                                        "{name}, {}",
                                        join(&place, &format!("Bundle.entry[{i}]"))
                                    ),
                                    full_url,
                                })
                            }
                            None => problem(
                                join(&place, &format!("Bundle.entry[{i}]")),
                                "an entry without a resource".into(),
                            ),
                        }
                    }
                }
                Some(_) => found.push(Found {
                    resource: document,
                    place: format!("{name}, {place}"),
                    full_url: None,
                }),
                None => problem(place, "not a FHIR resource (no resourceType)".into()),
            }
        }
    }
    Ok(found)
}

/// A place inside a file: a line, and an element in it.
fn join(line: &str, element: &str) -> String {
    if line.is_empty() {
        element.to_owned()
    } else {
        format!("{line}: {element}")
    }
}
