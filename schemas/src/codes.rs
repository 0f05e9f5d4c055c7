//! The value sets of the coded columns. Codes follow MIABIS where MIABIS has
//! them (sex, sample type, storage temperature); material subtypes are this
//! network's local codes for what fracture surgery and blood banking produce.

use crate::value_set::ValueSet;

value_set! {
    /// The donor's sex as MIABIS records it.
    pub enum Sex ("sex") {
        Female = "Female",
        Male = "Male",
        Unknown = "Unknown",
        Undifferentiated = "Undifferentiated",
        NotApplicable = "NotApplicable",
    }
}

value_set! {
    /// MIABIS-on-FHIR sample types relevant to the sites of this network.
    pub enum SampleType ("sample type") {
        Bone = "Bone",
        BoneMarrowAspirate = "BoneMarrowAspirate",
        BoneMarrowPlasma = "BoneMarrowPlasma",
        BoneMarrowWhole = "BoneMarrowWhole",
        BuffyCoat = "BuffyCoat",
        Dna = "DNA",
        Rna = "RNA",
        Plasma = "Plasma",
        Serum = "Serum",
        WholeBlood = "WholeBlood",
        Pbmc = "PBMC",
        PrimaryCells = "PrimaryCells",
        StemCells = "StemCells",
        SynovialFluid = "SynovialFluid",
        TissueFixed = "TissueFixed",
        TissueFreshFrozen = "TissueFreshFrozen",
        Urine = "Urine",
        Saliva = "Saliva",
        Other = "Other",
    }
}

value_set! {
    /// The material a sample was taken or derived from, more precisely than its
    /// sample type: where a marrow aspirate came from, whether cells were
    /// culture-expanded, which tube a plasma was drawn into.
    pub enum MaterialSubtype ("material subtype") {
        BmaIliacCrest = "bma_iliac_crest",
        BmaProximalFemur = "bma_proximal_femur",
        RiaAspirate = "ria_aspirate",
        BoneMarrowPlasma = "bm_plasma",
        CancellousBone = "cancellous_bone",
        MscCulture = "msc_culture",
        WholeBloodEdta = "whole_blood_edta",
        PlasmaEdta = "plasma_edta",
        PlasmaCitrate = "plasma_citrate",
        Serum = "serum",
        BuffyCoat = "buffy_coat",
        Pbmc = "pbmc",
        DnaBlood = "dna_blood",
        RnaBlood = "rna_blood",
        TissueFfpe = "tissue_ffpe",
        TissueFrozen = "tissue_frozen",
        SynovialFluid = "synovial_fluid",
        Other = "other",
    }
}

impl MaterialSubtype {
    /// The sample types this material can be recorded as. `other` fits any.
    pub fn sample_types(self) -> &'static [SampleType] {
        use SampleType as T;
        match self {
            Self::BmaIliacCrest | Self::BmaProximalFemur => {
                &[T::BoneMarrowAspirate, T::BoneMarrowWhole]
            }
            Self::RiaAspirate => &[T::BoneMarrowAspirate, T::Other],
            Self::BoneMarrowPlasma => &[T::BoneMarrowPlasma],
            Self::CancellousBone => &[T::Bone],
            Self::MscCulture => &[T::StemCells, T::PrimaryCells],
            Self::WholeBloodEdta => &[T::WholeBlood],
            Self::PlasmaEdta | Self::PlasmaCitrate => &[T::Plasma],
            Self::Serum => &[T::Serum],
            Self::BuffyCoat => &[T::BuffyCoat],
            Self::Pbmc => &[T::Pbmc],
            Self::DnaBlood => &[T::Dna],
            Self::RnaBlood => &[T::Rna],
            Self::TissueFfpe => &[T::TissueFixed],
            Self::TissueFrozen => &[T::TissueFreshFrozen],
            Self::SynovialFluid => &[T::SynovialFluid],
            Self::Other => SampleType::ALL,
        }
    }

    /// Whether the material is culture-expanded, and so has a passage number.
    pub fn has_passages(self) -> bool {
        self == Self::MscCulture
    }
}

