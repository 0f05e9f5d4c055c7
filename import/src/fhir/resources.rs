//! The three resource types read, each into its rows: Patients become
//! donors, Conditions the diagnoses of a donor's samples, Specimens the
//! samples and their diagnoses.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::Row;
use super::codes::{
    ICD10_SYSTEMS, MIABIS_DETAILED_TYPE, MIABIS_DIAGNOSIS, MIABIS_MATERIAL_TYPE, SAMPLE_DIAGNOSIS,
    SAMPLE_MATERIAL_TYPE, codes, extensions, material_of, sex, temperature_of,
};
use super::read::Found;
use crate::{Problem, Problems};

/// The resources of the input by type, and the ids their full URLs name.
pub(super) struct Resources<'a> {
    by_type: BTreeMap<&'a str, Vec<&'a Found>>,
    full_urls: HashMap<String, String>,
}

impl<'a> Resources<'a> {
    pub fn new(found: &'a [Found]) -> Self {
        let mut by_type: BTreeMap<&str, Vec<&Found>> = BTreeMap::new();
        for f in found {
            let kind = f
                .resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("");
            by_type.entry(kind).or_default().push(f);
        }
        let mut full_urls = HashMap::new();
        for f in by_type.get("Patient").into_iter().flatten() {
            if let Some(id) = id_of(f) {
                if let Some(url) = &f.full_url {
                    full_urls.insert(url.clone(), id.clone());
                }
                full_urls.insert(format!("Patient/{id}"), id);
            }
        }
        Self { by_type, full_urls }
    }

    pub fn has(&self, kind: &str) -> bool {
        self.by_type.contains_key(kind)
    }

    fn of(&self, kind: &str) -> impl Iterator<Item = &'a Found> + '_ {
        self.by_type.get(kind).into_iter().flatten().copied()
    }

    fn patient_of(&self, resource: &Value) -> Option<String> {
        patient_id(resource.get("subject"), &self.full_urls)
    }
}

/// Problems with resources, each naming the place and the element.
pub(super) struct Report<'p>(pub &'p mut Problems);

impl Report<'_> {
    pub fn at(&mut self, place: &str, element: &str, value: Option<&str>, message: String) {
        self.0.add(|| Problem {
            file: place.to_owned(),
            row: None,
            column: Some(element.to_owned()),
            value: value.map(crate::problems::excerpt),
            message,
        })
    }
}

/// A boolean as the CSV import reads it.
fn b(v: bool) -> String {
    if v { "true" } else { "false" }.to_owned()
}

