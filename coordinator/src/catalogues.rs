//! The sites' catalogues, as the coordinator keeps them. A catalogue is
//! released data, so the coordinator may keep it: it is fetched from a site
//! when first needed and again once it is older than [`REFRESH`] (a site
//! publishes a new one when it has a new dataset version), and questions
//! it can answer are answered from it without asking the site anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bonebank_schemas::wire::Catalogue;
use tokio::time::Instant;

use crate::fanout::SiteClient;

/// How long a fetched catalogue is used before the site is asked for its
/// current one again.
pub const REFRESH: Duration = Duration::from_secs(300);

/// The longest a question waits for a site's catalogue that was not kept
/// yet (a node measures it the first time it is asked, which takes about a
/// second at a large site); past it the site is asked the question itself.
const FETCH_WAIT: Duration = Duration::from_secs(3);

/// A site's catalogue as fetched at a time (`None`: the site had none).
type Kept = (Instant, Option<Arc<Catalogue>>);

/// Each site's catalogue as last fetched, by site id.
#[derive(Debug, Default)]
pub struct Catalogues {
    kept: Mutex<HashMap<String, Kept>>,
}

impl Catalogues {
    /// The site's catalogue: as kept if fetched within [`REFRESH`], else
    /// fetched now (by `deadline`). `None` when the site has none or could
    /// not be asked; such a site is asked the question itself.
    pub async fn of(&self, site: &SiteClient, deadline: Instant) -> Option<Arc<Catalogue>> {
        let id = site.id.to_string();
        if let Some((at, kept)) = self.kept.lock().expect("lock").get(&id)
            && at.elapsed() < REFRESH
        {
            return kept.clone();
        }
        self.fetch(site, deadline.min(Instant::now() + FETCH_WAIT))
            .await
    }

    /// How many sites' catalogues are kept.
    pub fn held(&self) -> usize {
        self.kept
            .lock()
            .expect("lock")
            .values()
            .filter(|(_, c)| c.is_some())
            .count()
    }

    /// Fetches the site's catalogue now and keeps it.
    async fn fetch(&self, site: &SiteClient, until: Instant) -> Option<Arc<Catalogue>> {
        let id = site.id.to_string();
        let fetched = match tokio::time::timeout_at(until, site.catalogue()).await {
            Ok(Ok(c)) => c.map(Arc::new),
            Ok(Err(why)) => {
                tracing::warn!(site = %id, why, "could not fetch the site's catalogue");
                return None;
            }
            Err(_) => {
                tracing::warn!(site = %id, "the site's catalogue did not arrive in time");
                return None;
            }
        };
        self.kept
            .lock()
            .expect("lock")
            .insert(id, (Instant::now(), fetched.clone()));
        fetched
    }
}

/// Keeps every site's catalogue fresh off the request path: fetches them
/// all at once now (so that each node measures its catalogue before the
/// first question needs it) and again every [`REFRESH`], for as long as
/// the coordinator holds `catalogues`.
pub async fn keep_fresh(catalogues: std::sync::Weak<Catalogues>, sites: Vec<Arc<SiteClient>>) {
    loop {
        let Some(kept) = catalogues.upgrade() else {
            return;
        };
        let until = Instant::now() + Duration::from_secs(60);
        futures::future::join_all(sites.iter().map(|s| kept.fetch(s, until))).await;
        drop(kept);
        tokio::time::sleep(REFRESH).await;
    }
}
