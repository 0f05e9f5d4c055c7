//! The error type of the schemas crate: a value that does not belong to its domain.

/// A value that is not valid for the type it was meant to become.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A code outside its value set.
    #[error("'{value}' is not a {value_set} code; allowed: {allowed}")]
    UnknownCode {
        value_set: &'static str,
        value: String,
        allowed: String,
    },
    /// Text that is not an ICD-10 code in any of the accepted spellings.
    #[error("'{value}' is not an ICD-10 code: {reason}")]
    InvalidIcd10 { value: String, reason: &'static str },
    /// A site id that does not follow `CC-XXX`.
    #[error("'{value}' is not a site id: {reason}")]
    InvalidSiteId { value: String, reason: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