fn id_of(f: &Found) -> Option<String> {
    f.resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The donors, each with `consents`, and each donor's birth date (by id)
/// for the ages of their samples.
pub(super) fn patients(
    resources: &Resources,
    consents: super::Consents,
    report: &mut Report,
) -> (Vec<Row>, HashMap<String, Option<String>>) {
    let mut donors = Vec::new();
    let mut births = HashMap::new();
    for f in resources.of("Patient") {
        let Some(id) = id_of(f) else {
            report.at(
                &f.place,
                "Patient.id",
                None,
                "a Patient without an id".into(),
            );
            continue;
        };
        births.insert(
            id.clone(),
            f.resource
                .get("birthDate")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        let gender = f.resource.get("gender").and_then(Value::as_str);
        let Some(sex) = sex(gender) else {
            report.at(
                &f.place,
                &format!("Patient/{id}: Patient.gender"),
                gender,
                "not a FHIR gender (female, male, other, unknown)".into(),
            );
            continue;
        };
        donors.push(Row {
            fields: vec![
                id.clone(),
                sex.into(),
                b(consents.research),
                b(consents.commercial),
                b(consents.genetic),
                b(consents.autologous),
                b(consents.allogeneic),
                b(false),
            ],
            from: format!("Patient/{id}"),
        });
    }
    (donors, births)
}

/// Each donor's ICD-10 codes from their Conditions (by donor id): they are
/// added to each of the donor's samples.
pub(super) fn conditions(
    resources: &Resources,
    report: &mut Report,
) -> HashMap<String, Vec<String>> {
    let mut conditions: HashMap<String, Vec<String>> = HashMap::new();
    for f in resources.of("Condition") {
        let id = id_of(f).unwrap_or_default();
        let Some(patient) = resources.patient_of(&f.resource) else {
            report.at(
                &f.place,
                &format!("Condition/{id}: Condition.subject"),
                None,
                "must refer to a Patient".into(),
            );
            continue;
        };
        let icd = codes(f.resource.get("code"), &ICD10_SYSTEMS);
        if icd.is_empty() {
            report.at(
                &f.place,
                &format!("Condition/{id}: Condition.code"),
                None,
                "has no ICD-10 or ICD-10-GM coding".into(),
            );
            continue;
        }
        conditions
            .entry(patient)
            .or_default()
            .extend(icd.iter().map(|c| (*c).to_owned()));
    }
    conditions
}

/// The samples and their diagnoses: the Specimen's own (BBMRI.de's
/// SampleDiagnosis, MIABIS's sample diagnosis), then its donor's Conditions.
pub(super) fn specimens(
    resources: &Resources,
    births: &HashMap<String, Option<String>>,
    conditions: &HashMap<String, Vec<String>>,
    report: &mut Report,
) -> (Vec<Row>, Vec<Row>) {
    let mut samples = Vec::new();
    let mut diagnoses = Vec::new();
    for f in resources.of("Specimen") {
        let Some(id) = id_of(f) else {
            report.at(
                &f.place,
                "Specimen.id",
                None,
                "a Specimen without an id".into(),
            );
            continue;
        };
        let Some(sample) = specimen(f, &id, resources, births, report) else {
            continue;
        };
        let patient = sample.fields[1].clone();
        samples.push(sample);
        let mut seen: Vec<String> = Vec::new();
        for (n, concept) in extensions(&f.resource, SAMPLE_DIAGNOSIS)
            .into_iter()
            .enumerate()
        {
            for code in codes(Some(concept), &ICD10_SYSTEMS) {
                diagnoses.push(Row {
                    fields: vec![id.clone(), code.into(), b(n == 0 && seen.is_empty())],
                    from: format!("Specimen/{id} (extension SampleDiagnosis)"),
                });
                seen.push(code.into());
            }
        }
        // MIABIS on FHIR gives the sample's diagnosis as a bare ICD-10 code.
        for code in f
            .resource
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e.get("url").and_then(Value::as_str) == Some(MIABIS_DIAGNOSIS))
            .filter_map(|e| e.get("valueCode").and_then(Value::as_str))
        {
            if !seen.iter().any(|s| s == code) {
                diagnoses.push(Row {
                    fields: vec![id.clone(), code.into(), b(seen.is_empty())],
                    from: format!("Specimen/{id} (extension miabis-sample-diagnosis)"),
                });
                seen.push(code.into());
            }
        }
        for code in conditions.get(&patient).into_iter().flatten() {
            if !seen.contains(code) {
                diagnoses.push(Row {
                    fields: vec![id.clone(), code.clone(), b(false)],
                    from: format!("Specimen/{id} (a Condition of Patient/{patient})"),
                });
                seen.push(code.clone());
            }
        }
    }
    (samples, diagnoses)
}

/// One Specimen's sample row, or `None` with its problem reported.
fn specimen(
    f: &Found,
    id: &str,
    resources: &Resources,
    births: &HashMap<String, Option<String>>,
    report: &mut Report,
) -> Option<Row> {
    let at = |element: &str| format!("Specimen/{id}: {element}");
    let Some(patient) = resources.patient_of(&f.resource) else {
        report.at(
            &f.place,
            &at("Specimen.subject"),
            None,
            "must refer to a Patient".into(),
        );
        return None;
    };
    let Some(birth) = births.get(&patient) else {
        report.at(
            &f.place,
            &at("Specimen.subject"),
            Some(&patient),
            "refers to a Patient that is not in the input".into(),
        );
        return None;
    };
    let (sample_type, subtype) = match material_of(f.resource.get("type")) {
        Ok(m) => m,
        Err(code) => {
            report.at(
                &f.place,
                &at("Specimen.type"),
                code,
                format!(
                    "needs a code from {SAMPLE_MATERIAL_TYPE}, {MIABIS_DETAILED_TYPE} or {MIABIS_MATERIAL_TYPE} (see the README's table)"
                ),
            );
            return None;
        }
    };
    let temperature = match temperature_of(&f.resource) {
        Ok(t) => t,
        Err(code) => {
            report.at(
                &f.place,
                &at("Specimen.extension:StorageTemperature"),
                code,
                "missing, or not a BBMRI.de or MIABIS storage temperature code".into(),
            );
            return None;
        }
    };
    let collected = f
        .resource
        .pointer("/collection/collectedDateTime")
        .and_then(Value::as_str);
    let Some(date) = collected.filter(|d| d.len() >= 10).map(|d| &d[..10]) else {
        report.at(
            &f.place,
            &at("Specimen.collection.collectedDateTime"),
            collected,
            "needs the day of collection (YYYY-MM-DD)".into(),
        );
        return None;
    };
    let Some(age) = birth.as_deref().and_then(|b| age(b, date)) else {
        report.at(
            &f.place,
            &format!("Patient/{patient}: Patient.birthDate"),
            birth.as_deref(),
            "needed for the donor's age at sampling".into(),
        );
        return None;
    };
    Some(Row {
        fields: vec![
            id.to_owned(),
            patient,
            sample_type.into(),
            subtype.into(),
            temperature.into(),
            date.into(),
            age.to_string(),
            "1".into(),
        ],
        from: format!("Specimen/{id}"),
    })
}

/// The id a reference such as `Patient/p1` (or an entry's full URL ending
/// in it) points to.
fn patient_id(reference: Option<&Value>, full_urls: &HashMap<String, String>) -> Option<String> {
    let r = reference?.get("reference")?.as_str()?;
    if let Some(id) = full_urls.get(r) {
        return Some(id.clone());
    }
    let (kind, id) = r
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(k, id)| (k.rsplit('/').next().unwrap_or(k), id))?;
    (kind == "Patient").then(|| id.to_owned())
}

/// Whole years between a birth date (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`, as
/// bridgeheads often hold the year only) and a sampling date; a missing
/// month or day counts as the first, so the age is never too high by more
/// than the part of the year that is unknown.
fn age(birth: &str, sampled: &str) -> Option<i64> {
    let parts = |s: &str| -> Option<(i64, i64, i64)> {
        let mut it = s.get(..10.min(s.len()))?.split('-');
        let y = it.next()?.parse().ok()?;
        let m = it.next().map_or(Some(1), |m| m.parse().ok())?;
        let d = it.next().map_or(Some(1), |d| d.parse().ok())?;
        Some((y, m, d))
    };
    let (by, bm, bd) = parts(birth)?;
    let (sy, sm, sd) = parts(sampled)?;
    Some(sy - by - i64::from((sm, sd) < (bm, bd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_from_whole_and_partial_birth_dates() {
        assert_eq!(age("1960-05-10", "2020-05-09"), Some(59));
        assert_eq!(age("1960-05-10", "2020-05-10"), Some(60));
        assert_eq!(age("1960", "2020-03-01"), Some(60));
        assert_eq!(age("1960-07", "2020-06-30"), Some(59));
        assert_eq!(age("sixty", "2020-06-30"), None);
    }
}
