//! Import from FHIR R4, as a German Biobank Node bridgehead (Blaze) holds a
//! site's samples under the BBMRI.de profiles: `collection` and
//! `transaction` Bundles (JSON), or resources one per line (NDJSON), of
//! Patient, Specimen and Condition. The resources become the three tables
//! and go through the same checks as a CSV import, as one new dataset
//! version; every problem names the resource and the element it came from,
//! and a bundle with any problem changes nothing.
//!
//! The mapping of codes is one table in the README (*Importing FHIR*).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use bonebank_schemas::Table;
use serde_json::Value;

use super::{ImportReport, Problem, Problems};
use crate::dataset::DataDir;
use crate::{Error, Result};

/// The BBMRI.de code systems and extensions read here.
const SAMPLE_MATERIAL_TYPE: &str = "https://fhir.bbmri.de/CodeSystem/SampleMaterialType";
const STORAGE_TEMPERATURE: &str = "https://fhir.bbmri.de/StructureDefinition/StorageTemperature";
const SAMPLE_DIAGNOSIS: &str = "https://fhir.bbmri.de/StructureDefinition/SampleDiagnosis";
/// MIABIS on FHIR's code systems and extensions (canonical
/// `http://fhir.bbmri-eric.eu`).
const MIABIS_MATERIAL_TYPE: &str = "http://fhir.bbmri-eric.eu/CodeSystem/miabis-material-type-CS";
const MIABIS_DETAILED_TYPE: &str =
    "http://fhir.bbmri-eric.eu/CodeSystem/miabis-detailed-samply-type-cs";
const MIABIS_STORAGE_TEMPERATURE: &str =
    "http://fhir.bbmri-eric.eu/StructureDefinition/miabis-sample-storage-temperature-extension";
const MIABIS_DIAGNOSIS: &str =
    "http://fhir.bbmri-eric.eu/StructureDefinition/miabis-sample-diagnosis-extension";
/// ICD-10 (WHO) and ICD-10-GM, under their current and former system URLs.
const ICD10_SYSTEMS: [&str; 3] = [
    "http://hl7.org/fhir/sid/icd-10",
    "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
    "http://fhir.de/CodeSystem/dimdi/icd-10-gm",
];

/// A BBMRI.de SampleMaterialType code as a sample type and material; the
/// material is `other` where the code does not say more.
pub fn sample_material(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "whole-blood" => ("WholeBlood", "other"),
        "bone-marrow" => ("BoneMarrowWhole", "other"),
        "buffy-coat" => ("BuffyCoat", "buffy_coat"),
        "peripheral-blood-cells-vital" => ("PBMC", "pbmc"),
        "blood-plasma" => ("Plasma", "other"),
        "blood-serum" => ("Serum", "serum"),
        "urine" => ("Urine", "other"),
        "saliva" => ("Saliva", "other"),
        "tissue-ffpe" => ("TissueFixed", "tissue_ffpe"),
        "tissue-frozen" => ("TissueFreshFrozen", "tissue_frozen"),
        "dna" => ("DNA", "other"),
        "rna" => ("RNA", "other"),
        "dried-whole-blood" | "ascites" | "csf-liquor" | "stool-faeces" | "swab"
        | "liquid-other" | "tissue-other" | "derivative-other" => ("Other", "other"),
        _ => return None,
    })
}

/// A MIABIS on FHIR material type (`miabis-material-type-CS`) as a sample
/// type and material.
pub fn miabis_material(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "Blood" => ("WholeBlood", "other"),
        "DNA" => ("DNA", "other"),
        "RNA" => ("RNA", "other"),
        "Plasma" => ("Plasma", "other"),
        "Serum" => ("Serum", "serum"),
        "Saliva" => ("Saliva", "other"),
        "Urine" => ("Urine", "other"),
        "TissueFrozen" => ("TissueFreshFrozen", "tissue_frozen"),
        "TissueFFPE" => ("TissueFixed", "tissue_ffpe"),
        "Faeces" | "ImmortalizedCellLine" | "IsolatedPathogen" | "Other" => ("Other", "other"),
        _ => return None,
    })
}