value_set! {
    /// MIABIS storage temperature ranges.
    pub enum StorageTemperature ("storage temperature") {
        RoomTemperature = "RT",
        Fridge = "2to10",
        Freezer = "-18to-35",
        DeepFreezer = "-60to-85",
        LiquidNitrogenVapour = "LN_vapour",
        LiquidNitrogenLiquid = "LN_liquid",
        Other = "Other",
    }
}

value_set! {
    /// Smoking status of the donor, where it was recorded.
    pub enum SmokingStatus ("smoking status") {
        Never = "never",
        Former = "former",
        Current = "current",
    }
}

value_set! {
    /// The uses a donor can consent to. Each is a boolean column
    /// `consent_<code>` on the donor; the query surface exposes them as filters.
    pub enum Consent ("consent") {
        /// Research in general (GA4GH DUO:0000042, general research use).
        Research = "research",
        /// Commercial use (MIABIS "Commercial use"; its absence is DUO:0000046).
        Commercial = "commercial",
        /// Genetic analyses (MIABIS "Genetic data use").
        Genetic = "genetic",
        /// Use of the donor's harvested stem cells for the donor's own treatment.
        Autologous = "autologous",
        /// Donation of harvested stem cells to another patient.
        Allogeneic = "allogeneic",
    }
}

impl Consent {
    /// The consent columns, in the order of [`Consent::ALL`].
    pub const ALL_COLUMNS: &'static [&'static str] = &[
        "consent_research",
        "consent_commercial",
        "consent_genetic",
        "consent_autologous",
        "consent_allogeneic",
    ];

    /// The boolean column that records this consent.
    pub fn column(self) -> &'static str {
        match self {
            Self::Research => "consent_research",
            Self::Commercial => "consent_commercial",
            Self::Genetic => "consent_genetic",
            Self::Autologous => "consent_autologous",
            Self::Allogeneic => "consent_allogeneic",
        }
    }
}

value_set! {
    /// The countries of the network. Sample metadata never leaves its country.
    pub enum Country ("country") {
        Germany = "DE",
        Denmark = "DK",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_back_to_their_member() {
        for t in SampleType::ALL {
            assert_eq!(t.code().parse::<SampleType>().unwrap(), *t);
        }
        for t in StorageTemperature::ALL {
            assert_eq!(t.code().parse::<StorageTemperature>().unwrap(), *t);
        }
        for m in MaterialSubtype::ALL {
            assert_eq!(m.code().parse::<MaterialSubtype>().unwrap(), *m);
            assert!(!m.sample_types().is_empty());
        }
    }

    #[test]
    fn unknown_code_lists_what_is_allowed() {
        let err = "F".parse::<Sex>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "'F' is not a sex code; allowed: Female, Male, Unknown, Undifferentiated, NotApplicable"
        );
    }

    #[test]
    fn serde_uses_the_code() {
        let json = serde_json::to_string(&StorageTemperature::LiquidNitrogenVapour).unwrap();
        assert_eq!(json, "\"LN_vapour\"");
        let back: StorageTemperature = serde_json::from_str("\"-60to-85\"").unwrap();
        assert_eq!(back, StorageTemperature::DeepFreezer);
        assert!(serde_json::from_str::<Sex>("\"female\"").is_err());
    }

    #[test]
    fn consent_columns_match_codes() {
        assert_eq!(
            Consent::ALL.iter().map(|c| c.column()).collect::<Vec<_>>(),
            Consent::ALL_COLUMNS
        );
        for c in Consent::ALL {
            assert_eq!(c.column(), format!("consent_{}", c.code()));
        }
    }
}

value_set! {
    /// What a user is to a site, from their verified identity.
    pub enum Role ("role") {
        /// Runs feasibility counts within the site's limits.
        Researcher = "researcher",
        /// Scopes studies for a company: only samples with commercial consent.
        Industry = "industry",
        /// Decides, for one site, which queries run.
        Steward = "steward",
    }
}
