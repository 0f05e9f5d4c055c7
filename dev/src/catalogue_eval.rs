//! `bonebank-dev eval --catalogue`: how much the catalogue answers, how
//! precise its answers are, and whether their intervals cover the TRUE
//! counts. Each demo site measures its catalogue afresh many times (a new
//! state database each time, so each is a new release with new noise and a
//! new choice of the cells a donor keeps); every question of
//! [`QUESTIONS`] is answered from each, as the coordinator answers it, and
//! every released cell's 95% interval is compared with the TRUE count from
//! the independent reference (`truth.rs`). It prints the share of
//! questions answered, coverage and median half-width per question and
//! site, the medians by number of criteria, and the half-widths against the
//! catalogue's loss.

use std::fmt::Write as _;
use std::sync::Arc;

use bonebank_query::catalogue::{answer, to_result};
use bonebank_query::policy::Policy;
use bonebank_schemas::FeasibilityQuery;
use bonebank_schemas::wire::Catalogue;

use crate::eval::{Site, Tally, median};
use crate::truth::Reference;
use crate::{Error, Result};

/// A question of the catalogue's evaluation: its number of criteria, and
/// SQL.
#[derive(Debug, Clone, Copy)]
pub struct Question {
    pub name: &'static str,
    pub criteria: usize,
    pub sql: &'static str,
    /// An industry partner's question: it carries the site's filter,
    /// `consent_commercial = true` (one of its criteria), and is answered
    /// from the tables of the donors with that consent.
    pub industry: bool,
}

const fn q(name: &'static str, criteria: usize, sql: &'static str) -> Question {
    Question {
        name,
        criteria,
        sql,
        industry: false,
    }
}

/// An industry partner's question, as the site asks it (with its filter).
const fn industry(name: &'static str, criteria: usize, sql: &'static str) -> Question {
    Question {
        name,
        criteria,
        sql,
        industry: true,
    }
}

