//! Merging the sites' answers: per key, the total of the sites' noisy values
//! (unclamped), clamped at zero only after summing, with a 95% interval from
//! the convolution of the sites' noise distributions.

use bonebank_schemas::wire::{
    FederatedResult, Mechanism, QueryResult, SiteAnswer, SiteStatus, TotalRow, TotalValue,
};
use bonebank_schemas::{FeasibilityQuery, Measure};

use crate::interval;

/// Coverage of the totals' intervals.
pub const COVERAGE: f64 = 0.95;

/// Puts the sites' answers together. Answers that do not fit the query
/// (other measures) are marked failed and left out of the total.
pub fn merge(
    query: &FeasibilityQuery,
    mut sites: Vec<SiteAnswer>,
    elapsed_ms: u64,
) -> FederatedResult {
    let labels: Vec<String> = query.measures.iter().map(Measure::label).collect();
    for site in &mut sites {
        if let Some(r) = &site.result {
            let theirs: Vec<&str> = r.measures.iter().map(|m| m.label.as_str()).collect();
            if theirs != labels.iter().map(String::as_str).collect::<Vec<_>>()
                || r.dimensions != query.group_by
            {
                site.status = SiteStatus::Failed;
                site.message = Some("the site's answer does not match the query".into());
                site.result = None;
            }
        }
    }
    let answered: Vec<&QueryResult> = sites
        .iter()
        .filter(|s| s.status == SiteStatus::Answered)
        .filter_map(|s| s.result.as_ref())
        .collect();
    let total = totals(query, &answered);
    let no_total = answered
        .is_empty()
        .then(|| "no site answered, so there is no total; each site's status says why".to_owned());
    let missing = sites
        .iter()
        .filter(|s| s.status != SiteStatus::Answered)
        .map(|s| s.site_id.clone())
        .collect();
    FederatedResult {
        id: None,
        query: query.clone(),
        dimensions: query.group_by.clone(),
        measures: labels,
        sites,
        total,
        no_total,
        missing,
        elapsed_ms,
    }
}

/// The total per key, keys in the order the sites list them (a key one site
/// lacks, like another site's `site_id`, adds nothing from that site).
pub fn totals(query: &FeasibilityQuery, answered: &[&QueryResult]) -> Vec<TotalRow> {
    let mut keys: Vec<Vec<String>> = Vec::new();
    for r in answered {
        for row in &r.rows {
            if !keys.contains(&row.key) {
                keys.push(row.key.clone());
            }
        }
    }
    if keys.is_empty() && query.group_by.is_empty() {
        keys.push(Vec::new());
    }
    // The interval depends only on the sites' noise, the same for every key
    // of a measure: worked out once per set of scales (a convolution).
    let mut halfwidths: Vec<(Vec<(Mechanism, f64)>, f64)> = Vec::new();
    let mut halfwidth =
        |scales: &[(Mechanism, f64)]| match halfwidths.iter().find(|(s, _)| s == scales) {
            Some((_, t)) => *t,
            None => {
                let t = interval::halfwidth(scales, COVERAGE);
                halfwidths.push((scales.to_vec(), t));
                t
            }
        };
    keys.into_iter()
        .map(|key| {
            let values = query
                .measures
                .iter()
                .enumerate()
                .map(|(m, measure)| {
                    if matches!(measure, Measure::Avg { .. }) {
                        return None;
                    }
                    let mut sum = 0.0;
                    let mut scales = Vec::new();
                    let mut rounding = 0.0;
                    for r in answered {
                        if let Some(row) = r.rows.iter().find(|row| row.key == key) {
                            sum += row.values[m].value;
                            scales.push((r.measures[m].mechanism, r.measures[m].scale));
                            // A rounded value is off by at most half a step.
                            rounding += (r.measures[m].rounded_to.max(1) / 2) as f64;
                        }
                    }
                    // No site's value: no number, rather than an exact zero.
                    if scales.is_empty() {
                        return None;
                    }
                    let mut total = total_with(sum, halfwidth(&scales), scales.len());
                    total.interval = [
                        (total.interval[0] - rounding).max(0.0),
                        (total.interval[1] + rounding).max(0.0),
                    ];
                    Some(total)
                })
                .collect();
            TotalRow { key, values }
        })
        .collect()
}

