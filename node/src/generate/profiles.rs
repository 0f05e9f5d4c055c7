//! What each kind of site collects, with figures from the MIABIS reference
//! notes: fracture-surgery collections (Lübeck, Odense) and a clinical
//! immunology biobank (Næstved).

use bonebank_schemas::{
    MaterialSubtype as M, SampleType as T, Sex, SmokingStatus, StorageTemperature as Temp,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Geometric, Normal};

use super::rows::{Donor, Rows, Sample};
use crate::Result;

/// The last sampling day of synthetic data, 2025-12-31, so that generated
/// dates never lie in the future of a machine that imports them.
pub const LAST_DAY: i32 = 20_453;
/// 2008-01-01, the first day any profile samples on.
const FIRST_DAY_2008: i32 = 13_879;
const DAYS_PER_YEAR: f64 = 365.25;

/// A fracture-surgery collection: marrow aspirates, bone, MSC cultures and blood
/// taken during operations on fractures.
#[derive(Debug, Clone, Copy)]
pub struct FractureSite {
    pub first_day: i32,
    /// Shares of hip (S72.0–S72.2) and shaft (S72.3, S82.2) fractures; the rest
    /// are other fractures.
    pub hip: f64,
    pub shaft: f64,
    /// Share of MSC vials kept in the liquid rather than the vapour phase.
    pub ln_liquid: f64,
}

/// A clinical immunology biobank: blood donors and immunology patients.
#[derive(Debug, Clone, Copy)]
pub struct ImmunologySite {
    pub first_day: i32,
    /// Share of donors who are blood donors (the rest are patients).
    pub blood_donors: f64,
}

const HIP: &[(&str, f64)] = &[("S72.0", 0.52), ("S72.1", 0.40), ("S72.2", 0.08)];
const SHAFT: &[(&str, f64)] = &[("S72.3", 0.45), ("S82.2", 0.55)];
const OTHER: &[(&str, f64)] = &[
    ("S82.1", 0.14),
    ("S82.3", 0.10),
    ("S82.5", 0.10),
    ("S82.6", 0.16),
    ("S42.2", 0.16),
    ("S42.3", 0.08),
    ("S32.4", 0.08),
    ("S52.5", 0.18),
];
const IMMUNOLOGY: &[(&str, f64)] = &[
    ("D84.9", 0.20),
    ("D80.1", 0.10),
    ("D69.3", 0.15),
    ("M06.9", 0.20),
    ("M05.9", 0.10),
    ("M32.9", 0.10),
    ("C90.0", 0.10),
    ("D47.1", 0.05),
];
const BLOOD_COMMENTS: &[&str] = &["haemolysed", "low volume", "lipaemic", "thawed once"];

/// When a sample was taken, and how old its donor was then.
#[derive(Debug, Clone, Copy)]
struct At {
    date: i32,
    age: i32,
}

impl Sample {
    fn commented(mut self, comment: Option<&'static str>) -> Self {
        self.comment = comment;
        self
    }
}

/// The generator's state for one site: its random stream.
#[derive(Debug)]
pub struct Draw {
    pub rng: ChaCha8Rng,
}

