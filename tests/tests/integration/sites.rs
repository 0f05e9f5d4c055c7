//! The three synthetic demo sites look like the real ones: the figures of the
//! MIABIS reference notes hold within sampling error, and every reference
//! between tables resolves.

use std::collections::{HashMap, HashSet};

use bonebank_node::dataset::DataDir;
use bonebank_node::generate::{self, Profile, Spec};
use bonebank_node::{export, import};
use bonebank_schemas::{SiteId, Table};
use bonebank_tests::Columns;

struct Site {
    donors: Columns,
    samples: Columns,
    diagnoses: Columns,
}

/// Generates a site as CSV, imports it through the checked import path and
/// reads the stored tables back.
fn site(id: &str, donors: u64) -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let site = SiteId::parse(id).unwrap();
    let spec = Spec {
        profile: Profile::for_site(&site, None).unwrap(),
        site,
        donors,
        seed: 2026,
        max_samples: None,
    };
    generate::into_csv(&spec, tmp.path()).unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    let files: Vec<_> = [Table::Donors, Table::Samples, Table::Diagnoses]
        .into_iter()
        .map(|t| (t, tmp.path().join(format!("{t}.csv"))))
        .collect();
    import::import(&dir, &files).unwrap();
    // And it survives a round trip through export.
    export::to_csv(&dir, Table::Samples, &tmp.path().join("again.csv")).unwrap();
    Site {
        donors: Columns::load(&dir, Table::Donors),
        samples: Columns::load(&dir, Table::Samples),
        diagnoses: Columns::load(&dir, Table::Diagnoses),
    }
}

fn share(hits: usize, of: usize) -> f64 {
    hits as f64 / of as f64
}

fn assert_near(what: &str, value: f64, expected: f64, tolerance: f64) {
    assert!(
        (value - expected).abs() <= tolerance,
        "{what}: {value:.3}, expected {expected} ± {tolerance}"
    );
}

impl Site {
    /// donor id → sex
    fn sex_of(&self) -> HashMap<&str, &str> {
        let ids = self.donors.text("donor_id");
        let sex = self.donors.text("sex");
        ids.iter()
            .zip(sex)
            .map(|(i, s)| (i.as_deref().unwrap(), s.as_deref().unwrap()))
            .collect()
    }

    /// sample id → donor id
    fn donor_of(&self) -> HashMap<&str, &str> {
        let ids = self.samples.text("sample_id");
        let donors = self.samples.text("donor_id");
        ids.iter()
            .zip(donors)
            .map(|(i, d)| (i.as_deref().unwrap(), d.as_deref().unwrap()))
            .collect()
    }

    /// donor id → (primary diagnosis, age at sampling)
    fn primary_of(&self) -> HashMap<&str, (&str, i32)> {
        let donor_of = self.donor_of();
        let ages: HashMap<&str, i32> = self
            .samples
            .text("sample_id")
            .iter()
            .zip(self.samples.int("age_at_sampling"))
            .map(|(s, a)| (s.as_deref().unwrap(), a.unwrap()))
            .collect();
        let mut out = HashMap::new();
        let (samples, codes, primary) = (
            self.diagnoses.text("sample_id"),
            self.diagnoses.text("diagnosis"),
            self.diagnoses.flag("is_primary"),
        );
        for i in 0..self.diagnoses.rows {
            if primary[i] == Some(true) {
                let sample = samples[i].as_deref().unwrap();
                out.insert(
                    donor_of[sample],
                    (codes[i].as_deref().unwrap(), ages[sample]),
                );
            }
        }
        out
    }

    fn check_references(&self) {
        let donors: HashSet<_> = self.donors.text("donor_id").iter().collect();
        assert!(
            self.samples
                .text("donor_id")
                .iter()
                .all(|d| donors.contains(d)),
            "a sample without a donor"
        );
        let samples: HashSet<_> = self.samples.text("sample_id").iter().collect();
        assert!(
            self.diagnoses
                .text("sample_id")
                .iter()
                .all(|s| samples.contains(s)),
            "a diagnosis without a sample"
        );
    }

    fn check_donor_figures(&self) {
        let n = self.donors.rows;
        let yes = |c: &str| {
            self.donors
                .flag(c)
                .iter()
                .filter(|v| **v == Some(true))
                .count()
        };
        assert_near(
            "withdrawn consent",
            share(yes("consent_withdrawn"), n),
            0.01,
            0.006,
        );
        assert_near(
            "research consent",
            share(yes("consent_research"), n),
            0.995,
            0.006,
        );
        assert_near(
            "commercial consent",
            share(yes("consent_commercial"), n),
            0.65,
            0.03,
        );
        assert_near(
            "genetic consent",
            share(yes("consent_genetic"), n),
            0.85,
            0.03,
        );
        let bmi_missing = share(
            self.donors
                .number("bmi")
                .iter()
                .filter(|v| v.is_none())
                .count(),
            n,
        );
        assert_near("BMI missing", bmi_missing, 0.40, 0.03);
        let smoking_missing = share(
            self.donors
                .text("smoking_status")
                .iter()
                .filter(|v| v.is_none())
                .count(),
            n,
        );
        assert_near("smoking status missing", smoking_missing, 0.50, 0.03);
    }
}

