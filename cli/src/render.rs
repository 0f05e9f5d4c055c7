//! Federated answers as text tables for people.

use std::fmt::Write as _;

use bonebank_schemas::wire::{
    FederatedPreview, FederatedResult, NoisyValue, SiteListing, SiteStatus, TotalValue,
};

/// A number as people read it: whole numbers without decimals, others with one.
fn number(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.1}")
    }
}

/// A noisy value as shown to people (post-processing, free of privacy
/// cost): a count below zero is shown as 0 with a `*` (the unclamped value
/// still goes into the total), and the interval is cut at zero but never to
/// a point: its upper end is at least the noise's half-width, since an
/// exact zero is the one thing differential privacy never releases.
pub fn shown(value: f64, interval: [f64; 2]) -> String {
    let half = (interval[1] - interval[0]) / 2.0;
    let low = interval[0].max(0.0);
    let high = interval[1].max(low + half);
    format!(
        "{}{} [{}, {}]",
        number(value.max(0.0)),
        if value < 0.0 { "*" } else { "" },
        number(low),
        number(high)
    )
}

fn noisy(v: &NoisyValue) -> String {
    shown(v.value, v.interval)
}

fn total(v: &Option<TotalValue>) -> String {
    match v {
        Some(v) => shown(v.unclamped, v.interval),
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

/// A preview: per site the loss the question would cost and the ± of each
/// measure at 95%, then the ± of each total.
pub fn preview(p: &FederatedPreview) -> String {
    let mut out = String::new();
    writeln!(out, "{}", p.query.to_sql()).unwrap();
    writeln!(out).unwrap();
    let mut rows = vec![{
        let mut h = vec!["site".to_owned(), "would cost".to_owned()];
        h.extend(p.query.measures.iter().map(|m| format!("{} ±", m.label())));
        h
    }];
    for s in &p.sites {
        let mut row = vec![s.site_id.clone()];
        match &s.preview {
            Some(pv) => {
                let mut cost = format!("{} {}", pv.accounting.symbol(), number_eps(pv.loss));
                if let Some(a) = pv.approx_dp {
                    write!(cost, " (ε {}, δ {:e})", number_eps(a.epsilon), a.delta).unwrap();
                }
                if pv.needs_approval {
                    cost.push_str(", needs a steward's approval");
                }
                row.push(cost);
                row.extend(pv.measures.iter().map(|m| match m.halfwidth {
                    Some(h) => format!("±{}", number(h)),
                    None => "depends on the count".into(),
                }));
            }
            None => {
                let mut d = format!(
                    "{}: {}",
                    s.status.as_str(),
                    s.message.clone().unwrap_or_default()
                );
                if let Some(h) = &s.hint {
                    write!(d, " (hint: {h})").unwrap();
                }
                row.push(d);
            }
        }
        rows.push(row);
    }
    let mut total = vec!["total".to_owned(), String::new()];
    total.extend(p.total_halfwidth.iter().map(|h| match h {
        Some(h) => format!("±{}", number(*h)),
        None => "-".into(),
    }));
    rows.push(total);
    out.push_str(&table(&rows));
    writeln!(
        out,
        "\nA preview reads no data and spends nothing; ± is the 95% noise interval of every cell."
    )
    .unwrap();
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
                    write!(d, ", alone ({}, {:e})-DP", number_eps(a.epsilon), a.delta).unwrap();
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
    if let Some(why) = &r.no_total {
        writeln!(out, "{why}").unwrap();
    } else if !r.missing.is_empty() {
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
    if out.contains("* [") {
        writeln!(
            out,
            "* the noisy value was below zero and is shown as 0; the total adds the value as released."
        )
        .unwrap();
    }
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
        // A site that connects out says so, and when it was last heard from.
        let status = match (s.connection.as_str(), &s.last_seen) {
            ("outbound", Some(seen)) => format!("{} (connects out; seen {seen})", s.status),
            ("outbound", None) => format!("{} (connects out)", s.status),
            _ => s.status.clone(),
        };
        rows.push(vec![s.site_id.clone(), status, dataset, eps, dims, bounds]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_below_zero_show_as_zero_and_never_as_an_exact_zero() {
        // As DE-LUE once printed DNA: −472 samples, interval ±228.
        assert_eq!(shown(-472.0, [-700.0, -244.0]), "0* [0, 228]");
        assert_eq!(shown(-3.0, [-12.0, 6.0]), "0* [0, 9]");
        assert_eq!(shown(0.0, [-9.0, 9.0]), "0 [0, 9]");
        assert_eq!(shown(41.0, [32.0, 50.0]), "41 [32, 50]");
        assert!(!shown(-1e6, [-1e6 - 5.0, -1e6 + 5.0]).contains("[0, 0]"));
    }

    #[test]
    fn a_clamped_total_keeps_an_interval_and_the_table_says_so() {
        // As the coordinator merges a total of -40 ± 20.
        let t = TotalValue {
            value: 0.0,
            unclamped: -40.0,
            interval: [0.0, 20.0],
            sites: 1,
        };
        assert!(total(&Some(t)).starts_with("0* [0, "));
    }
}
