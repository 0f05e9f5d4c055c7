//! Site ids: `CC-XXX`, a country of the network and three capital letters.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Country, Error, Result};

/// The id of a site (a biobank running a node), e.g. `DE-LUE`. The prefix is the
/// country the site's data must stay in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
pub struct SiteId(String);

impl SiteId {
    /// The university biobank in Lübeck.
    pub const LUEBECK: &'static str = "DE-LUE";
    /// Odense University Hospital.
    pub const ODENSE: &'static str = "DK-ODE";
    /// The clinical immunology biobank in Næstved.
    pub const NAESTVED: &'static str = "DK-NAE";

    /// Checks `value` and makes it a site id.
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidSiteId {
            value: value.to_owned(),
            reason,
        };
        let (country, local) = value.split_once('-').ok_or_else(|| {
            invalid("expected a country code, '-' and three letters, e.g. DE-LUE")
        })?;
        country
            .parse::<Country>()
            .map_err(|_| invalid("the country must be DE or DK"))?;
        if local.len() != 3 || !local.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "after the '-' come three capital letters A-Z, e.g. DK-ODE",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The country whose law governs the site's data.
    pub fn country(&self) -> Country {
        self.0[..2].parse().expect("checked in parse")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SiteId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SiteId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<SiteId> for String {
    fn from(id: SiteId) -> Self {
        id.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_sites_are_valid() {
        for id in [SiteId::LUEBECK, SiteId::ODENSE, SiteId::NAESTVED] {
            assert_eq!(SiteId::parse(id).unwrap().as_str(), id);
        }
        assert_eq!(SiteId::parse("DE-LUE").unwrap().country(), Country::Germany);
        assert_eq!(SiteId::parse("DK-NAE").unwrap().country(), Country::Denmark);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "", "DE", "DELUE", "SE-UPP", "DE-LU", "DE-LUEB", "de-lue", "DE-L1E", "DE_LUE",
        ] {
            assert!(SiteId::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(serde_json::from_str::<SiteId>("\"XX-ABC\"").is_err());
        assert_eq!(
            serde_json::from_str::<SiteId>("\"DK-ODE\"")
                .unwrap()
                .as_str(),
            "DK-ODE"
        );
    }
}