/// A MIABIS detailed sample type (`miabis-detailed-samply-type-cs`): the
/// types bonebank has are themselves, with the material where the type
/// says it; the other detailed types are `Other`.
pub fn miabis_detailed(code: &str) -> Option<(&'static str, &'static str)> {
    use bonebank_schemas::{SampleType, ValueSet};
    let known = SampleType::ALL.iter().find(|t| t.code() == code);
    if let Some(t) = known {
        let material = match t.code() {
            "Serum" => "serum",
            "BuffyCoat" => "buffy_coat",
            "PBMC" => "pbmc",
            "BoneMarrowPlasma" => "bm_plasma",
            "TissueFreshFrozen" => "tissue_frozen",
            "SynovialFluid" => "synovial_fluid",
            _ => "other",
        };
        return Some((t.code(), material));
    }
    // The rest of the code system, as published.
    const OTHERS: &[&str] = &[
        "AmnioticFluid",
        "AscitesFluid",
        "Bile",
        "BodyCavityFluid",
        "BreastMilk",
        "BronchLavage",
        "CancerCellLine",
        "CerebrospinalFluid",
        "CordBlood",
        "DentalPulp",
        "Embryo",
        "EntireOrgan",
        "Faeces",
        "FetalTissue",
        "Fibroblast",
        "FoodSpecimen",
        "Gas",
        "GastricFluid",
        "Hair",
        "ImmortalizedCellLine",
        "IsolatedMicrobe",
        "IsolatedExosome",
        "IsolatedTumorCell",
        "LiquidBiopsy",
        "MenstrualBlood",
        "Nail",
        "NasalWashing",
        "Organoid",
        "PericardialFluid",
        "Placenta",
        "PleuralFluid",
        "PostMortemTissue",
        "Protein",
        "RedBloodCells",
        "Semen",
        "SpecimenEnvironment",
        "Sputum",
        "Swab",
        "Sweat",
        "Tears",
        "Teeth",
        "UmbilicalCord",
        "UrineSediment",
        "VitreousFluid",
        "WholeBloodDried",
    ];
    OTHERS.contains(&code).then_some(("Other", "other"))
}

/// A MIABIS on FHIR storage temperature; `LN` (liquid nitrogen, -150 to
/// -196 °C, either phase) counts as liquid.
pub fn miabis_temperature(code: &str) -> Option<&'static str> {
    Some(match code {
        "RT" => "RT",
        "2to10" => "2to10",
        "-18to-35" => "-18to-35",
        "-60to-85" => "-60to-85",
        "LN" => "LN_liquid",
        "Other" => "Other",
        _ => return None,
    })
}

/// Reads one code system's codes as a sample type and material.
type MaterialReader = fn(&str) -> Option<(&'static str, &'static str)>;

/// The sample type and material of a Specimen.type, from any of the code
/// systems read, and the code that was not understood.
fn material_of(concept: Option<&Value>) -> Result<(&'static str, &'static str), Option<&str>> {
    let readers: [(&str, MaterialReader); 3] = [
        (SAMPLE_MATERIAL_TYPE, sample_material),
        (MIABIS_DETAILED_TYPE, miabis_detailed),
        (MIABIS_MATERIAL_TYPE, miabis_material),
    ];
    let mut first = None;
    for (system, read) in readers {
        for code in codes(concept, &[system]) {
            first.get_or_insert(code);
            if let Some(m) = read(code) {
                return Ok(m);
            }
        }
    }
    Err(first)
}

/// The code of a CodeableConcept's first coding.
fn first_coding(concept: &Value) -> Option<&str> {
    concept
        .get("coding")?
        .as_array()?
        .first()?
        .get("code")?
        .as_str()
}