/// Realistic feasibility questions at fracture, orthopaedic and blood
/// sites: one to four criteria (a breakdown counts as one), donors and
/// samples, grouped and not. Some the catalogue cannot answer (a donor
/// count over two age bands or two years; a range that cuts a band); they
/// count against its share.
pub const QUESTIONS: &[Question] = &[
    q(
        "C1 donors",
        0,
        "SELECT COUNT(DISTINCT donor_id) FROM samples",
    ),
    q("C2 samples", 0, "SELECT COUNT(*) FROM samples"),
    q(
        "C3 women: donors, samples",
        1,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Female'",
    ),
    q(
        "C4 samples by sex",
        1,
        "SELECT sex, COUNT(*) FROM samples GROUP BY sex",
    ),
    q(
        "C5 donors by sample type",
        1,
        "SELECT sample_type, COUNT(DISTINCT donor_id) FROM samples GROUP BY sample_type",
    ),
    q(
        "C6 samples by sample type",
        1,
        "SELECT sample_type, COUNT(*) FROM samples GROUP BY sample_type",
    ),
    q(
        "C7 donors with stem cells",
        1,
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sample_type = 'StemCells'",
    ),
    q(
        "C8 donors 60-69",
        1,
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling BETWEEN 60 AND 69",
    ),
    q(
        "C9 samples 50-69",
        1,
        "SELECT COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 50 AND 69",
    ),
    q(
        "C10 donors 50-69",
        1,
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling BETWEEN 50 AND 69",
    ),
    q(
        "C11 femur fracture: donors, samples",
        1,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE diagnosis LIKE 'S72%'",
    ),
    q(
        "C12 donors by age band",
        1,
        "SELECT age_band, COUNT(DISTINCT donor_id) FROM samples GROUP BY age_band",
    ),
    q(
        "C13 donors by diagnosis chapter",
        1,
        "SELECT diagnosis_chapter, COUNT(DISTINCT donor_id) FROM samples GROUP BY diagnosis_chapter",
    ),
    q(
        "C14 serum or plasma samples",
        1,
        "SELECT COUNT(*) FROM samples WHERE sample_type IN ('Serum', 'Plasma')",
    ),
    q(
        "C15 women's serum samples",
        2,
        "SELECT COUNT(*) FROM samples WHERE sex = 'Female' AND sample_type = 'Serum'",
    ),
    q(
        "C16 S72 by sample type",
        2,
        "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE diagnosis LIKE 'S72%' GROUP BY sample_type",
    ),
    q(
        "C17 women with S72: donors",
        2,
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sex = 'Female' AND diagnosis LIKE 'S72%'",
    ),
    q(
        "C18 samples by age band and sex",
        2,
        "SELECT age_band, sex, COUNT(*) FROM samples GROUP BY age_band, sex",
    ),
    q(
        "C19 M16 donors by sex",
        2,
        "SELECT sex, COUNT(DISTINCT donor_id) FROM samples WHERE diagnosis LIKE 'M16%' GROUP BY sex",
    ),
    q(
        "C20 plasma samples by year",
        2,
        "SELECT sampling_year, COUNT(*) FROM samples WHERE sample_type = 'Plasma' GROUP BY sampling_year",
    ),
    q(
        "C21 serum by storage temperature",
        2,
        "SELECT storage_temperature, COUNT(*) FROM samples WHERE sample_type = 'Serum' GROUP BY storage_temperature",
    ),
    q(
        "C22 stem cells by storage temperature",
        2,
        "SELECT storage_temperature, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sample_type = 'StemCells' GROUP BY storage_temperature",
    ),
    q(
        "C23 bone marrow by material",
        2,
        "SELECT material_subtype, COUNT(*) FROM samples WHERE sample_type = 'BoneMarrowWhole' GROUP BY material_subtype",
    ),
    q(
        "C24 donors by chapter and sex",
        2,
        "SELECT diagnosis_chapter, sex, COUNT(DISTINCT donor_id) FROM samples GROUP BY diagnosis_chapter, sex",
    ),
    q(
        "C25 plasma donors 2015-2020",
        2,
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE sample_type = 'Plasma' AND sampling_year BETWEEN 2015 AND 2020",
    ),
    q(
        "C26 plasma samples 2015-2020",
        2,
        "SELECT COUNT(*) FROM samples WHERE sample_type = 'Plasma' AND sampling_year BETWEEN 2015 AND 2020",
    ),
    q(
        "C27 women 60-69 with S72: donors by type",
        3,
        "SELECT sample_type, COUNT(DISTINCT donor_id) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 60 AND 69 AND diagnosis LIKE 'S72%' GROUP BY sample_type",
    ),
    q(
        "C28 women with M81 by age band",
        3,
        "SELECT age_band, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Female' AND diagnosis LIKE 'M81%' GROUP BY age_band",
    ),
    q(
        "C29 men 70-79, S72, bone marrow",
        4,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Male' AND age_at_sampling BETWEEN 70 AND 79 AND diagnosis LIKE 'S72%' AND sample_type = 'BoneMarrowWhole'",
    ),
    q(
        "C30 women 60-69, S72, stem cells",
        4,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 60 AND 69 AND diagnosis LIKE 'S72%' AND sample_type = 'StemCells'",
    ),
    q(
        "C31 flagship: women 50-69, S72, stem cells",
        4,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 50 AND 69 AND diagnosis LIKE 'S72%' AND sample_type = 'StemCells'",
    ),
    q(
        "C32 flagship samples: women 50-69, S72, stem cells",
        4,
        "SELECT COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 50 AND 69 AND diagnosis LIKE 'S72%' AND sample_type = 'StemCells'",
    ),
    q(
        "C33 C90 samples by type",
        2,
        "SELECT sample_type, COUNT(*) FROM samples WHERE diagnosis LIKE 'C90%' GROUP BY sample_type",
    ),
    q(
        "C34 women 40-59 by type: samples",
        3,
        "SELECT sample_type, COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 40 AND 59 GROUP BY sample_type",
    ),
    q(
        "C35 donors 65 or older",
        1,
        "SELECT COUNT(DISTINCT donor_id) FROM samples WHERE age_at_sampling >= 65",
    ),
    q(
        "C36 aged 45-69: donors, samples",
        1,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE age_at_sampling BETWEEN 45 AND 69",
    ),
    q(
        "C37 donors by five-year age band",
        1,
        "SELECT age_band_5, COUNT(DISTINCT donor_id) FROM samples GROUP BY age_band_5",
    ),
    q(
        "C38 women 55-74: donors, samples",
        2,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 55 AND 74",
    ),
    q(
        "C39 women 45-69, S72, stem cells",
        4,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 45 AND 69 AND diagnosis LIKE 'S72%' AND sample_type = 'StemCells'",
    ),
    industry(
        "I1 commercial consent: donors, samples",
        1,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE consent_commercial = true",
    ),
    industry(
        "I2 commercial consent: samples by type",
        2,
        "SELECT sample_type, COUNT(*) FROM samples WHERE consent_commercial = true GROUP BY sample_type",
    ),
    industry(
        "I3 commercial consent, S72: donors by type",
        3,
        "SELECT sample_type, COUNT(DISTINCT donor_id) FROM samples WHERE consent_commercial = true AND diagnosis LIKE 'S72%' GROUP BY sample_type",
    ),
    industry(
        "I4 commercial consent, serum by sex",
        3,
        "SELECT sex, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE consent_commercial = true AND sample_type = 'Serum' GROUP BY sex",
    ),
    industry(
        "I5 commercial consent, women, S72, stem cells",
        4,
        "SELECT COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE consent_commercial = true AND sex = 'Female' AND diagnosis LIKE 'S72%' AND sample_type = 'StemCells'",
    ),
];

