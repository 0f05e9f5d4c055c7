//! Telling requesters that a question was decided. When a site holds a
//! question for its stewards, the coordinator notes the site's ticket with
//! the requester's address (from the token's `email` claim, kept here and
//! never sent to a node). Every `check_seconds` it asks each such site
//! where the ticket stands, as itself and with nothing but the ticket's id,
//! and writes once the site has decided or the ticket has expired. The
//! message says only which site decided and how, with a link to the
//! answer: never a count.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bonebank_service::notify::{EmailSettings, Mailer};
use serde::{Deserialize, Serialize};

use crate::fanout::SiteClient;
use crate::history::{Awaiting, History};
use crate::{Error, Result};

/// `[notify]` in the coordinator's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub email: EmailSettings,
    /// The researchers' app as users reach it; `login.public_url` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_url: Option<String>,
    /// How often to ask the sites about waiting tickets.
    #[serde(default = "sixty")]
    pub check_seconds: u64,
}

fn sixty() -> u64 {
    60
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<()> {
        if self.check_seconds == 0 {
            return Err(Error::Usage(
                "notify.check_seconds must be at least 1".into(),
            ));
        }
        if let Some(url) = &self.app_url {
            bonebank_service::server::check_https_or_loopback(url, "notify.app_url")?;
        }
        Ok(())
    }
}

/// The requesters' messenger.
#[derive(Debug)]
pub struct Requesters {
    mailer: Mailer,
    app_url: String,
    every: Duration,
    history: History,
    sites: Vec<Arc<SiteClient>>,
}

impl Requesters {
    pub fn new(
        config: &NotifyConfig,
        app_url: &str,
        history: History,
        sites: Vec<Arc<SiteClient>>,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            mailer: Mailer::new(&config.email)?,
            app_url: config
                .app_url
                .clone()
                .unwrap_or_else(|| app_url.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            every: Duration::from_secs(config.check_seconds),
            history,
            sites,
        })
    }

    /// Checks every `check_seconds` for as long as `this` is held.
    pub async fn keep_watching(this: Weak<Self>) {
        loop {
            let every = match this.upgrade() {
                Some(me) => {
                    if let Err(e) = me.check().await {
                        tracing::warn!("telling requesters: {e}");
                    }
                    me.every
                }
                None => return,
            };
            tokio::time::sleep(every).await;
        }
    }

    /// One check: asks about every waiting ticket and writes to the
    /// requesters of those decided.
    pub async fn check(&self) -> Result<()> {
        let history = self.history.clone();
        let waiting = tokio::task::spawn_blocking(move || history.awaiting())
            .await
            .map_err(|e| Error::Internal(format!("history worker: {e}")))??;
        for w in waiting {
            let Some(site) = self.sites.iter().find(|s| s.id.as_str() == w.site) else {
                continue;
            };
            let state = match site.ticket_state(&w.ticket).await {
                Ok(s) => s,
                Err(why) => {
                    tracing::debug!(site = w.site, why, "ticket state not known yet");
                    continue;
                }
            };
            if state == "pending" {
                continue;
            }
            let (subject, body) = decided_text(&w, &state, &self.app_url);
            match self
                .mailer
                .send(std::slice::from_ref(&w.email), &subject, &body)
                .await
            {
                Ok(()) => {
                    tracing::info!(site = w.site, entry = w.entry, state, "told the requester");
                    let history = self.history.clone();
                    tokio::task::spawn_blocking(move || history.told(w.entry, &w.site))
                        .await
                        .map_err(|e| Error::Internal(format!("history worker: {e}")))??;
                }
                Err(e) => tracing::warn!(site = w.site, "could not tell the requester: {e}"),
            }
        }
        Ok(())
    }
}

/// The message to a requester: subject and body, in their language.
fn decided_text(w: &Awaiting, state: &str, app_url: &str) -> (String, String) {
    let site = &w.site;
    let link = format!("{app_url}/#a={}", w.entry);
    let how = |en: &'static str, de: &'static str, da: &'static str| match w.language.as_str() {
        "de" => de,
        "da" => da,
        _ => en,
    };
    let outcome = match state {
        "approved" => how("approved", "freigegeben", "godkendt"),
        "rejected" => how("rejected", "abgelehnt", "afvist"),
        _ => how(
            "not decided in time; the request has expired",
            "nicht rechtzeitig entschieden; die Anfrage ist abgelaufen",
            "ikke afgjort i tide; anmodningen er udløbet",
        ),
    };
    match w.language.as_str() {
        "de" => (
            format!("bonebank: {site} hat über Ihre Frage entschieden"),
            format!(
                "Ihre Frage vom {} bei {site}: {outcome}.\n\nZur Antwort: {link}\n\nDiese Nachricht enthält keine Zahlen; die Antwort sehen Sie nach der Anmeldung.\n",
                w.day()
            ),
        ),
        "da" => (
            format!("bonebank: {site} har afgjort dit spørgsmål"),
            format!(
                "Dit spørgsmål fra {} hos {site}: {outcome}.\n\nSe svaret: {link}\n\nDenne besked indeholder ingen tal; du ser svaret, når du er logget ind.\n",
                w.day()
            ),
        ),
        _ => (
            format!("bonebank: {site} has decided on your question"),
            format!(
                "Your question of {} at {site}: {outcome}.\n\nSee the answer: {link}\n\nThis message carries no counts; you see the answer once signed in.\n",
                w.day()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(language: &str) -> Awaiting {
        Awaiting {
            entry: 7,
            site: "DK-ODE".into(),
            ticket: "ab".repeat(16),
            email: "ingrid@industry.example".into(),
            language: language.into(),
            asked: "2026-12-07T14:02:00Z".into(),
        }
    }

    #[test]
    fn the_message_names_the_site_the_outcome_and_the_answer_in_the_users_language() {
        let (s, b) = decided_text(&waiting("en"), "approved", "https://bonebank.example");
        assert!(s.contains("DK-ODE"), "{s}");
        assert!(
            b.contains("approved") && b.contains("https://bonebank.example/#a=7"),
            "{b}"
        );
        assert!(b.contains("2026-12-07"), "{b}");
        let (_, b) = decided_text(&waiting("de"), "rejected", "https://x");
        assert!(b.contains("abgelehnt") && b.contains("Ihre Frage"), "{b}");
        let (_, b) = decided_text(&waiting("da"), "expired", "https://x");
        assert!(b.contains("udløbet"), "{b}");
        // No ticket, no address, no count.
        for lang in ["en", "de", "da"] {
            let (s, b) = decided_text(&waiting(lang), "approved", "https://x");
            let text = format!("{s}{b}");
            assert!(
                !text.contains(&"ab".repeat(16)) && !text.contains("ingrid"),
                "{text}"
            );
        }
    }
}