/// A total from the sum of noisy values and the sites' noise scales.
pub fn total_value(sum: f64, scales: &[(Mechanism, f64)]) -> TotalValue {
    total_with(sum, interval::halfwidth(scales, COVERAGE), scales.len())
}

/// A total from the sum of `sites` noisy values whose noise's 95%
/// half-width is `t`.
fn total_with(sum: f64, t: f64, sites: usize) -> TotalValue {
    TotalValue {
        value: sum.max(0.0),
        unclamped: sum,
        // Cut at zero, never to a point: a true count is not below zero,
        // and an exact zero is never what the noise says.
        interval: [(sum - t).max(0.0), (sum + t).max(t)],
        sites,
    }
}

#[cfg(test)]
mod tests {
    use bonebank_schemas::wire::{Accounting, MeasureNoise, NoisyValue, ResultRow};

    use super::*;

    fn site(value: f64, rounded_to: i64) -> QueryResult {
        QueryResult {
            site_id: "DE-LUE".into(),
            dataset_version: "v".into(),
            query: FeasibilityQuery {
                measures: vec![Measure::Samples],
                filter: Default::default(),
                group_by: vec![],
            },
            accounting: Accounting::Pure,
            charged: 0.1,
            loss: 0.1,
            approx_dp: None,
            remembered: false,
            measures: vec![MeasureNoise {
                measure: Measure::Samples,
                label: "samples".into(),
                mechanism: Mechanism::DiscreteLaplace,
                sensitivity: 5.0,
                scale: 50.0,
                loss: 0.1,
                rounded_to,
            }],
            dimensions: vec![],
            rows: vec![ResultRow {
                key: vec![],
                values: vec![NoisyValue {
                    value,
                    interval: [0.0, 0.0],
                }],
            }],
            source: Default::default(),
            steward_note: None,
        }
    }

    #[test]
    fn totals_sum_unclamped_values_and_widen_for_rounding() {
        let q = site(0.0, 1).query;
        let (a, b) = (site(-40.0, 1), site(1000.0, 1));
        let plain = totals(&q, &[&a, &b])[0].values[0].clone().unwrap();
        assert_eq!(plain.unclamped, 960.0);
        assert_eq!(plain.value, 960.0);
        let (a, b) = (site(-40.0, 10), site(1000.0, 10));
        let rounded = totals(&q, &[&a, &b])[0].values[0].clone().unwrap();
        assert_eq!(rounded.interval[0], plain.interval[0] - 10.0);
        assert_eq!(rounded.interval[1], plain.interval[1] + 10.0);
        // Clamped at zero only after summing.
        let (a, b) = (site(-400.0, 1), site(100.0, 1));
        let t = totals(&q, &[&a, &b])[0].values[0].clone().unwrap();
        assert_eq!((t.unclamped, t.value), (-300.0, 0.0));
    }

    /// No site answered: no number and the reason, never an exact zero
    /// with a zero-width interval.
    #[test]
    fn no_answer_is_no_number() {
        let q = site(0.0, 1).query;
        let none = totals(&q, &[]);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].values, vec![None]);
        let merged = merge(
            &q,
            vec![SiteAnswer {
                site_id: "DE-LUE".into(),
                status: SiteStatus::BudgetExhausted,
                message: Some("budget used up".into()),
                hint: None,
                ticket: None,
                result: None,
            }],
            3,
        );
        assert_eq!(merged.total[0].values, vec![None]);
        assert!(
            merged
                .no_total
                .as_deref()
                .unwrap()
                .contains("no site answered")
        );
        let json = serde_json::to_value(&merged).unwrap();
        assert!(json["total"][0]["values"][0].is_null(), "{json}");
        // With an answer there is a total and no reason.
        let a = site(12.0, 1);
        let answered = merge(
            &q,
            vec![SiteAnswer {
                site_id: "DE-LUE".into(),
                status: SiteStatus::Answered,
                message: None,
                hint: None,
                ticket: None,
                result: Some(a),
            }],
            3,
        );
        assert!(answered.no_total.is_none());
        assert_eq!(
            answered.total[0].values[0].as_ref().unwrap().unclamped,
            12.0
        );
    }
}
