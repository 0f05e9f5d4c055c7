//! The dimensions a query can group by, and each one's public value set: the
//! keys a grouped answer lists, zeros included, whatever the data holds.

use bonebank_schemas::Table;

/// A dimension: a column of the surface whose values are public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    SiteId,
    Country,
    SampleType,
    MaterialSubtype,
    StorageTemperature,
    Sex,
    /// Ten-year bands of `age_at_sampling`: `0-9` … `80-89`, `90+`.
    AgeBand,
    /// Five-year bands of `age_at_sampling`: `0-4` … `85-89`, `90+`.
    AgeBand5,
    /// The BBMRI-ERIC Directory's age ranges of `age_at_sampling`, in whole
    /// years ([`AGE_RANGES`]).
    AgeRange,
    SamplingYear,
    /// The ICD-10 category of the primary diagnosis, from the policy's list;
    /// `other` for the rest, `none` for samples without one.
    DiagnosisCategory,
    /// The ICD-10 chapter (roman numeral) of the primary diagnosis, or `none`.
    DiagnosisChapter,
}

pub const ALL: [Dimension; 12] = [
    Dimension::SiteId,
    Dimension::Country,
    Dimension::SampleType,
    Dimension::MaterialSubtype,
    Dimension::StorageTemperature,
    Dimension::Sex,
    Dimension::AgeBand,
    Dimension::AgeBand5,
    Dimension::AgeRange,
    Dimension::SamplingYear,
    Dimension::DiagnosisCategory,
    Dimension::DiagnosisChapter,
];

/// The age bands in order.
pub const AGE_BANDS: [&str; 10] = [
    "0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+",
];

/// The five-year age bands in order; ages are top-coded at 90, so the last
/// band is `90+`.
pub const AGE_BANDS_5: [&str; 19] = [
    "0-4", "5-9", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49", "50-54",
    "55-59", "60-64", "65-69", "70-74", "75-79", "80-84", "85-89", "90+",
];

/// The place in [`AGE_BANDS`] of an age at sampling in years.
pub fn age_band_index(age: i64) -> usize {
    (age / 10).clamp(0, 9) as usize
}

/// The place in [`AGE_BANDS_5`] of an age at sampling in years.
pub fn age_band_5_index(age: i64) -> usize {
    (age / 5).clamp(0, 18) as usize
}

/// The five-year band of an age at sampling in years.
pub fn age_band_5(age: i64) -> &'static str {
    AGE_BANDS_5[age_band_5_index(age)]
}

/// The BBMRI-ERIC Directory's age ranges (its facts' `age_range`), in
/// order, with the first age in whole years each holds. Ages are whole
/// years here, so the Directory's newborns (0–1 months) and infants and
/// toddlers (2–23 months) are one range, its "Infant (0-23 months)".
pub const AGE_RANGES: [(&str, i64); 8] = [
    ("Infant (0-23 months)", 0),
    ("Child (2-12 years)", 2),
    ("Adolescent (13-17 years)", 13),
    ("Young adult (18-24 years)", 18),
    ("Adult (25-44 years)", 25),
    ("Middle-aged (45-64 years)", 45),
    ("Aged (65-79 years)", 65),
    ("Aged (80+ years)", 80),
];

/// The place in [`AGE_RANGES`] of an age at sampling in years.
pub fn age_range_index(age: i64) -> usize {
    AGE_RANGES
        .iter()
        .rposition(|(_, from)| age >= *from)
        .unwrap_or(0)
}

/// The Directory's age range of an age at sampling in years.
pub fn age_range(age: i64) -> &'static str {
    AGE_RANGES[age_range_index(age)].0
}

/// ICD-10 chapters in order.
pub const CHAPTERS: [&str; 22] = [
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV",
    "XVI", "XVII", "XVIII", "XIX", "XX", "XXI", "XXII",
];

impl Dimension {
    /// The column name in queries and on the node's surface table.
    pub fn name(self) -> &'static str {
        match self {
            Self::SiteId => "site_id",
            Self::Country => "country",
            Self::SampleType => "sample_type",
            Self::MaterialSubtype => "material_subtype",
            Self::StorageTemperature => "storage_temperature",
            Self::Sex => "sex",
            Self::AgeBand => "age_band",
            Self::AgeBand5 => "age_band_5",
            Self::AgeRange => "age_range",
            Self::SamplingYear => "sampling_year",
            Self::DiagnosisCategory => "diagnosis_3char",
            Self::DiagnosisChapter => "diagnosis_chapter",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether every sample of a donor has the same value here (the donor's
    /// site, country and sex), so that along this dimension a donor is in
    /// exactly one cell, whatever the bounds. Every other dimension is a
    /// sample's own (type, age at sampling, year, diagnosis) and a donor can
    /// be in as many of its cells as the donor has kinds of samples.
    pub fn fixed_per_donor(self) -> bool {
        match self {
            // A node answers for one site, in one country.
            Self::SiteId | Self::Country => true,
            // A column of the donors table has one value per donor; the
            // samples' columns, and what is derived from them, do not.
            d => {
                d.derived_from().is_none()
                    && Table::Donors.column(d.name()).is_some()
                    && Table::Samples.column(d.name()).is_none()
            }
        }
    }

    /// Whether the dimension is derived from another column and so exists for
    /// GROUP BY only.
    pub fn derived_from(self) -> Option<&'static str> {
        match self {
            Self::AgeBand | Self::AgeBand5 | Self::AgeRange => Some("age_at_sampling"),
            Self::DiagnosisCategory | Self::DiagnosisChapter => Some("diagnosis"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Along site, country and sex a donor is in one cell; along every
    /// dimension of a sample's own a donor may be in many, and is bounded.
    #[test]
    fn the_dimensions_fixed_per_donor_are_the_sites_and_the_donors_own() {
        let fixed: Vec<&str> = ALL
            .into_iter()
            .filter(|d| d.fixed_per_donor())
            .map(Dimension::name)
            .collect();
        assert_eq!(fixed, ["site_id", "country", "sex"]);
    }

    #[test]
    fn every_age_falls_in_one_five_year_band() {
        assert_eq!(age_band_5(0), "0-4");
        assert_eq!(age_band_5(4), "0-4");
        assert_eq!(age_band_5(5), "5-9");
        assert_eq!(age_band_5(69), "65-69");
        assert_eq!(age_band_5(89), "85-89");
        assert_eq!(age_band_5(90), "90+");
        assert_eq!(age_band_5(120), "90+");
        // Each band is the age its name starts at, five years on.
        for (i, band) in AGE_BANDS_5.iter().enumerate() {
            assert_eq!(age_band_5(5 * i as i64), *band);
        }
    }

    #[test]
    fn every_age_falls_in_one_directory_range() {
        assert_eq!(age_range(0), "Infant (0-23 months)");
        assert_eq!(age_range(1), "Infant (0-23 months)");
        assert_eq!(age_range(2), "Child (2-12 years)");
        assert_eq!(age_range(17), "Adolescent (13-17 years)");
        assert_eq!(age_range(18), "Young adult (18-24 years)");
        assert_eq!(age_range(44), "Adult (25-44 years)");
        assert_eq!(age_range(45), "Middle-aged (45-64 years)");
        assert_eq!(age_range(79), "Aged (65-79 years)");
        assert_eq!(age_range(80), "Aged (80+ years)");
        assert_eq!(age_range(120), "Aged (80+ years)");
    }
}