/// The storage temperature of a Specimen: the BBMRI.de extension, or MIABIS
/// on FHIR's (on Specimen.processing, or on the Specimen itself).
fn temperature_of(specimen: &Value) -> Result<&'static str, Option<&str>> {
    let first_code = first_coding;
    if let Some(code) = extensions(specimen, STORAGE_TEMPERATURE)
        .first()
        .and_then(|c| first_code(c))
    {
        return storage_temperature(code).ok_or(Some(code));
    }
    let processing = specimen
        .get("processing")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let miabis = processing
        .chain(std::iter::once(specimen))
        .flat_map(|p| extensions(p, MIABIS_STORAGE_TEMPERATURE))
        .find_map(first_code);
    match miabis {
        Some(code) => miabis_temperature(code).ok_or(Some(code)),
        None => Err(None),
    }
}

/// A BBMRI.de StorageTemperature code as a MIABIS storage temperature.
pub fn storage_temperature(code: &str) -> Option<&'static str> {
    Some(match code {
        "temperatureRoom" => "RT",
        "temperature2to10" => "2to10",
        "temperature-18to-35" => "-18to-35",
        "temperature-60to-85" => "-60to-85",
        "temperatureGN" => "LN_vapour",
        "temperatureLN" => "LN_liquid",
        "temperatureOther" => "Other",
        _ => return None,
    })
}

/// FHIR's administrative gender as bonebank's sex.
fn sex(gender: Option<&str>) -> Option<&'static str> {
    Some(match gender {
        Some("female") => "Female",
        Some("male") => "Male",
        Some("other") => "Undifferentiated",
        Some("unknown") | None => "Unknown",
        Some(_) => return None,
    })
}

/// What every donor of the import consented to: the bundles of a
/// bridgehead carry no consent, so the operator states it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consents {
    pub research: bool,
    pub commercial: bool,
    pub genetic: bool,
    pub autologous: bool,
    pub allogeneic: bool,
}

impl std::str::FromStr for Consents {
    type Err = String;

    /// `none`, or a comma-separated list of research, commercial, genetic,
    /// autologous, allogeneic.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut c = Self::default();
        if s.trim() == "none" {
            return Ok(c);
        }
        for word in s.split(',').map(str::trim) {
            match word {
                "research" => c.research = true,
                "commercial" => c.commercial = true,
                "genetic" => c.genetic = true,
                "autologous" => c.autologous = true,
                "allogeneic" => c.allogeneic = true,
                other => {
                    return Err(format!(
                        "unknown consent {other:?}: say none, or list research, commercial, genetic, autologous, allogeneic"
                    ));
                }
            }
        }
        Ok(c)
    }
}

/// A resource and where it came from.
struct Found {
    resource: Value,
    /// The file, and the entry or line in it.
    place: String,
    /// The entry's full URL, which other entries may refer to it by.
    full_url: Option<String>,
}

/// The resources of the input files, and problems with the files
/// themselves.
fn read_resources(files: &[PathBuf], problems: &mut Problems) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for path in files {
        let name = crate::problems::printable(&path.display().to_string());
        let file = super::read::open_regular(path, &name)?;
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

/// The codes of a CodeableConcept from the given systems.
fn codes<'a>(concept: Option<&'a Value>, systems: &[&str]) -> Vec<&'a str> {
    concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            c.get("system")
                .and_then(Value::as_str)
                .is_some_and(|s| systems.contains(&s))
        })
        .filter_map(|c| c.get("code").and_then(Value::as_str))
        .collect()
}

/// The valueCodeableConcepts of the extensions with `url`.
fn extensions<'a>(resource: &'a Value, url: &str) -> Vec<&'a Value> {
    resource
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(url))
        .filter_map(|e| e.get("valueCodeableConcept"))
        .collect()
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

/// A row of one of the tables, and the resource it came from.
struct Row {
    fields: Vec<String>,
    from: String,
}

