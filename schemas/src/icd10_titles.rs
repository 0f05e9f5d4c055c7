//! Titles of the ICD-10 codes the network's sites hold (the categories of
//! the default policy and their subcategories in use), in English, German
//! and Danish, so that a researcher can find a diagnosis by words as well as
//! by code. Short forms of the WHO, ICD-10-GM and SKS titles.

use serde::{Deserialize, Serialize};

use crate::Icd10;

/// One code and its titles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    code: &'static str,
    en: &'static str,
    de: &'static str,
    da: &'static str,
}

const fn e(code: &'static str, en: &'static str, de: &'static str, da: &'static str) -> Entry {
    Entry { code, en, de, da }
}

const TITLES: &[Entry] = &[
    e(
        "C90",
        "Multiple myeloma and malignant plasma cell neoplasms",
        "Plasmozytom und bösartige Plasmazellen-Neubildungen",
        "Myelomatose og ondartede plasmacellesvulster",
    ),
    e(
        "C90.0",
        "Multiple myeloma",
        "Multiples Myelom",
        "Myelomatose",
    ),
    e(
        "D47",
        "Other neoplasms of uncertain behaviour of lymphoid, haematopoietic and related tissue",
        "Sonstige Neubildungen unsicheren Verhaltens des lymphatischen, blutbildenden und verwandten Gewebes",
        "Andre svulster af usikker karakter i lymfatisk, bloddannende og beslægtet væv",
    ),
    e(
        "D47.1",
        "Chronic myeloproliferative disease",
        "Chronische myeloproliferative Krankheit",
        "Kronisk myeloproliferativ sygdom",
    ),
    e(
        "D69",
        "Purpura and other haemorrhagic conditions",
        "Purpura und sonstige hämorrhagische Diathesen",
        "Purpura og andre blødningstilstande",
    ),
    e(
        "D69.3",
        "Idiopathic thrombocytopenic purpura",
        "Idiopathische thrombozytopenische Purpura",
        "Idiopatisk trombocytopenisk purpura",
    ),
    e(
        "D80",
        "Immunodeficiency with predominantly antibody defects",
        "Immundefekt mit vorherrschendem Antikörpermangel",
        "Immundefekt med overvejende antistofmangel",
    ),
    e(
        "D80.1",
        "Nonfamilial hypogammaglobulinaemia",
        "Nichtfamiliäre Hypogammaglobulinämie",
        "Ikke-familiær hypogammaglobulinæmi",
    ),
    e(
        "D84",
        "Other immunodeficiencies",
        "Sonstige Immundefekte",
        "Andre immundefekter",
    ),
    e(
        "D84.9",
        "Immunodeficiency, unspecified",
        "Immundefekt, nicht näher bezeichnet",
        "Immundefekt, uspecificeret",
    ),
    e(
        "M05",
        "Seropositive rheumatoid arthritis",
        "Seropositive chronische Polyarthritis",
        "Seropositiv reumatoid artritis",
    ),
    e(
        "M05.9",
        "Seropositive rheumatoid arthritis, unspecified",
        "Seropositive chronische Polyarthritis, nicht näher bezeichnet",
        "Seropositiv reumatoid artritis, uspecificeret",
    ),
    e(
        "M06",
        "Other rheumatoid arthritis",
        "Sonstige chronische Polyarthritis",
        "Anden reumatoid artritis",
    ),
    e(
        "M06.9",
        "Rheumatoid arthritis, unspecified",
        "Chronische Polyarthritis, nicht näher bezeichnet",
        "Reumatoid artritis, uspecificeret",
    ),
    e(
        "M16",
        "Coxarthrosis (arthrosis of hip)",
        "Koxarthrose (Arthrose des Hüftgelenkes)",
        "Hofteledsartrose",
    ),
    e(
        "M32",
        "Systemic lupus erythematosus",
        "Systemischer Lupus erythematodes",
        "Systemisk lupus erythematosus",
    ),
    e(
        "M32.9",
        "Systemic lupus erythematosus, unspecified",
        "Systemischer Lupus erythematodes, nicht näher bezeichnet",
        "Systemisk lupus erythematosus, uspecificeret",
    ),
    e(
        "M80",
        "Osteoporosis with pathological fracture",
        "Osteoporose mit pathologischer Fraktur",
        "Knogleskørhed med patologisk fraktur",
    ),
    e(
        "M80.9",
        "Osteoporosis with pathological fracture, unspecified",
        "Osteoporose mit pathologischer Fraktur, nicht näher bezeichnet",
        "Knogleskørhed med patologisk fraktur, uspecificeret",
    ),
    e(
        "M81",
        "Osteoporosis without pathological fracture",
        "Osteoporose ohne pathologische Fraktur",
        "Knogleskørhed uden patologisk fraktur",
    ),
    e(
        "M81.9",
        "Osteoporosis, unspecified",
        "Osteoporose, nicht näher bezeichnet",
        "Knogleskørhed, uspecificeret",
    ),
    e(
        "M84",
        "Disorders of continuity of bone",
        "Veränderungen der Knochenkontinuität",
        "Forstyrrelser i knoglens kontinuitet",
    ),
    e(
        "M84.1",
        "Nonunion of fracture (pseudarthrosis)",
        "Nichtvereinigung der Frakturenden (Pseudarthrose)",
        "Manglende frakturheling (pseudartrose)",
    ),
    e(
        "S32",
        "Fracture of lumbar spine and pelvis",
        "Fraktur der Lendenwirbelsäule und des Beckens",
        "Brud på lændehvirvelsøjle og bækken",
    ),
    e(
        "S32.4",
        "Fracture of acetabulum",
        "Fraktur des Acetabulums",
        "Brud på hofteskål",
    ),
    e(
        "S42",
        "Fracture of shoulder and upper arm",
        "Fraktur im Bereich der Schulter und des Oberarmes",
        "Brud på skulder og overarm",
    ),
    e(
        "S42.2",
        "Fracture of upper end of humerus",
        "Fraktur des proximalen Endes des Humerus",
        "Brud på øvre ende af overarmsknogle",
    ),
    e(
        "S42.3",
        "Fracture of shaft of humerus",
        "Fraktur des Humerusschaftes",
        "Brud på overarmsknoglens skaft",
    ),
    e(
        "S52",
        "Fracture of forearm",
        "Fraktur des Unterarmes",
        "Brud på underarm",
    ),
    e(
        "S52.5",
        "Fracture of lower end of radius",
        "Distale Fraktur des Radius",
        "Brud på nedre ende af spoleben",
    ),
    e(
        "S72",
        "Fracture of femur",
        "Fraktur des Femurs",
        "Brud på lårben",
    ),
    e(
        "S72.0",
        "Fracture of neck of femur",
        "Schenkelhalsfraktur",
        "Brud på lårbenshals",
    ),
    e(
        "S72.1",
        "Pertrochanteric fracture",
        "Pertrochantäre Fraktur",
        "Pertrokantært brud",
    ),
    e(
        "S72.2",
        "Subtrochanteric fracture",
        "Subtrochantäre Fraktur",
        "Subtrokantært brud",
    ),
    e(
        "S72.3",
        "Fracture of shaft of femur",
        "Fraktur des Femurschaftes",
        "Brud på lårbensskaft",
    ),
    e(
        "S82",
        "Fracture of lower leg, including ankle",
        "Fraktur des Unterschenkels, einschließlich des oberen Sprunggelenkes",
        "Brud på underben inklusive ankel",
    ),
    e(
        "S82.1",
        "Fracture of upper end of tibia",
        "Fraktur des proximalen Endes der Tibia",
        "Brud på øvre ende af skinneben",
    ),
    e(
        "S82.2",
        "Fracture of shaft of tibia",
        "Fraktur des Tibiaschaftes",
        "Brud på skinnebensskaft",
    ),
    e(
        "S82.3",
        "Fracture of lower end of tibia",
        "Distale Fraktur der Tibia",
        "Brud på nedre ende af skinneben",
    ),
    e(
        "S82.5",
        "Fracture of medial malleolus",
        "Fraktur des Innenknöchels",
        "Brud på indvendige ankelknude",
    ),
    e(
        "S82.6",
        "Fracture of lateral malleolus",
        "Fraktur des Außenknöchels",
        "Brud på udvendige ankelknude",
    ),
];

