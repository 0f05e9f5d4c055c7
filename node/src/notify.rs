//! Telling the site's stewards that questions wait. A check runs every
//! `check_seconds`: questions that arrived since the last message are
//! announced in one digest, at most one per `digest_minutes` and channel,
//! and questions that expire within `expiry_hours` get one reminder. A
//! message says only that something waits at the site and links to the
//! queue: no user, no question, no count. Each channel remembers (in the
//! state database) which tickets it told about, so a restart repeats
//! nothing and a channel that failed tries again at the next check.

use std::time::Duration;

use bonebank_service::notify::{EmailSettings, Mailer, Webhook, WebhookSettings};
use serde::{Deserialize, Serialize};

use crate::service::blocking;
use crate::store::{Store, Ticket, now};
use crate::{Error, Result};

/// `[notify]` in the node's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The stewards' addresses, for `[notify.email]`.
    #[serde(default)]
    pub stewards: Vec<String>,
    /// The language of the messages: `en`, `de` or `da`.
    #[serde(default = "english")]
    pub language: String,
    /// The approval queue as stewards reach it; the stewards' pages'
    /// address with `#queue` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// At most one message about waiting questions per channel this often.
    #[serde(default = "sixty")]
    pub digest_minutes: u64,
    /// A reminder when a waiting question expires within this many hours.
    #[serde(default = "twenty_four")]
    pub expiry_hours: u64,
    /// How often to look for something to tell.
    #[serde(default = "sixty")]
    pub check_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSettings>,
}

fn english() -> String {
    "en".into()
}

fn sixty() -> u64 {
    60
}

fn twenty_four() -> u64 {
    24
}

impl NotifyConfig {
    pub fn resolve(&mut self, base: &std::path::Path) {
        if let Some(e) = &mut self.email {
            e.resolve(base);
        }
        if let Some(w) = &mut self.webhook {
            w.resolve(base);
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !["en", "de", "da"].contains(&self.language.as_str()) {
            return Err(Error::Usage(format!(
                "notify.language {:?}: en, de or da",
                self.language
            )));
        }
        if self.email.is_none() && self.webhook.is_none() {
            return Err(Error::Usage(
                "[notify] needs [notify.email] or [notify.webhook]".into(),
            ));
        }
        if self.email.is_some() && self.stewards.is_empty() {
            return Err(Error::Usage(
                "[notify.email] needs notify.stewards, the addresses to write to".into(),
            ));
        }
        if self.check_seconds == 0 {
            return Err(Error::Usage(
                "notify.check_seconds must be at least 1".into(),
            ));
        }
        if let Some(link) = &self.link {
            bonebank_service::server::check_https_or_loopback(link, "notify.link")?;
        }
        Ok(())
    }
}

/// A way of telling the stewards.
enum Channel<'a> {
    Email(&'a Mailer),
    Webhook(&'a Webhook),
}

impl Channel<'_> {
    /// Its name in the state's `notices`.
    fn name(&self) -> &'static str {
        match self {
            Self::Email(_) => "email",
            Self::Webhook(_) => "webhook",
        }
    }
}

/// The kinds of notice.
const WAITING: &str = "waiting";
const EXPIRING: &str = "expiring";

/// The site's stewards' messenger.
#[derive(Debug)]
pub struct Notifier {
    site: String,
    config: NotifyConfig,
    link: String,
    mailer: Option<Mailer>,
    webhook: Option<Webhook>,
    store: Store,
}