/// Imports FHIR `files` into `dir` as one new dataset version holding all
/// three tables, every donor with `consents`.
pub fn import(dir: &DataDir, files: &[PathBuf], consents: Consents) -> Result<ImportReport> {
    let mut problems = Problems::default();
    let found = read_resources(files, &mut problems)?;
    let mut problem = |place: &str, element: &str, value: Option<&str>, message: String| {
        problems.add(|| Problem {
            file: place.to_owned(),
            row: None,
            column: Some(element.to_owned()),
            value: value.map(crate::problems::excerpt),
            message,
        })
    };

    let mut full_urls = HashMap::new();
    let mut by_type: BTreeMap<&str, Vec<&Found>> = BTreeMap::new();
    for f in &found {
        let kind = f
            .resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        by_type.entry(kind).or_default().push(f);
    }
    let id_of = |f: &Found| {
        f.resource
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    for f in by_type.get("Patient").into_iter().flatten() {
        if let Some(id) = id_of(f) {
            if let Some(url) = &f.full_url {
                full_urls.insert(url.clone(), id.clone());
            }
            full_urls.insert(format!("Patient/{id}"), id);
        }
    }

    // Patients: donors.
    let b = |v: bool| if v { "true" } else { "false" }.to_owned();
    let mut donors = Vec::new();
    let mut births: HashMap<String, Option<String>> = HashMap::new();
    for f in by_type.get("Patient").into_iter().flatten() {
        let Some(id) = id_of(f) else {
            problem(
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
            problem(
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

    // Conditions: the donor's diagnoses, added to each of their samples.
    let mut conditions: HashMap<String, Vec<String>> = HashMap::new();
    for f in by_type.get("Condition").into_iter().flatten() {
        let id = id_of(f).unwrap_or_default();
        let Some(patient) = patient_id(f.resource.get("subject"), &full_urls) else {
            problem(
                &f.place,
                &format!("Condition/{id}: Condition.subject"),
                None,
                "must refer to a Patient".into(),
            );
            continue;
        };
        let icd = codes(f.resource.get("code"), &ICD10_SYSTEMS);
        if icd.is_empty() {
            problem(
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

    // Specimens: samples, and their diagnoses.
    let mut samples = Vec::new();
    let mut diagnoses = Vec::new();
    for f in by_type.get("Specimen").into_iter().flatten() {
        let Some(id) = id_of(f) else {
            problem(
                &f.place,
                "Specimen.id",
                None,
                "a Specimen without an id".into(),
            );
            continue;
        };
        let at = |element: &str| format!("Specimen/{id}: {element}");
        let Some(patient) = patient_id(f.resource.get("subject"), &full_urls) else {
            problem(
                &f.place,
                &at("Specimen.subject"),
                None,
                "must refer to a Patient".into(),
            );
            continue;
        };
        let Some(birth) = births.get(&patient) else {
            problem(
                &f.place,
                &at("Specimen.subject"),
                Some(&patient),
                "refers to a Patient that is not in the input".into(),
            );
            continue;
        };
        let (sample_type, subtype) = match material_of(f.resource.get("type")) {
            Ok(m) => m,
            Err(code) => {
                problem(
                    &f.place,
                    &at("Specimen.type"),
                    code,
                    format!(
                        "needs a code from {SAMPLE_MATERIAL_TYPE}, {MIABIS_DETAILED_TYPE} or {MIABIS_MATERIAL_TYPE} (see the README's table)"
                    ),
                );
                continue;
            }
        };
        let temperature = match temperature_of(&f.resource) {
            Ok(t) => t,
            Err(code) => {
                problem(
                    &f.place,
                    &at("Specimen.extension:StorageTemperature"),
                    code,
                    "missing, or not a BBMRI.de or MIABIS storage temperature code".into(),
                );
                continue;
            }
        };
        let collected = f
            .resource
            .pointer("/collection/collectedDateTime")
            .and_then(Value::as_str);
        let Some(date) = collected.filter(|d| d.len() >= 10).map(|d| &d[..10]) else {
            problem(
                &f.place,
                &at("Specimen.collection.collectedDateTime"),
                collected,
                "needs the day of collection (YYYY-MM-DD)".into(),
            );
            continue;
        };
        let Some(age) = birth.as_deref().and_then(|b| age(b, date)) else {
            problem(
                &f.place,
                &format!("Patient/{patient}: Patient.birthDate"),
                birth.as_deref(),
                "needed for the donor's age at sampling".into(),
            );
            continue;
        };
        samples.push(Row {
            fields: vec![
                id.clone(),
                patient.clone(),
                sample_type.into(),
                subtype.into(),
                temperature.into(),
                date.into(),
                age.to_string(),
                "1".into(),
            ],
            from: format!("Specimen/{id}"),
        });
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
    if !by_type.contains_key("Patient") {
        problem(
            &files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            "Patient",
            None,
            "no Patient in the input: nothing to import".into(),
        );
    }
    if !problems.is_empty() {
        return Err(Error::Refused(problems));
    }

    // The same checks and the same new version as a CSV import.
    let staging = tempfile::tempdir().map_err(Error::io(std::env::temp_dir()))?;
    let mut inputs = Vec::new();
    for ((table, columns), rows) in STAGED.iter().zip([&donors, &samples, &diagnoses]) {
        let path = staging.path().join(format!("{table}.csv"));
        stage(&path, columns, rows)?;
        inputs.push((*table, path));
    }
    let sources = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    super::import_as(dir, &inputs, |_| format!("FHIR {sources}")).map_err(|e| match e {
        // Name the resource and element, not the staging file's row.
        Error::Refused(problems) => Error::Refused(problems.map(|p| {
            let (rows, table) = if p.file.ends_with("donors.csv") {
                (&donors, "donors")
            } else if p.file.ends_with("samples.csv") {
                (&samples, "samples")
            } else {
                (&diagnoses, "diagnoses")
            };
            let from = p
                .row
                .and_then(|r| rows.get(r as usize - 1))
                .map_or_else(|| format!("the {table}"), |r| r.from.clone());
            Problem {
                file: sources.clone(),
                row: None,
                column: Some(format!(
                    "{from}: {}",
                    element_of(p.column.as_deref().unwrap_or(""))
                )),
                value: p.value,
                message: p.message,
            }
        })),
        other => other,
    })
}

/// Where in FHIR a column's value came from.
fn element_of(column: &str) -> &str {
    match column {
        "sex" => "Patient.gender",
        "sample_type" | "material_subtype" => "Specimen.type",
        "storage_temperature" => "Specimen.extension:StorageTemperature",
        "sampling_date" => "Specimen.collection.collectedDateTime",
        "age_at_sampling" => "Patient.birthDate and Specimen.collection.collectedDateTime",
        "diagnosis" | "is_primary" => "the ICD-10 code",
        "donor_id" => "Patient.id",
        "sample_id" => "Specimen.id",
        other => other,
    }
}

/// The columns each staged table is written with, in the order the rows
/// above fill them; each is a column of its table (a test checks).
const STAGED: [(Table, &[&str]); 3] = [
    (
        Table::Donors,
        &[
            "donor_id",
            "sex",
            "consent_research",
            "consent_commercial",
            "consent_genetic",
            "consent_autologous",
            "consent_allogeneic",
            "consent_withdrawn",
        ],
    ),
    (
        Table::Samples,
        &[
            "sample_id",
            "donor_id",
            "sample_type",
            "material_subtype",
            "storage_temperature",
            "sampling_date",
            "age_at_sampling",
            "aliquots_available",
        ],
    ),
    (Table::Diagnoses, &["sample_id", "diagnosis", "is_primary"]),
];

/// Writes `rows` as a CSV file with a header of `columns`, by arrow's CSV
/// writer (as the export writes), for the CSV import to check.
fn stage(path: &std::path::Path, columns: &[&str], rows: &[Row]) -> Result<()> {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    );
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            std::sync::Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.fields[i].as_str()),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(std::sync::Arc::new(schema), arrays)
        .map_err(|e| Error::Engine(format!("staging {}: {e}", path.display())))?;
    let file = std::fs::File::create(path).map_err(Error::io(path))?;
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(std::io::BufWriter::new(file));
    writer
        .write(&batch)
        .map_err(|e| Error::Engine(format!("staging {}: {e}", path.display())))?;
    writer.into_inner().flush().map_err(Error::io(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staged_columns_are_their_tables_own_and_cover_the_required() {
        for (table, columns) in STAGED {
            for c in columns {
                assert!(table.column(c).is_some(), "{table} has no column {c}");
            }
            for c in table.columns().iter().filter(|c| c.required) {
                assert!(
                    columns.contains(&c.name),
                    "{table}.{} is not staged",
                    c.name
                );
            }
        }
    }

    #[test]
    fn ages_from_whole_and_partial_birth_dates() {
        assert_eq!(age("1960-05-10", "2020-05-09"), Some(59));
        assert_eq!(age("1960-05-10", "2020-05-10"), Some(60));
        assert_eq!(age("1960", "2020-03-01"), Some(60));
        assert_eq!(age("1960-07", "2020-06-30"), Some(59));
        assert_eq!(age("sixty", "2020-06-30"), None);
    }

    #[test]
    fn consents_are_stated_not_assumed() {
        assert_eq!("none".parse::<Consents>().unwrap(), Consents::default());
        let c: Consents = "research, genetic".parse().unwrap();
        assert!(c.research && c.genetic && !c.commercial);
        assert!("everything".parse::<Consents>().is_err());
    }

    #[test]
    fn every_bbmri_material_and_temperature_code_maps() {
        for code in [
            "whole-blood",
            "bone-marrow",
            "buffy-coat",
            "dried-whole-blood",
            "peripheral-blood-cells-vital",
            "blood-plasma",
            "blood-serum",
            "ascites",
            "csf-liquor",
            "saliva",
            "stool-faeces",
            "urine",
            "swab",
            "liquid-other",
            "tissue-ffpe",
            "tissue-frozen",
            "tissue-other",
            "dna",
            "rna",
            "derivative-other",
        ] {
            let (t, m) = sample_material(code).unwrap_or_else(|| panic!("{code}"));
            let t: bonebank_schemas::SampleType = t.parse().unwrap();
            let m: bonebank_schemas::MaterialSubtype = m.parse().unwrap();
            assert!(
                m.sample_types().contains(&t),
                "{code}: {m:?} is not a {t:?}"
            );
        }
        for code in [
            "temperature2to10",
            "temperature-18to-35",
            "temperature-60to-85",
            "temperatureGN",
            "temperatureLN",
            "temperatureRoom",
            "temperatureOther",
        ] {
            let t = storage_temperature(code).unwrap_or_else(|| panic!("{code}"));
            t.parse::<bonebank_schemas::StorageTemperature>().unwrap();
        }
        assert_eq!(sample_material("blood"), None);
        for code in [
            "Blood",
            "DNA",
            "Faeces",
            "ImmortalizedCellLine",
            "IsolatedPathogen",
            "Plasma",
            "RNA",
            "Saliva",
            "Serum",
            "TissueFrozen",
            "TissueFFPE",
            "Urine",
            "Other",
        ] {
            let (t, m) = miabis_material(code).unwrap_or_else(|| panic!("{code}"));
            let t: bonebank_schemas::SampleType = t.parse().unwrap();
            let m: bonebank_schemas::MaterialSubtype = m.parse().unwrap();
            assert!(m.sample_types().contains(&t), "{code}");
        }
        use bonebank_schemas::ValueSet;
        for code in bonebank_schemas::SampleType::CODES
            .iter()
            .chain(["Sputum", "CordBlood"].iter())
        {
            let (t, m) = miabis_detailed(code).unwrap_or_else(|| panic!("{code}"));
            let t: bonebank_schemas::SampleType = t.parse().unwrap();
            let m: bonebank_schemas::MaterialSubtype = m.parse().unwrap();
            assert!(m.sample_types().contains(&t), "{code}");
        }
        assert_eq!(miabis_detailed("Blood"), None);
        for code in ["RT", "2to10", "-18to-35", "-60to-85", "LN", "Other"] {
            miabis_temperature(code)
                .unwrap()
                .parse::<bonebank_schemas::StorageTemperature>()
                .unwrap();
        }
    }
}
