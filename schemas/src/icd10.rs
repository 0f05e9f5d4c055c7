//! ICD-10 diagnosis codes in one normal form, `S72.1`: the three-character
//! category, a dot and the first subcategory digit (or the category alone).
//! Danish SKS (`DS721`), ICD-10-GM (`S72.10`, `S72.1 R`, `M80.08+`) and plain
//! WHO spellings (`S721`, `s72.1`) all normalise to it; anything else is refused.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Error, Result};

/// A normalised ICD-10 code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Icd10(String);

/// ICD-10-GM's marks after the code: side (R, L, B) and certainty (G, V, Z, A).
const GM_MARKS: [&str; 7] = ["R", "L", "B", "G", "V", "Z", "A"];

impl Icd10 {
    /// Normalises a code written in any of the accepted spellings.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidIcd10 {
            value: input.to_owned(),
            reason,
        };
        let mut words = input.split_whitespace();
        let code = words.next().ok_or_else(|| invalid("it is empty"))?;
        if !words.all(|w| GM_MARKS.iter().any(|m| w.eq_ignore_ascii_case(m))) {
            return Err(invalid(
                "only the side (R, L, B) or certainty (G, V, Z, A) marks of ICD-10-GM may follow the code",
            ));
        }
        let code = code.to_ascii_uppercase();
        // ICD-10-GM marks etiology (+), manifestation (*) and extra codes (!).
        let code = code.strip_suffix(['+', '*', '!']).unwrap_or(&code);
        let b = code.as_bytes();
        // SKS puts a `D` (for "diagnosis") before the ICD-10 code: `DS721`.
        // `D50` itself is an ICD-10 code, so only a `D` before a letter is SKS.
        let sks = b.len() >= 2 && b[0] == b'D' && b[1].is_ascii_alphabetic();
        let b = if sks { &b[1..] } else { b };
        if b.len() < 3 || !b[0].is_ascii_uppercase() || !b[1..3].iter().all(u8::is_ascii_digit) {
            return Err(invalid(
                "a code starts with a letter and two digits, e.g. S72.1",
            ));
        }
        let mut rest = &b[3..];
        if let Some(after_dot) = rest.strip_prefix(b".") {
            if after_dot.is_empty() {
                return Err(invalid("a dot must be followed by a subcategory digit"));
            }
            rest = after_dot;
        }
        let Some((&first, extension)) = rest.split_first() else {
            return Ok(Self(String::from_utf8_lossy(b).into_owned()));
        };
        if !first.is_ascii_digit() {
            return Err(invalid(
                "the subcategory after the category is a digit, e.g. S72.1",
            ));
        }
        // ICD-10-GM adds digits (S72.10); SKS adds digits and letters (DC509A).
        let extension_ok = extension.len() <= 3
            && extension
                .iter()
                .all(|c| c.is_ascii_digit() || (sks && c.is_ascii_uppercase()));
        if !extension_ok {
            return Err(invalid(
                "too many or unexpected characters after the subcategory",
            ));
        }
        let category = std::str::from_utf8(&b[..3]).expect("checked ASCII");
        Ok(Self(format!("{category}.{}", first as char)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The three-character category, e.g. `S72` for `S72.1`.
    pub fn category(&self) -> &str {
        &self.0[..3]
    }

    /// The ICD-10 chapter (roman numeral) the code belongs to, e.g. `XIX` for
    /// injuries (S00–T98).
    pub fn chapter(&self) -> &'static str {
        let b = self.0.as_bytes();
        let number = (b[1] - b'0') * 10 + (b[2] - b'0');
        match (b[0], number) {
            (b'A' | b'B', _) => "I",
            (b'C', _) | (b'D', 0..=48) => "II",
            (b'D', _) => "III",
            (b'E', _) => "IV",
            (b'F', _) => "V",
            (b'G', _) => "VI",
            (b'H', 0..=59) => "VII",
            (b'H', _) => "VIII",
            (b'I', _) => "IX",
            (b'J', _) => "X",
            (b'K', _) => "XI",
            (b'L', _) => "XII",
            (b'M', _) => "XIII",
            (b'N', _) => "XIV",
            (b'O', _) => "XV",
            (b'P', _) => "XVI",
            (b'Q', _) => "XVII",
            (b'R', _) => "XVIII",
            (b'S' | b'T', _) => "XIX",
            (b'V' | b'W' | b'X' | b'Y', _) => "XX",
            (b'Z', _) => "XXI",
            _ => "XXII",
        }
    }
}

impl std::str::FromStr for Icd10 {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Icd10 {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<Icd10> for String {
    fn from(code: Icd10) -> Self {
        code.0
    }
}

impl fmt::Display for Icd10 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Icd10::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).0
    }

    #[test]
    fn spellings_normalise_to_one_form() {
        for s in [
            "S72.1",
            "S721",
            "s72.1",
            " S72.1 ",
            "DS721",
            "ds721",
            "S72.10",
            "S72.11",
            "DS7210",
            "S72.1 R",
            "S72.1 L G",
            "S72.10 B",
        ] {
            assert_eq!(norm(s), "S72.1", "{s}");
        }
        assert_eq!(norm("M80.08+"), "M80.0");
        assert_eq!(norm("M81"), "M81");
        assert_eq!(norm("DM81"), "M81");
        assert_eq!(norm("M84.1"), "M84.1");
        assert_eq!(norm("DC509A"), "C50.9");
    }

    #[test]
    fn d_codes_are_not_mistaken_for_sks() {
        assert_eq!(norm("D50.9"), "D50.9");
        assert_eq!(norm("D509"), "D50.9");
        assert_eq!(norm("DD509"), "D50.9");
    }

    #[test]
    fn non_codes_are_refused() {
        for s in [
            "",
            "   ",
            "S7",
            "72.1",
            "SS72",
            "S72.",
            "S72..1",
            "S72.X",
            "S72-",
            "S72.-",
            "femur",
            "S72.1 links",
            "S72.1x",
            "S72.12345",
            "DS",
            "Ö72.1",
            "S72.1;",
        ] {
            assert!(
                Icd10::parse(s).is_err(),
                "{s:?} was accepted as {:?}",
                Icd10::parse(s)
            );
        }
        let err = Icd10::parse("S7").unwrap_err().to_string();
        assert!(err.contains("'S7' is not an ICD-10 code"), "{err}");
    }

    #[test]
    fn category_and_chapter() {
        let c = Icd10::parse("S72.1").unwrap();
        assert_eq!(c.category(), "S72");
        assert_eq!(c.chapter(), "XIX");
        assert_eq!(Icd10::parse("M81").unwrap().chapter(), "XIII");
        assert_eq!(Icd10::parse("D48.1").unwrap().chapter(), "II");
        assert_eq!(Icd10::parse("D50.9").unwrap().chapter(), "III");
        assert_eq!(Icd10::parse("H60").unwrap().chapter(), "VIII");
    }

    #[test]
    fn serde_normalises_and_refuses() {
        let c: Icd10 = serde_json::from_str("\"DS721\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"S72.1\"");
        assert!(serde_json::from_str::<Icd10>("\"hip\"").is_err());
    }
}
