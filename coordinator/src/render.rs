//! Federated answers as text tables for people.

use std::fmt::Write as _;

use bonebank_schemas::wire::{FederatedResult, NoisyValue, SiteListing, SiteStatus, TotalValue};

/// A number as people read it: whole numbers without decimals, others with one.
fn number(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.1}")
    }
}

fn noisy(v: &NoisyValue) -> String {
    format!(
        "{} [{}, {}]",
        number(v.value),
        number(v.interval[0]),
        number(v.interval[1])
    )
}

fn total(v: &Option<TotalValue>) -> String {
    match v {
        Some(v) => format!(
            "{} [{}, {}]",
            number(v.value),
            number(v.interval[0]),
            number(v.interval[1])
        ),
        None => "-".into(),
    }
}

/// Lays out rows of cells in aligned columns.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<width$}", width = widths[c]))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).unwrap();
    }
    out
}

/// The answer: the query, each site's status, then one table of every
/// site's values and the total, each with its 95% interval.
pub fn result(r: &FederatedResult) -> String {
    let mut out = String::new();
    writeln!(out, "{}", r.query.to_sql()).unwrap();
    writeln!(out).unwrap();
    let mut statuses = vec![vec!["site".to_owned(), "status".to_owned(), "".to_owned()]];
    for s in &r.sites {
        let detail = match (&s.status, &s.result) {
            (SiteStatus::Answered, Some(res)) if res.remembered => {
                let symbol = res.accounting.symbol();
                format!(
                    "remembered release, nothing charged (first cost {symbol} {})",
                    number_eps(res.loss)
                )
            }
            (SiteStatus::Answered, Some(res)) => {
                let mut d = format!(
                    "{} {} charged",
                    res.accounting.symbol(),
                    number_eps(res.charged)
                );
                if let Some(a) = res.approx_dp {
                    write!(d, ", alone ({}, {})-DP", number_eps(a.epsilon), a.delta).unwrap();
                }
                d
            }
            _ => {
                let mut d = s.message.clone().unwrap_or_default();
                if let Some(h) = &s.hint {
                    write!(d, " (hint: {h})").unwrap();
                }
                d
            }
        };
        statuses.push(vec![
            s.site_id.clone(),
            s.status.as_str().to_owned(),
            detail,
        ]);
    }
    out.push_str(&table(&statuses));
    if !r.missing.is_empty() {
        writeln!(out, "not in the total: {}", r.missing.join(", ")).unwrap();
    }
    if let Some(id) = r.id
        && r.sites
            .iter()
            .any(|s| s.status == SiteStatus::WaitingForApproval)
    {
        writeln!(
            out,
            "look again once the stewards have decided: bonebank look {id}"
        )
        .unwrap();
    }
    writeln!(out).unwrap();

    let mut rows = vec![{
        let mut h = vec!["site".to_owned()];
        h.extend(r.dimensions.iter().cloned());
        h.extend(r.measures.iter().cloned());
        h
    }];
    for s in &r.sites {
        if let Some(res) = &s.result {
            for row in &res.rows {
                let mut cells = vec![s.site_id.clone()];
                cells.extend(row.key.iter().cloned());
                cells.extend(row.values.iter().map(noisy));
                rows.push(cells);
            }
        }
    }
    for row in &r.total {
        let mut cells = vec!["total".to_owned()];
        cells.extend(row.key.iter().cloned());
        cells.extend(row.values.iter().map(total));
        rows.push(cells);
    }
    out.push_str(&table(&rows));
    writeln!(
        out,
        "\nValues are noisy (differential privacy); brackets hold 95% intervals. Answered in {} ms.",
        r.elapsed_ms
    )
    .unwrap();
    out
}

fn number_eps(e: f64) -> String {
    let s = format!("{e:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The network's sites.
pub fn sites(list: &[SiteListing]) -> String {
    let mut rows = vec![vec![
        "site".to_owned(),
        "status".to_owned(),
        "dataset".to_owned(),
        "ε per query".to_owned(),
        "dimensions".to_owned(),
        "bounds (S, G)".to_owned(),
    ]];
    for s in list {
        let (dataset, eps, dims, bounds) = match &s.description {
            Some(d) => (
                d.dataset_version
                    .clone()
                    .unwrap_or_else(|| "none yet".into()),
                format!(
                    "{} {}–{} (default {})",
                    d.accounting.symbol(),
                    number_eps(d.loss.min),
                    number_eps(d.loss.max),
                    number_eps(d.loss.default)
                ),
                format!("up to {}", d.max_dimensions),
                format!("{}, {}", d.max_samples_per_donor, d.max_groups_per_donor),
            ),
            None => Default::default(),
        };
        rows.push(vec![
            s.site_id.clone(),
            s.status.clone(),
            dataset,
            eps,
            dims,
            bounds,
        ]);
    }
    table(&rows)
}