/// A code found by a search, with its titles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeMatch {
    /// The normal form, e.g. `S72.1`.
    pub code: String,
    pub en: Option<String>,
    pub de: Option<String>,
    pub da: Option<String>,
}

impl From<&Entry> for CodeMatch {
    fn from(e: &Entry) -> Self {
        Self {
            code: e.code.into(),
            en: Some(e.en.into()),
            de: Some(e.de.into()),
            da: Some(e.da.into()),
        }
    }
}

/// Codes matching `query`, at most `limit`: a code written in any accepted
/// spelling (`S72.1`, `DS721`, `S72.10`) comes first in its normal form,
/// then codes that start with the text, then codes whose title in any of
/// the three languages contains every word of it (ignoring case).
pub fn search(query: &str, limit: usize) -> Vec<CodeMatch> {
    let query = query.trim();
    let mut out: Vec<CodeMatch> = Vec::new();
    let mut push = |m: CodeMatch| {
        if out.len() < limit && !out.iter().any(|o| o.code == m.code) {
            out.push(m);
        }
    };
    if query.is_empty() {
        return Vec::new();
    }
    if let Ok(code) = Icd10::parse(query) {
        match TITLES.iter().find(|e| e.code == code.as_str()) {
            Some(e) => push(e.into()),
            None => push(CodeMatch {
                code: code.as_str().into(),
                en: None,
                de: None,
                da: None,
            }),
        }
    }
    let upper = query.to_uppercase();
    // SKS writes a D before the code.
    let code_prefix = match upper.strip_prefix('D') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic()) => rest.to_owned(),
        _ => upper.clone(),
    };
    for e in TITLES {
        if e.code.starts_with(&code_prefix) || e.code.replace('.', "").starts_with(&code_prefix) {
            push(e.into());
        }
    }
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    for e in TITLES {
        let titles = [e.en, e.de, e.da].map(str::to_lowercase);
        if titles
            .iter()
            .any(|t| words.iter().all(|w| t.contains(w.as_str())))
        {
            push(e.into());
        }
    }
    out
}