/// `n` catalogues of `site`, each measured afresh under `policy`.
async fn catalogues(
    site: &Site,
    policy: &Policy,
    n: usize,
    tmp: &std::path::Path,
) -> Result<(Vec<Arc<Catalogue>>, Vec<f64>)> {
    let mut out = Vec::new();
    let mut seconds = Vec::new();
    for _ in 0..n {
        let (service, path) = crate::eval::fresh_service(site, policy, tmp, "catalogue")?;
        let started = std::time::Instant::now();
        let c = service
            .catalogue()
            .await?
            .ok_or_else(|| Error::Internal(format!("{}: no catalogue", site.id)))?;
        seconds.push(started.elapsed().as_secs_f64());
        out.push(c);
        drop(service);
        crate::eval::remove_store(&path);
    }
    Ok((out, seconds))
}

/// Per measure of `query`, coverage and half-widths of the answers from
/// those of `catalogues` that answer it against the reference, and how
/// many did; why not if fewer than half did (the site asks it fresh). A
/// release may answer where another does not: which dimensions a site
/// counts one value per donor of is read from each release's noise.
fn tally(
    query: &FeasibilityQuery,
    site: usize,
    sites: usize,
    catalogues: &[Arc<Catalogue>],
    reference: &Reference,
    tallies: &mut Vec<Tally>,
) -> std::result::Result<usize, String> {
    let mut why = None;
    let answers: Vec<_> = catalogues
        .iter()
        .filter_map(|c| match answer(c, query) {
            Ok(a) => Some((c, a)),
            Err(e) => {
                why = Some(e.reason);
                None
            }
        })
        .collect();
    if 2 * answers.len() < catalogues.len() {
        return Err(why.unwrap_or_default());
    }
    let cells = reference.counts(query, &query.group_by);
    for (c, answered) in &answers {
        let result = to_result(c, query, answered);
        if tallies.is_empty() {
            *tallies = vec![Tally::new(sites); result.measures.len()];
        }
        for row in &result.rows {
            for ((m, value), t) in result
                .measures
                .iter()
                .zip(&row.values)
                .zip(tallies.iter_mut())
            {
                let truth = Reference::value(&cells, &m.measure, &row.key)
                    .ok_or_else(|| format!("no TRUE count for {}", m.label))?;
                t.add(site, truth, value.interval);
            }
        }
    }
    Ok(answers.len())
}