impl Draw {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn pick<'a>(&mut self, table: &[(&'a str, f64)]) -> &'a str {
        let mut u = self.rng.random::<f64>() * table.iter().map(|(_, w)| w).sum::<f64>();
        for (code, w) in table {
            if u < *w {
                return code;
            }
            u -= w;
        }
        table[table.len() - 1].0
    }

    fn normal_int(&mut self, mean: f64, sd: f64, lo: i32, hi: i32) -> i32 {
        let x = Normal::new(mean, sd)
            .expect("finite parameters")
            .sample(&mut self.rng);
        (x.round() as i32).clamp(lo, hi)
    }

    fn day_between(&mut self, first: i32, last: i32) -> i32 {
        self.rng.random_range(first..=last)
    }

    fn sex(&mut self, female: f64) -> Sex {
        if self.chance(0.001) {
            Sex::Unknown
        } else if self.chance(female) {
            Sex::Female
        } else {
            Sex::Male
        }
    }

    /// Consent shares from the reference notes; stem-cell uses only for donors
    /// whose cells were banked.
    fn donor(&mut self, sex: Sex, stem_cells: bool) -> Donor {
        let consents = [
            self.chance(0.995),
            self.chance(0.65),
            self.chance(0.85),
            stem_cells && self.chance(0.05),
            stem_cells && self.chance(0.20),
        ];
        let bmi = self.chance(0.60).then(|| {
            (Normal::<f64>::new(26.5, 4.5)
                .expect("finite")
                .sample(&mut self.rng)
                .clamp(15.0, 50.0)
                * 10.0)
                .round()
                / 10.0
        });
        let smoking = self.chance(0.50).then(|| {
            let u = self.rng.random::<f64>();
            if u < 0.45 {
                SmokingStatus::Never
            } else if u < 0.80 {
                SmokingStatus::Former
            } else {
                SmokingStatus::Current
            }
        });
        Donor {
            sex,
            consents,
            withdrawn: self.chance(0.01),
            bmi,
            smoking,
        }
    }

    /// A storage place: freezer/rack/box/position, or tank/canister/box/position.
    fn location(&mut self, levels: [(char, i32); 4]) -> String {
        let parts: Vec<String> = levels
            .iter()
            .map(|(level, count)| format!("{level}{:02}", self.rng.random_range(1..=*count)))
            .collect();
        parts.join("/")
    }

    /// A sample of type `t` taken `at` a visit, with a random number of
    /// aliquots in the given range and a storage place fitting `temp`.
    fn sample(&mut self, t: T, m: M, temp: Temp, at: At, aliquots: (i32, i32)) -> Sample {
        let location = match temp {
            Temp::LiquidNitrogenVapour | Temp::LiquidNitrogenLiquid => {
                self.location([('T', 6), ('C', 10), ('B', 13), ('P', 100)])
            }
            _ => self.location([('F', 24), ('R', 12), ('B', 20), ('P', 81)]),
        };
        Sample {
            sample_type: t,
            material: m,
            temperature: temp,
            date: at.date,
            age: at.age,
            passage: None,
            aliquots: self.rng.random_range(aliquots.0..=aliquots.1),
            location,
            comment: None,
        }
    }

    fn blood_comment(&mut self) -> Option<&'static str> {
        self.chance(0.02)
            .then(|| BLOOD_COMMENTS[self.rng.random_range(0..BLOOD_COMMENTS.len())])
    }
}

