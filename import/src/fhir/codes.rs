//! The code systems and extensions of the BBMRI.de profiles and of MIABIS
//! on FHIR, as bonebank's values. The mapping is one table in the README
//! (*Importing FHIR*).

use serde_json::Value;

/// The BBMRI.de code systems and extensions read here.
pub(super) const SAMPLE_MATERIAL_TYPE: &str = "https://fhir.bbmri.de/CodeSystem/SampleMaterialType";
pub(super) const STORAGE_TEMPERATURE: &str =
    "https://fhir.bbmri.de/StructureDefinition/StorageTemperature";
pub(super) const SAMPLE_DIAGNOSIS: &str =
    "https://fhir.bbmri.de/StructureDefinition/SampleDiagnosis";
/// MIABIS on FHIR's code systems and extensions (canonical
/// `http://fhir.bbmri-eric.eu`).
pub(super) const MIABIS_MATERIAL_TYPE: &str =
    "http://fhir.bbmri-eric.eu/CodeSystem/miabis-material-type-CS";
pub(super) const MIABIS_DETAILED_TYPE: &str =
    "http://fhir.bbmri-eric.eu/CodeSystem/miabis-detailed-samply-type-cs";
pub(super) const MIABIS_STORAGE_TEMPERATURE: &str =
    "http://fhir.bbmri-eric.eu/StructureDefinition/miabis-sample-storage-temperature-extension";
pub(super) const MIABIS_DIAGNOSIS: &str =
    "http://fhir.bbmri-eric.eu/StructureDefinition/miabis-sample-diagnosis-extension";
/// ICD-10 (WHO) and ICD-10-GM, under their current and former system URLs.
pub(super) const ICD10_SYSTEMS: [&str; 3] = [
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
pub(super) fn material_of(
    concept: Option<&Value>,
) -> Result<(&'static str, &'static str), Option<&str>> {
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
pub(super) fn temperature_of(specimen: &Value) -> Result<&'static str, Option<&str>> {
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
pub(super) fn sex(gender: Option<&str>) -> Option<&'static str> {
    Some(match gender {
        Some("female") => "Female",
        Some("male") => "Male",
        Some("other") => "Undifferentiated",
        Some("unknown") | None => "Unknown",
        Some(_) => return None,
    })
}

/// The codes of a CodeableConcept from the given systems.
pub(super) fn codes<'a>(concept: Option<&'a Value>, systems: &[&str]) -> Vec<&'a str> {
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
pub(super) fn extensions<'a>(resource: &'a Value, url: &str) -> Vec<&'a Value> {
    resource
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(url))
        .filter_map(|e| e.get("valueCodeableConcept"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