/// The report.
pub(crate) async fn report(
    sites: &[Site],
    policy: &Policy,
    releases: usize,
    tmp: &std::path::Path,
) -> Result<String> {
    let mut out = String::new();
    let mut all = Vec::new();
    for site in sites {
        eprintln!("measuring {releases} catalogues at {} …", site.id);
        let (c, seconds) = catalogues(site, policy, releases, tmp).await?;
        writeln!(
            out,
            "{}: catalogue of dataset version {}, ρ {} ((ε {:.2}, δ {:e})), built in {:.2} s (median of {releases})",
            site.id,
            c[0].dataset_version,
            c[0].loss,
            c[0].approx_dp.epsilon,
            c[0].approx_dp.delta,
            median(&seconds)
        )
        .unwrap();
        // What one donor may move a table's samples by, in the first
        // release: the sample type table, and the site's total.
        let table = |dims: &[&str]| {
            c[0].tables.iter().find(|t| {
                t.dimensions
                    .iter()
                    .map(String::as_str)
                    .eq(dims.iter().copied())
            })
        };
        if let (Some(by_type), Some(total)) = (table(&["sample_type"]), table(&[])) {
            // Without the caps: a cell's bound in every cell a donor may be in.
            let per_cell =
                by_type.samples_per_donor as f64 * (by_type.cells_per_donor as f64).sqrt();
            writeln!(
                out,
                "  samples' sensitivity (L2): {:.1} by sample type (a cell's bound in each cell: {} × √{} = {per_cell:.1}), {:.1} in total",
                by_type.samples.sensitivity,
                by_type.samples_per_donor,
                by_type.cells_per_donor,
                total.samples.sensitivity,
            )
            .unwrap();
            // What no split of the loss could beat: the tables of every
            // donor's whole ρ spent on the site's total samples alone, at
            // that sensitivity.
            let rho: f64 = c[0]
                .tables
                .iter()
                .filter(|t| t.consent.is_none())
                .map(bonebank_schemas::wire::CatalogueTable::loss)
                .sum();
            let sigma = total.samples.sensitivity / (2.0 * rho).sqrt();
            writeln!(
                out,
                "  the narrowest a sample count could be with these bounds: ±{:.0}, the total's alone at the tables' whole ρ {rho:.2} (1.96 × {:.1} / √(2ρ))",
                1.959_964 * sigma,
                total.samples.sensitivity,
            )
            .unwrap();
        }
        // The cells a donor counts in, per table, as the first release
        // measured them (tables of sex alone and the total keep one).
        let bounds: Vec<String> = c[0]
            .tables
            .iter()
            .filter(|t| t.dimensions.iter().any(|d| d != "sex"))
            .map(|t| format!("{} {}", t.dimensions.join("×"), t.cells_per_donor))
            .collect();
        writeln!(out, "  cells per donor (measured): {}", bounds.join(", ")).unwrap();
        // The dimensions each donor counts in one value of, per release.
        let mut one_value: Vec<(String, usize)> = Vec::new();
        for release in &c {
            let key = if release.one_per_donor.is_empty() {
                "none".to_owned()
            } else {
                release.one_per_donor.join(", ")
            };
            match one_value.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => one_value.push((key, 1)),
            }
        }
        let one_value: Vec<String> = one_value
            .iter()
            .map(|(k, n)| format!("{k} ({n} of {releases})"))
            .collect();
        writeln!(out, "  one value per donor: {}", one_value.join("; ")).unwrap();
        all.push(c);
    }
    writeln!(out).unwrap();
    writeln!(
        out,
        "{:<48} {:>2} {:<8} {:>8}  {:<22} half-width per site (median)",
        "question", "n", "measure", "coverage", "coverage per site"
    )
    .unwrap();
    let mut answered = 0;
    let mut per_site_answered = vec![0usize; sites.len()];
    let mut partly: Vec<String> = Vec::new();
    let mut some_releases: Vec<String> = Vec::new();
    // Median half-widths per site, by measure and by 1-2 or 3-4 criteria.
    let mut by_size: std::collections::BTreeMap<(&str, &str), Vec<Vec<f64>>> = Default::default();
    let mut covered = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    let mut errors = std::collections::BTreeMap::<&str, Vec<f64>>::new();
    let mut covered_industry = covered.clone();
    let mut industry_answered = 0;
    for question in QUESTIONS {
        let query = bonebank_query::sql::parse(question.sql)
            .map_err(|r| Error::Usage(format!("{}: {}", question.name, r.message)))?;
        let mut tallies = Vec::new();
        // Per site, why its catalogue does not answer (it is asked fresh
        // there): a question may be answered at some sites and not others.
        let mut why: Vec<Option<String>> = Vec::with_capacity(sites.len());
        for (s, (site, c)) in sites.iter().zip(&all).enumerate() {
            let mut own = Vec::new();
            let result = tally(&query, s, sites.len(), c, &site.reference, &mut own);
            if let Ok(n) = result {
                if n < c.len() {
                    some_releases.push(format!(
                        "{} at {}: answered by {n} of {} releases",
                        question.name,
                        site.id,
                        c.len()
                    ));
                }
                if tallies.is_empty() {
                    tallies = own;
                } else {
                    for (t, o) in tallies.iter_mut().zip(&own) {
                        t.merge(o);
                    }
                }
            }
            why.push(result.err());
        }
        let fresh_at: Vec<&str> = sites
            .iter()
            .zip(&why)
            .filter(|(_, w)| w.is_some())
            .map(|(s, _)| s.id.as_str())
            .collect();
        for (s, w) in why.iter().enumerate() {
            per_site_answered[s] += usize::from(w.is_none());
        }
        if fresh_at.len() == sites.len() {
            writeln!(
                out,
                "{:<48} {:>2} fresh: {}",
                question.name,
                question.criteria,
                why[0].as_deref().unwrap_or_default()
            )
            .unwrap();
            continue;
        }
        if fresh_at.is_empty() {
            answered += 1;
            industry_answered += usize::from(question.industry);
        } else {
            let reason = why.iter().flatten().next().cloned().unwrap_or_default();
            partly.push(format!(
                "{}: fresh at {} ({reason})",
                question.name,
                fresh_at.join(", ")
            ));
        }
        for (m, tally) in query.measures.iter().zip(&tallies) {
            let label = m.label();
            let (coverage, _) = tally.coverage();
            // A site that asks it fresh has no catalogue half-width.
            let medians: Vec<f64> = tally
                .medians()
                .into_iter()
                .zip(&why)
                .map(|(h, w)| if w.is_some() { f64::NAN } else { h })
                .collect();
            writeln!(
                out,
                "{:<48} {:>2} {:<8} {:>7.1}%  {:<22} {}",
                question.name,
                question.criteria,
                label,
                coverage,
                tally
                    .per_site()
                    .iter()
                    .zip(&why)
                    .map(|(c, w)| if w.is_some() {
                        "fresh".to_owned()
                    } else {
                        format!("{c:.1}%")
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                medians
                    .iter()
                    .map(|h| if h.is_nan() {
                        "fresh".to_owned()
                    } else {
                        format!("±{h:.0}")
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            )
            .unwrap();
            let kind = if label == "donors" {
                "donors"
            } else {
                "samples"
            };
            let size = if question.industry {
                "industry partners' questions"
            } else if question.criteria <= 2 {
                "1-2 criteria"
            } else {
                "3-4 criteria"
            };
            by_size.entry((kind, size)).or_default().push(medians);
            let c = covered.entry(kind).or_default();
            c.0 += tally.covered_cells();
            c.1 += tally.cells();
            errors.entry(kind).or_default().extend(tally.errors());
            if question.industry {
                let c = covered_industry.entry(kind).or_default();
                c.0 += tally.covered_cells();
                c.1 += tally.cells();
            }
        }
    }
    writeln!(out).unwrap();
    writeln!(
        out,
        "answered from the catalogue at every site: {answered} of {} questions ({:.0}%)",
        QUESTIONS.len(),
        100.0 * answered as f64 / QUESTIONS.len() as f64
    )
    .unwrap();
    writeln!(
        out,
        "answered from each site's catalogue: {} of {} questions",
        per_site_answered
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        QUESTIONS.len()
    )
    .unwrap();
    writeln!(
        out,
        "  of them industry partners' questions (commercial consent): {industry_answered} of {}",
        QUESTIONS.iter().filter(|q| q.industry).count()
    )
    .unwrap();
    for p in &partly {
        writeln!(out, "  answered at the other sites: {p}").unwrap();
    }
    for p in &some_releases {
        writeln!(out, "  {p} (the others ask it fresh)").unwrap();
    }
    for (kind, (c, n)) in &covered {
        writeln!(
            out,
            "coverage of the TRUE count, {kind}: {:.1}% of {n} released cells",
            100.0 * *c as f64 / (*n).max(1) as f64
        )
        .unwrap();
    }
    for (kind, e) in &errors {
        let n = e.len().max(1) as f64;
        let mean = e.iter().sum::<f64>() / n;
        let sd = (e.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        writeln!(
            out,
            "  error against the stated noise, {kind}, cells with a TRUE count of {} or more: mean {mean:+.2} σ, spread {sd:.2} σ ({} cells; 0 and 1 if the error model is right)",
            crate::eval::LARGE,
            e.len()
        )
        .unwrap();
    }
    for (kind, (c, n)) in &covered_industry {
        writeln!(
            out,
            "  of them industry partners' questions, {kind}: {:.1}% of {n} released cells",
            100.0 * *c as f64 / (*n).max(1) as f64
        )
        .unwrap();
    }
    for ((kind, size), medians) in &by_size {
        let per_site: Vec<String> = (0..sites.len())
            .map(|s| {
                format!(
                    "±{:.0}",
                    median(
                        &medians
                            .iter()
                            .map(|m| m[s])
                            .filter(|h| !h.is_nan())
                            .collect::<Vec<_>>(),
                    )
                )
            })
            .collect();
        writeln!(
            out,
            "median half-width, {kind}, {size}: {} ({} questions' medians, per site, of those it answers)",
            per_site.join(" "),
            medians.len()
        )
        .unwrap();
    }

    // The trade a steward makes: the catalogue's loss against precision.
    writeln!(out).unwrap();
    writeln!(
        out,
        "catalogue loss of the tables of every donor against precision (median half-width over the answered researchers' questions' cells, per site; up to 3 catalogues each):"
    )
    .unwrap();
    for loss in [0.5, 1.0, 2.0, 4.0] {
        // The tables of every donor at this loss (the consented tables,
        // which answer industry partners only, are left out here).
        let mut p = policy.clone();
        p.catalogue.loss = loss;
        p.catalogue.consented_loss = 0.0;
        let mut donors = vec![Vec::new(); sites.len()];
        let mut samples = vec![Vec::new(); sites.len()];
        for (s, site) in sites.iter().enumerate() {
            let (c, _) = catalogues(site, &p, releases.min(3), tmp).await?;
            for question in QUESTIONS.iter().filter(|q| !q.industry) {
                let query = bonebank_query::sql::parse(question.sql).expect("parsed above");
                for cat in &c {
                    let Ok(a) = answer(cat, &query) else { continue };
                    let r = to_result(cat, &query, &a);
                    for row in &r.rows {
                        for (m, v) in r.measures.iter().zip(&row.values) {
                            let h = (v.interval[1] - v.interval[0]) / 2.0;
                            if m.label == "donors" {
                                donors[s].push(h);
                            } else {
                                samples[s].push(h);
                            }
                        }
                    }
                }
            }
        }
        let show = |v: &[Vec<f64>]| {
            v.iter()
                .map(|h| format!("±{:.0}", median(h)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(
            out,
            "  ρ {loss}: donors {}, samples {}",
            show(&donors),
            show(&samples)
        )
        .unwrap();
    }
    Ok(out)
}