#[test]
fn fracture_sites_follow_the_reference_figures() {
    for id in ["DE-LUE", "DK-ODE"] {
        let s = site(id, 6_000);
        s.check_references();
        s.check_donor_figures();
        let sex = s.sex_of();
        let primary = s.primary_of();

        let hip: Vec<_> = primary
            .iter()
            .filter(|(_, (c, _))| matches!(*c, "S72.0" | "S72.1" | "S72.2"))
            .collect();
        let women: Vec<_> = hip.iter().filter(|(d, _)| sex[**d] == "Female").collect();
        assert_near(
            &format!("{id}: women among hip fractures"),
            share(women.len(), hip.len()),
            0.70,
            0.03,
        );
        let mean_age =
            women.iter().map(|(_, (_, a))| f64::from(*a)).sum::<f64>() / women.len() as f64;
        assert_near(
            &format!("{id}: mean age of women with hip fractures"),
            mean_age,
            82.0,
            1.0,
        );
        assert!(hip.iter().all(|(_, (_, a))| (50..=100).contains(a)));
        let neck = hip.iter().filter(|(_, (c, _))| *c == "S72.0").count();
        assert_near(
            &format!("{id}: neck among hip fractures"),
            share(neck, hip.len()),
            0.52,
            0.03,
        );

        let shaft: Vec<_> = primary
            .iter()
            .filter(|(_, (c, _))| matches!(*c, "S72.3" | "S82.2"))
            .collect();
        let men = shaft.iter().filter(|(d, _)| sex[**d] == "Male").count();
        assert_near(
            &format!("{id}: men among shaft fractures"),
            share(men, shaft.len()),
            0.70,
            0.04,
        );
        let shaft_age =
            shaft.iter().map(|(_, (_, a))| f64::from(*a)).sum::<f64>() / shaft.len() as f64;
        assert_near(
            &format!("{id}: mean age with shaft fractures"),
            shaft_age,
            40.0,
            1.5,
        );

        // MSC: cultures only as msc_culture with passages 0–5, isolated from
        // about two thirds of the donors who gave an aspirate.
        let materials = s.samples.text("material_subtype");
        let passages = s.samples.int("passage_number");
        let donors = s.samples.text("donor_id");
        let mut aspirate_donors = HashSet::new();
        let mut msc_donors = HashSet::new();
        for i in 0..s.samples.rows {
            let m = materials[i].as_deref().unwrap();
            if m == "msc_culture" {
                assert!(passages[i].is_some_and(|p| (0..=5).contains(&p)));
                msc_donors.insert(&donors[i]);
            } else {
                assert!(passages[i].is_none());
            }
            if matches!(m, "bma_iliac_crest" | "bma_proximal_femur" | "ria_aspirate") {
                aspirate_donors.insert(&donors[i]);
            }
        }
        assert!(
            msc_donors.is_subset(&aspirate_donors),
            "{id}: MSC without an aspirate"
        );
        assert_near(
            &format!("{id}: MSC isolation success"),
            share(msc_donors.len(), aspirate_donors.len()),
            0.66,
            0.08,
        );
        let msc_share = share(
            materials
                .iter()
                .filter(|m| m.as_deref() == Some("msc_culture"))
                .count(),
            s.samples.rows,
        );
        assert!(
            (0.15..0.40).contains(&msc_share),
            "{id}: MSC share of samples {msc_share:.3}"
        );

        // Osteoporosis as a second diagnosis in about 30% of hip fractures.
        let hip_donors: HashSet<&str> = hip.iter().map(|(d, _)| **d).collect();
        let donor_of = s.donor_of();
        let osteoporotic: HashSet<&str> = s
            .diagnoses
            .text("sample_id")
            .iter()
            .zip(s.diagnoses.text("diagnosis"))
            .filter(|(_, c)| {
                c.as_deref()
                    .is_some_and(|c| c.starts_with("M80") || c.starts_with("M81"))
            })
            .map(|(sample, _)| donor_of[sample.as_deref().unwrap()])
            .filter(|d| hip_donors.contains(d))
            .collect();
        assert_near(
            &format!("{id}: osteoporosis with hip fractures"),
            share(osteoporotic.len(), hip_donors.len()),
            0.30,
            0.03,
        );
    }
}

#[test]
fn immunology_site_is_mostly_blood() {
    let s = site("DK-NAE", 3_000);
    s.check_references();
    s.check_donor_figures();
    let types = s.samples.text("sample_type");
    let blood = types
        .iter()
        .filter(|t| {
            matches!(
                t.as_deref(),
                Some("Plasma" | "Serum" | "BuffyCoat" | "DNA" | "PBMC" | "WholeBlood")
            )
        })
        .count();
    assert!(
        share(blood, s.samples.rows) > 0.97,
        "blood share {}",
        share(blood, s.samples.rows)
    );
    assert!(types.iter().all(|t| t.as_deref() != Some("StemCells")));

    // Blood donors have no diagnosis: 51% women, 18–70, many plasma samples each.
    let primary = s.primary_of();
    let sex = s.sex_of();
    let blood_donors: Vec<&str> = sex
        .keys()
        .filter(|d| !primary.contains_key(*d))
        .copied()
        .collect();
    assert_near(
        "blood donors among donors",
        share(blood_donors.len(), s.donors.rows),
        0.80,
        0.03,
    );
    let women = blood_donors.iter().filter(|d| sex[*d] == "Female").count();
    assert_near(
        "women among blood donors",
        share(women, blood_donors.len()),
        0.51,
        0.03,
    );
    let per_donor = s.samples.rows as f64 / s.donors.rows as f64;
    assert!(
        (8.0..20.0).contains(&per_donor),
        "samples per donor {per_donor:.1}"
    );
    let blood_set: HashSet<&str> = blood_donors.iter().copied().collect();
    let ages = s.samples.int("age_at_sampling");
    for (donor, age) in s.samples.text("donor_id").iter().zip(ages) {
        if blood_set.contains(donor.as_deref().unwrap()) {
            assert!((18..=70).contains(&age.unwrap()));
        }
    }
}
