//! From a verified token's claims to the [`Caller`]: the user, the one
//! bonebank role, the project, and a steward's sites, from the claims
//! `[oidc.claims]` names.

use super::*;

impl TokenVerifier {
    /// The caller a verified token describes.
    pub fn caller(&self, claims: &Value) -> Result<Caller> {
        let names = &self.settings.claims;
        let user = claim(claims, &names.user)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && u.len() <= 256)
            .ok_or_else(|| unauthenticated(format!("the token has no {:?} claim", names.user)))?
            .to_owned();
        let roles: Vec<Role> = strings(claim(claims, &names.role))
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect();
        let role = match roles.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::Forbidden(format!(
                    "the token carries no bonebank role in its {:?} claim (researcher, industry or steward)",
                    names.role
                )));
            }
            many => {
                return Err(Error::Forbidden(format!(
                    "the token carries {} bonebank roles in its {:?} claim; a user acts in one role",
                    many.len(),
                    names.role
                )));
            }
        };
        let project = claim(claims, &names.project)
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty() && p.len() <= 256)
            .map(str::to_owned);
        let project = match (role, project) {
            (_, Some(p)) => p,
            // Stewards decide; they are not charged for queries of a project.
            (Role::Steward, None) => "stewardship".to_owned(),
            (_, None) => {
                return Err(Error::Forbidden(format!(
                    "the token names no project in its {:?} claim; budgets are kept per project",
                    names.project
                )));
            }
        };
        let sites = if role == Role::Steward {
            strings(claim(claims, &names.sites))
        } else {
            Vec::new()
        };
        let email = claim(claims, &names.email)
            .and_then(Value::as_str)
            .filter(|e| e.contains('@') && e.len() <= 254)
            .map(str::to_owned);
        Ok(Caller {
            user,
            project,
            role,
            sites,
            email,
        })
    }
}

/// A claim by name; a dotted name descends into objects.
pub(super) fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    name.split('.').try_fold(claims, |v, part| v.get(part))
}

/// A string claim or a list of strings, as a list.
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}