impl Notifier {
    /// `link` is the queue's address when `config.link` is not set.
    pub fn new(site: &str, config: &NotifyConfig, link: String, store: Store) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            site: site.to_owned(),
            link: config.link.clone().unwrap_or(link),
            mailer: config.email.as_ref().map(Mailer::new).transpose()?,
            webhook: config.webhook.as_ref().map(Webhook::new).transpose()?,
            config: config.clone(),
            store,
        })
    }

    /// Checks every `check_seconds`, for as long as it runs.
    pub async fn run(self) {
        let every = Duration::from_secs(self.config.check_seconds);
        loop {
            if let Err(e) = self.check().await {
                tracing::warn!("notifying the stewards: {e}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One check: sends what is due on every channel.
    pub async fn check(&self) -> Result<()> {
        let store = self.store.clone();
        let pending: Vec<Ticket> = blocking(move || store.pending_tickets()).await?;
        let now = now();
        let expiring = self.config.expiry_hours as i64 * 3600;
        let ids = |keep: &dyn Fn(&Ticket) -> bool| -> Vec<String> {
            pending
                .iter()
                .filter(|t| keep(t))
                .map(|t| t.id.clone())
                .collect()
        };
        let waiting = ids(&|_| true);
        let expiring = ids(&|t| t.expires - now <= expiring);
        let digest = self.config.digest_minutes as i64 * 60;
        for channel in self.channels() {
            self.tell(WAITING, &channel, &waiting, digest).await?;
            self.tell(EXPIRING, &channel, &expiring, 0).await?;
        }
        Ok(())
    }

    fn channels(&self) -> impl Iterator<Item = Channel<'_>> {
        let email = self.mailer.iter().map(Channel::Email);
        email.chain(self.webhook.iter().map(Channel::Webhook))
    }

    /// Tells about the tickets of `tickets` this channel has not told
    /// about, unless it sent this kind less than `spacing` seconds ago.
    async fn tell(
        &self,
        kind: &'static str,
        channel: &Channel<'_>,
        tickets: &[String],
        spacing: i64,
    ) -> Result<()> {
        let now = now();
        let (store, name, tickets) = (self.store.clone(), channel.name(), tickets.to_vec());
        let new = blocking(move || store.due_notices(kind, name, &tickets, spacing, now)).await?;
        if new.is_empty() {
            return Ok(());
        }
        let sent = match channel {
            Channel::Email(mailer) => {
                let (subject, body) = self.email_text(kind);
                mailer.send(&self.config.stewards, &subject, &body).await
            }
            Channel::Webhook(webhook) => webhook.post(&self.event(kind)).await,
        };
        match sent {
            Ok(()) => {
                tracing::info!(
                    kind,
                    channel = name,
                    tickets = new.len(),
                    "told the stewards"
                );
                let store = self.store.clone();
                blocking(move || store.mark_noticed(kind, name, &new, now)).await
            }
            // Not marked: the next check tries again.
            Err(e) => {
                tracing::warn!(kind, channel = name, "could not tell the stewards: {e}");
                Ok(())
            }
        }
    }

    /// A webhook's event: what happened, where, and the link.
    fn event(&self, kind: &str) -> serde_json::Value {
        let event = match kind {
            WAITING => "questions_waiting",
            _ => "questions_expiring",
        };
        let mut e = serde_json::json!({
            "event": event,
            "site": self.site,
            "link": self.link,
            "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        if kind == EXPIRING {
            e["within_hours"] = self.config.expiry_hours.into();
        }
        e
    }

    /// An email's subject and body in the site's language.
    fn email_text(&self, kind: &str) -> (String, String) {
        email_text(
            &self.config.language,
            kind,
            &self.site,
            &self.link,
            self.config.digest_minutes,
            self.config.expiry_hours,
        )
    }
}

/// A stewards' message: the subject and the body, in `language`.
fn email_text(
    language: &str,
    kind: &str,
    site: &str,
    link: &str,
    minutes: u64,
    hours: u64,
) -> (String, String) {
    let (subject, what, queue, foot) = match (language, kind) {
        ("de", WAITING) => (
            format!("bonebank {site}: Fragen warten auf Ihre Entscheidung"),
            format!("Bei {site} warten neue Fragen auf die Entscheidung eines Datentreuhänders."),
            "Zur Freigabeliste",
            format!(
                "Diese Nachricht enthält keine Zahlen und keine Daten. Sie erhalten höchstens eine solche Nachricht alle {minutes} Minuten."
            ),
        ),
        ("de", _) => (
            format!("bonebank {site}: Fragen laufen bald ab"),
            format!(
                "Bei {site} laufen wartende Fragen innerhalb von {hours} Stunden ab, wenn niemand entscheidet."
            ),
            "Zur Freigabeliste",
            "Diese Nachricht enthält keine Zahlen und keine Daten.".to_owned(),
        ),
        ("da", WAITING) => (
            format!("bonebank {site}: spørgsmål venter på din afgørelse"),
            format!("Hos {site} venter nye spørgsmål på en dataansvarligs afgørelse."),
            "Til godkendelseskøen",
            format!(
                "Denne besked indeholder ingen tal og ingen data. Du får højst én sådan besked hvert {minutes}. minut."
            ),
        ),
        ("da", _) => (
            format!("bonebank {site}: spørgsmål udløber snart"),
            format!(
                "Hos {site} udløber ventende spørgsmål inden for {hours} timer, hvis ingen træffer en afgørelse."
            ),
            "Til godkendelseskøen",
            "Denne besked indeholder ingen tal og ingen data.".to_owned(),
        ),
        (_, WAITING) => (
            format!("bonebank {site}: questions wait for your decision"),
            format!("New questions wait for a data steward's decision at {site}."),
            "Open the approval queue",
            format!(
                "This message carries no counts and no data. You get at most one such message every {minutes} minutes."
            ),
        ),
        (_, _) => (
            format!("bonebank {site}: questions expire soon"),
            format!(
                "Waiting questions at {site} expire within {hours} hours unless a steward decides."
            ),
            "Open the approval queue",
            "This message carries no counts and no data.".to_owned(),
        ),
    };
    (subject, format!("{what}\n\n{queue}: {link}\n\n{foot}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_site_and_link_and_carry_no_number_but_the_settings() {
        for language in ["en", "de", "da"] {
            for kind in [WAITING, EXPIRING] {
                let (subject, body) =
                    email_text(language, kind, "DK-ODE", "https://x.example/#queue", 60, 24);
                assert!(subject.contains("DK-ODE"), "{subject}");
                assert!(body.contains("https://x.example/#queue"), "{body}");
                let digits: String = body
                    .replace("https://x.example/#queue", "")
                    .replace("60", "")
                    .replace("24", "")
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                assert_eq!(digits, "", "{language} {kind}: {body}");
            }
        }
        let (de, _) = email_text("de", WAITING, "DE-LUE", "l", 60, 24);
        assert!(de.contains("Entscheidung"), "{de}");
        let (da, _) = email_text("da", EXPIRING, "DK-NAE", "l", 60, 24);
        assert!(da.contains("udløber"), "{da}");
    }

    #[test]
    fn a_config_without_a_channel_or_addresses_is_refused() {
        let mut c: NotifyConfig = toml::from_str("stewards = []").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("[notify.email] or")
        );
        c.email = Some(EmailSettings {
            smtp: "smtp://127.0.0.1:25".into(),
            from: "b <b@x.example>".into(),
            user: None,
            password_file: None,
            ca: None,
        });
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("notify.stewards")
        );
        c.stewards = vec!["s@x.example".into()];
        c.validate().unwrap();
        c.language = "fr".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("en, de or da")
        );
    }
}