/// Every code the table has, with its titles.
pub fn all() -> impl Iterator<Item = CodeMatch> {
    TITLES.iter().map(CodeMatch::from)
}

/// The titles of one code in its normal form, if the table has them.
pub fn title(code: &str) -> Option<CodeMatch> {
    TITLES.iter().find(|e| e.code == code).map(CodeMatch::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_in_the_table_is_in_normal_form() {
        for e in TITLES {
            assert_eq!(Icd10::parse(e.code).unwrap().as_str(), e.code);
        }
    }

    #[test]
    fn codes_are_found_in_any_spelling_and_by_words_in_three_languages() {
        let first = |q: &str| search(q, 10).first().map(|m| m.code.clone());
        assert_eq!(first("S72.1").as_deref(), Some("S72.1"));
        assert_eq!(first("DS721").as_deref(), Some("S72.1"), "Danish SKS");
        assert_eq!(first("S72.10").as_deref(), Some("S72.1"), "ICD-10-GM");
        assert_eq!(first("pertrochanteric").as_deref(), Some("S72.1"));
        assert_eq!(first("Schenkelhals").as_deref(), Some("S72.0"));
        assert_eq!(first("knogleskørhed uden").as_deref(), Some("M81"));
        let femur: Vec<String> = search("S72", 10).into_iter().map(|m| m.code).collect();
        assert_eq!(femur, ["S72", "S72.0", "S72.1", "S72.2", "S72.3"]);
        assert!(search("no such words", 10).is_empty());
        assert_eq!(search("fracture", 3).len(), 3, "limit");
        let unknown = search("J45.0", 5);
        assert_eq!(unknown[0].code, "J45.0");
        assert_eq!(
            unknown[0].en, None,
            "a valid code without a title in the table"
        );
    }
}
