//! The shared data model of bonebank: stored tables, their value sets, site ids
//! and ICD-10 codes. Serde types only, so that node, coordinator and any client
//! can agree on them without pulling in a server or a query engine.

#[macro_use]
mod value_set;

pub mod codes;
mod error;
pub mod icd10;
pub mod icd10_titles;
pub mod query;
pub mod site;
pub mod surface;
pub mod tables;
pub mod wire;

pub use codes::{
    Consent, Country, MaterialSubtype, Role, SampleType, Sex, SmokingStatus, StorageTemperature,
};
pub use error::{Error, Result};
pub use icd10::Icd10;
pub use query::{FeasibilityQuery, Filter, Measure, Value};
pub use site::SiteId;
pub use tables::{Column, ColumnKind, Table};
pub use value_set::ValueSet;