impl FractureSite {
    /// Generates one fracture patient with the samples of their operation.
    pub fn donor(&self, g: &mut Draw, rows: &mut Rows) -> Result<()> {
        let u = g.rng.random::<f64>();
        let (kind, primary) = if u < self.hip {
            (Kind::Hip, g.pick(HIP))
        } else if u < self.hip + self.shaft {
            (Kind::Shaft, g.pick(SHAFT))
        } else {
            (Kind::Other, g.pick(OTHER))
        };
        // Hip fractures: ~70% women, mean age ~82 (women) / ~78 (men), 50–100.
        // Shaft fractures: ~70% men, mean ~40.
        let (female, (mean_f, mean_m), sd, (lo, hi)) = match kind {
            Kind::Hip => (0.70, (82.0, 78.0), 7.0, (50, 100)),
            Kind::Shaft => (0.30, (40.0, 40.0), 15.0, (18, 90)),
            Kind::Other => (0.55, (63.0, 57.0), 16.0, (18, 99)),
        };
        let sex = g.sex(female);
        let age = g.normal_int(
            if sex == bonebank_schemas::Sex::Female {
                mean_f
            } else {
                mean_m
            },
            sd,
            lo,
            hi,
        );

        let mut diagnoses = vec![primary];
        let osteoporosis = match kind {
            Kind::Hip => 0.30,
            Kind::Other if age >= 60 => 0.20,
            _ => 0.0,
        };
        if g.chance(osteoporosis) {
            diagnoses.push(if g.chance(0.25) { "M80.9" } else { "M81.9" });
        }
        if kind != Kind::Hip && g.chance(0.06) {
            diagnoses.push("M84.1");
        }

        let date = g.day_between(self.first_day, LAST_DAY);
        let mut samples = Vec::new();
        if g.chance(0.92) {
            let serum_temp = if g.chance(0.05) {
                Temp::Freezer
            } else {
                Temp::DeepFreezer
            };
            let c = g.blood_comment();
            samples.push(
                g.sample(T::Serum, M::Serum, serum_temp, At { date, age }, (2, 6))
                    .commented(c),
            );
            let c = g.blood_comment();
            samples.push(
                g.sample(
                    T::Plasma,
                    M::PlasmaEdta,
                    Temp::DeepFreezer,
                    At { date, age },
                    (2, 6),
                )
                .commented(c),
            );
            if g.chance(0.60) {
                samples.push(g.sample(
                    T::BuffyCoat,
                    M::BuffyCoat,
                    Temp::DeepFreezer,
                    At { date, age },
                    (1, 2),
                ));
            }
        }
        let mut aspirates = Vec::new();
        match kind {
            Kind::Hip => {
                if g.chance(0.75) {
                    aspirates.push(M::BmaProximalFemur);
                }
                // Neck fractures are often treated by arthroplasty; the femoral
                // head is banked as cancellous bone.
                if primary == "S72.0" && g.chance(0.65) {
                    samples.push(g.sample(
                        T::Bone,
                        M::CancellousBone,
                        Temp::DeepFreezer,
                        At { date, age },
                        (1, 3),
                    ));
                }
            }
            Kind::Shaft => {
                if g.chance(0.80) {
                    aspirates.push(M::RiaAspirate);
                }
                if g.chance(0.25) {
                    aspirates.push(M::BmaIliacCrest);
                }
            }
            Kind::Other => {
                if g.chance(0.45) {
                    aspirates.push(M::BmaIliacCrest);
                }
            }
        }
        for m in &aspirates {
            let temp = if g.chance(0.70) {
                Temp::DeepFreezer
            } else {
                Temp::LiquidNitrogenVapour
            };
            samples.push(g.sample(T::BoneMarrowAspirate, *m, temp, At { date, age }, (1, 4)));
            if g.chance(0.30) {
                samples.push(g.sample(
                    T::BoneMarrowPlasma,
                    M::BoneMarrowPlasma,
                    Temp::DeepFreezer,
                    At { date, age },
                    (1, 3),
                ));
            }
        }
        // MSC isolation succeeds in about two thirds of aspirates, less often
        // with age; vials are banked at several passages.
        let msc = !aspirates.is_empty() && g.chance(0.95 - 0.0065 * f64::from(age - 20));
        if msc {
            let last = g.rng.random_range(1..=5);
            for passage in 0..=last {
                if passage > 0 && !g.chance(0.85) {
                    continue;
                }
                let temp = if g.chance(self.ln_liquid) {
                    Temp::LiquidNitrogenLiquid
                } else {
                    Temp::LiquidNitrogenVapour
                };
                let banked = (date + 10 + 7 * passage).min(LAST_DAY);
                let comment = g.chance(0.05).then_some("mycoplasma negative");
                let mut s = g
                    .sample(
                        T::StemCells,
                        M::MscCulture,
                        temp,
                        At { date: banked, age },
                        (2, 10),
                    )
                    .commented(comment);
                s.passage = Some(passage);
                samples.push(s);
            }
        }

        rows.donor(&g.donor(sex, msc))?;
        for s in &samples {
            rows.sample(s, &diagnoses)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hip,
    Shaft,
    Other,
}

impl ImmunologySite {
    /// Generates a blood donor (plasma at each donation) or an immunology
    /// patient (serum and plasma at each visit).
    pub fn donor(&self, g: &mut Draw, rows: &mut Rows) -> Result<()> {
        if g.chance(self.blood_donors) {
            self.blood_donor(g, rows)
        } else {
            self.patient(g, rows)
        }
    }

    /// Danish Blood Donor Study: 51% women, aged 18–70, EDTA plasma at each
    /// donation, about 16 donations per donor.
    fn blood_donor(&self, g: &mut Draw, rows: &mut Rows) -> Result<()> {
        let sex = g.sex(0.51);
        let first_age = g.rng.random_range(18..=65);
        let first = g.day_between(self.first_day, LAST_DAY - 30);
        let donations = 1 + Geometric::new(1.0 / 15.0)
            .expect("valid p")
            .sample(&mut g.rng)
            .min(59) as i32;
        let mut samples = Vec::new();
        let mut date = first;
        for n in 0..donations {
            let age = first_age + (f64::from(date - first) / DAYS_PER_YEAR) as i32;
            if date > LAST_DAY || age > 70 {
                break;
            }
            let c = g.blood_comment();
            samples.push(
                g.sample(
                    T::Plasma,
                    M::PlasmaEdta,
                    Temp::DeepFreezer,
                    At { date, age },
                    (2, 4),
                )
                .commented(c),
            );
            if n == 0 {
                samples.push(g.sample(
                    T::BuffyCoat,
                    M::BuffyCoat,
                    Temp::DeepFreezer,
                    At { date, age },
                    (1, 2),
                ));
                let dna_temp = if g.chance(0.70) {
                    Temp::Freezer
                } else {
                    Temp::DeepFreezer
                };
                samples.push(g.sample(T::Dna, M::DnaBlood, dna_temp, At { date, age }, (1, 2)));
                if g.chance(0.30) {
                    samples.push(g.sample(
                        T::Serum,
                        M::Serum,
                        Temp::DeepFreezer,
                        At { date, age },
                        (1, 3),
                    ));
                }
            }
            date += g.rng.random_range(56..=240);
        }
        rows.donor(&g.donor(sex, false))?;
        for s in &samples {
            rows.sample(s, &[])?;
        }
        Ok(())
    }

    fn patient(&self, g: &mut Draw, rows: &mut Rows) -> Result<()> {
        let diagnosis = g.pick(IMMUNOLOGY);
        let female = if diagnosis.starts_with('M') {
            0.75
        } else {
            0.50
        };
        let sex = g.sex(female);
        let first_age = g.normal_int(55.0, 17.0, 18, 95);
        let first = g.day_between(self.first_day, LAST_DAY);
        let visits = g.rng.random_range(1..=8);
        let mut samples = Vec::new();
        let mut date = first;
        for n in 0..visits {
            if date > LAST_DAY {
                break;
            }
            let age = (first_age + (f64::from(date - first) / DAYS_PER_YEAR) as i32).min(100);
            let c = g.blood_comment();
            samples.push(
                g.sample(
                    T::Serum,
                    M::Serum,
                    Temp::DeepFreezer,
                    At { date, age },
                    (1, 4),
                )
                .commented(c),
            );
            samples.push(g.sample(
                T::Plasma,
                M::PlasmaEdta,
                Temp::DeepFreezer,
                At { date, age },
                (1, 4),
            ));
            if g.chance(0.30) {
                samples.push(g.sample(
                    T::Pbmc,
                    M::Pbmc,
                    Temp::LiquidNitrogenVapour,
                    At { date, age },
                    (1, 4),
                ));
            }
            if n == 0 {
                samples.push(g.sample(
                    T::Dna,
                    M::DnaBlood,
                    Temp::Freezer,
                    At { date, age },
                    (1, 2),
                ));
                if matches!(diagnosis, "C90.0" | "D47.1") && g.chance(0.70) {
                    samples.push(g.sample(
                        T::BoneMarrowAspirate,
                        M::BmaIliacCrest,
                        Temp::DeepFreezer,
                        At { date, age },
                        (1, 3),
                    ));
                }
            }
            date += g.rng.random_range(30..=365);
        }
        rows.donor(&g.donor(sex, false))?;
        for s in &samples {
            rows.sample(s, &[diagnosis])?;
        }
        Ok(())
    }
}

/// The first day of `year`, as days since 1970-01-01.
pub fn first_day_of(year: i32) -> i32 {
    FIRST_DAY_2008
        + (2008..year)
            .map(|y| if is_leap(y) { 366 } else { 365 })
            .sum::<i32>()
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_constants_are_the_dates_they_name() {
        let days = |y, m, d| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                .num_days() as i32
        };
        assert_eq!(LAST_DAY, days(2025, 12, 31));
        assert_eq!(first_day_of(2008), days(2008, 1, 1));
        assert_eq!(first_day_of(2015), days(2015, 1, 1));
    }
}
