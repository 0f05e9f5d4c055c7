//! The coordinator's work: check a question, ask the sites, merge, remember.

use std::sync::Arc;
use std::time::Duration;

use bonebank_query as query;
use bonebank_query::policy::Policy;
use bonebank_query::{limits, sql};
use bonebank_schemas::FeasibilityQuery;
use bonebank_schemas::wire::{
    BudgetListing, CheckedQuestion, FederatedPreview, FederatedRequest, FederatedResult,
    HistoryEntry, SiteAnswer, SiteListing, SitePreview, SiteStatus, Source,
};
use bonebank_service::Caller;
use bonebank_service::grant::{self, GrantSigner};
use tokio::time::Instant;

use crate::auth::Requester;
use crate::catalogues::Catalogues;
use crate::config::CoordinatorConfig;
use crate::fanout::{self, SiteClient};
use crate::history::History;
use crate::link::Links;
use crate::{Error, Result, merge};
use bonebank_query::catalogue::CatalogueAnswer;
use bonebank_schemas::wire::Catalogue;

#[derive(Debug, Clone)]
pub struct Coordinator {
    sites: Vec<Arc<SiteClient>>,
    /// The sites that connect out, when any do.
    pub links: Option<Arc<Links>>,
    deadline: Duration,
    history: History,
    /// The sites' catalogues, as last fetched.
    catalogues: Arc<Catalogues>,
    /// Who to tell when a waiting question is decided, where `[notify]`
    /// is set; the task that tells them stops when this is dropped.
    requesters: Option<Arc<crate::notify::Requesters>>,
}

impl Coordinator {
    pub fn new(config: &CoordinatorConfig) -> Result<Self> {
        config.validate()?;
        let links = config.link.as_ref().map(|link| {
            let outbound: Vec<_> = config
                .sites
                .iter()
                .filter(|s| s.url.is_none())
                .map(|s| (s.id.clone(), s.server_name.clone().unwrap_or_default()))
                .collect();
            Links::new(&outbound, Duration::from_millis(link.heartbeat_ms))
        });
        // A grant lives as long as a question may wait for the sites, and
        // a minute more for clocks that disagree.
        let lifetime = (config.deadline_ms / 1000 + 60).min(grant::MAX_LIFETIME_SECS);
        let grants = Arc::new(GrantSigner::from_file(&config.tls.grant_key, lifetime)?);
        let sites = config
            .sites
            .iter()
            .map(|s| {
                SiteClient::new(s, &config.tls, links.as_deref(), grants.clone()).map(Arc::new)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            sites,
            links,
            deadline: Duration::from_millis(config.deadline_ms),
            history: History::open(&config.history_db())?,
            catalogues: Arc::default(),
            requesters: None,
        })
    }

    /// Starts telling requesters when their waiting questions are decided
    /// (see [`crate::notify`]); `app_url` is the app's address. Call
    /// inside a Tokio runtime.
    pub fn tell_requesters(
        &mut self,
        config: &crate::notify::NotifyConfig,
        app_url: &str,
    ) -> Result<()> {
        let requesters = Arc::new(crate::notify::Requesters::new(
            config,
            app_url,
            self.history.clone(),
            self.sites.clone(),
        )?);
        tokio::spawn(crate::notify::Requesters::keep_watching(Arc::downgrade(
            &requesters,
        )));
        self.requesters = Some(requesters);
        Ok(())
    }

    /// Notes the sites of an answer that wait for their stewards, so that
    /// the requester is told when they decide: where notices are on and
    /// the requester's token gave an address. `language` is the app's.
    pub async fn watch(&self, who: &Requester, result: &FederatedResult, language: &str) {
        let (Some(_), Some(email), Some(id)) = (&self.requesters, &who.caller.email, result.id)
        else {
            return;
        };
        let tickets: Vec<(String, String)> = result
            .sites
            .iter()
            .filter(|s| s.status == SiteStatus::WaitingForApproval)
            .filter_map(|s| Some((s.site_id.clone(), s.ticket.clone()?)))
            .collect();
        if tickets.is_empty() {
            return;
        }
        let (history, email, language) = (self.history.clone(), email.clone(), language.to_owned());
        let noted = tokio::task::spawn_blocking(move || {
            history.await_decisions(id, &email, &language, &tickets)
        })
        .await;
        if !matches!(noted, Ok(Ok(()))) {
            tracing::warn!(entry = id, "could not note the waiting tickets: {noted:?}");
        }
    }

    /// Keeps the sites' catalogues fresh in the background (see
    /// [`crate::catalogues::keep_fresh`]); call inside a Tokio runtime.
    pub fn keep_catalogues_fresh(&self) {
        tokio::spawn(crate::catalogues::keep_fresh(
            Arc::downgrade(&self.catalogues),
            self.sites.clone(),
        ));
    }

    /// The catalogues as kept.
    pub fn catalogues_kept(&self) -> Arc<Catalogues> {
        self.catalogues.clone()
    }

    /// Every site's catalogue, kept or fetched now (sites without one are
    /// left out), in config order.
    pub async fn catalogues(&self) -> Vec<bonebank_schemas::wire::Catalogue> {
        let deadline = Instant::now() + self.deadline;
        futures::future::join_all(self.sites.iter().map(|s| self.catalogues.of(s, deadline)))
            .await
            .into_iter()
            .flatten()
            .map(|c| c.as_ref().clone())
            .collect()
    }

    /// The site ids of the network, in config order.
    pub fn site_ids(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.id.to_string()).collect()
    }

    /// The question as a canonical query, checked against the shared schema.
    /// Site policies (ε, dimensions allowed) are each site's to apply.
    pub fn check(&self, request: &FederatedRequest, caller: &Caller) -> Result<FeasibilityQuery> {
        let query = match (&request.sql, &request.query) {
            (Some(text), None) => sql::parse(text).map_err(|r| Error::QueryRefused {
                message: r.message,
                hint: r.hint,
            })?,
            (None, Some(q)) => {
                limits::check_query(q).map_err(|r| Error::QueryRefused {
                    message: r.message,
                    hint: r.hint,
                })?;
                q.clone()
            }
            _ => {
                return Err(Error::BadRequest(
                    "send either \"sql\" or \"query\", not both and not neither".into(),
                ));
            }
        };
        if let Some(e) = request.loss
            && !(e.is_finite() && e > 0.0)
        {
            return Err(Error::BadRequest(format!(
                "loss must be a positive number, not {e}"
            )));
        }
        let query = query.canonical();
        // The language is the same at every site; only values such as a
        // site's own site_id differ, so the question must be valid at one
        // site at least. Policy refusals (flag true) are the sites' business.
        let mut first_refusal = None;
        for site in &self.sites {
            match query::check(&query, None, caller.role, &site.id, &Policy::default()) {
                Ok(_) | Err((_, true)) => return Ok(query),
                Err((refusal, false)) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        let refusal = first_refusal.expect("the config lists at least one site");
        Err(Error::QueryRefused {
            message: refusal.message,
            hint: refusal.hint,
        })
    }

    /// What the question would cost at each chosen site and how precise
    /// the answers and their total would be; nothing is spent anywhere.
    pub async fn preview(
        &self,
        who: &Requester,
        request: FederatedRequest,
    ) -> Result<FederatedPreview> {
        let deadline = Instant::now() + self.deadline;
        let (query, sites) = self.question_and_sites(who, &request).await?;
        // Which path each site's part takes: its catalogue, or fresh.
        let found = if request.fresh {
            vec![Err(None); sites.len()]
        } else {
            self.catalogue_answers(&sites, &who.caller, &query, deadline)
                .await
        };
        let mut previews = Vec::new();
        let mut estimates = Vec::new();
        let mut fresh = Vec::new();
        let mut why: Vec<(String, Option<query::catalogue::Miss>)> = Vec::new();
        for (site, found) in sites.iter().zip(found) {
            if let Ok((c, a, asked)) = &found {
                estimates.push(from_catalogue(site, c, asked, a));
            }
            match found {
                Ok((c, a, asked)) => previews.push(SitePreview {
                    site_id: site.id.to_string(),
                    status: SiteStatus::Answered,
                    message: None,
                    hint: None,
                    preview: Some(query::catalogue::to_preview(&c, &asked, &a)),
                    source: Source::Catalogue,
                    why_fresh: None,
                    why_fresh_code: None,
                }),
                Err(reason) => {
                    fresh.push(site.clone());
                    why.push((site.id.to_string(), reason));
                }
            }
        }
        if !fresh.is_empty() {
            for mut p in fanout::preview_all(&fresh, who, &query, request.loss, deadline).await {
                let miss = why
                    .iter()
                    .find(|(id, _)| *id == p.site_id)
                    .and_then(|(_, r)| r.clone());
                p.why_fresh_code = miss.as_ref().map(|m| m.code.to_owned());
                p.why_fresh = miss.map(|m| m.reason);
                previews.push(p);
            }
        }
        previews.sort_by_key(|p| sites.iter().position(|s| s.id.as_str() == p.site_id));
        let total_halfwidth = (0..query.measures.len())
            .map(|m| {
                let mut scales = Vec::new();
                for p in previews.iter().filter_map(|s| s.preview.as_ref()) {
                    let measure = p.measures.get(m)?;
                    measure.halfwidth?;
                    scales.push((measure.mechanism, measure.scale));
                }
                (!scales.is_empty()).then(|| crate::interval::halfwidth(&scales, 0.95))
            })
            .collect();
        let estimate = (!estimates.is_empty()).then(|| merge::merge(&query, estimates, 0));
        Ok(FederatedPreview {
            query,
            sites: previews,
            total_halfwidth,
            estimate,
        })
    }

    /// The checked question and the sites it goes to.
    async fn question_and_sites(
        &self,
        who: &Requester,
        request: &FederatedRequest,
    ) -> Result<(FeasibilityQuery, Vec<Arc<SiteClient>>)> {
        // A long question is parsed on a blocking thread, never on an HTTP
        // worker; a short one here (see `limits::parse_inline`).
        let query = if limits::parse_inline(request.sql.as_deref()) {
            self.check(request, &who.caller)?
        } else {
            let (this, checked_request, checked_caller) =
                (self.clone(), request.clone(), who.caller.clone());
            tokio::task::spawn_blocking(move || this.check(&checked_request, &checked_caller))
                .await
                .map_err(|e| Error::Internal(format!("question check: {e}")))??
        };
        let sites = match &request.sites {
            None => self.sites.clone(),
            Some(ids) => {
                let mut chosen = Vec::new();
                for id in ids {
                    let site = self
                        .sites
                        .iter()
                        .find(|s| s.id.to_string().eq_ignore_ascii_case(id))
                        .ok_or_else(|| {
                            Error::BadRequest(format!(
                                "unknown site {id:?}; this network has {}",
                                self.site_ids().join(", ")
                            ))
                        })?;
                    if !chosen.iter().any(|c: &Arc<SiteClient>| c.id == site.id) {
                        chosen.push(site.clone());
                    }
                }
                if chosen.is_empty() {
                    return Err(Error::BadRequest("\"sites\" is empty".into()));
                }
                chosen
            }
        };
        Ok((query, sites))
    }

    /// Asks the chosen sites and merges what arrives before the deadline.
    /// Traced with the user and the question's id, which every node logs
    /// for the same question.
    #[tracing::instrument(name = "question", skip_all, fields(user = %who.caller.user, question = tracing::field::Empty))]
    pub async fn ask(&self, who: &Requester, request: FederatedRequest) -> Result<FederatedResult> {
        let caller = &who.caller;
        let started = Instant::now();
        let deadline = started + self.deadline;
        let (query, sites) = self.question_and_sites(who, &request).await?;
        tracing::Span::current().record("question", bonebank_query::question_id(&query).as_str());
        let (mut answers, fresh) = if request.fresh {
            (Vec::new(), sites.clone())
        } else {
            self.answered_by_catalogues(&sites, &who.caller, &query, deadline)
                .await
        };
        if !fresh.is_empty() {
            answers.extend(
                fanout::ask_all(
                    &fresh,
                    who,
                    &query,
                    (request.loss, request.purpose.as_ref()),
                    deadline,
                )
                .await,
            );
        }
        answers.sort_by_key(|a| sites.iter().position(|s| s.id.as_str() == a.site_id));
        let mut result = merge::merge(&query, answers, started.elapsed().as_millis() as u64);
        let id = self
            .history
            .record(&caller.user, &caller.project, request.loss, &result)
            .await?;
        result.id = Some(id);
        Ok(result)
    }

    /// Each site's catalogue's answer to `query` for this caller, or why it
    /// has none: no catalogue, one that cannot answer it, or a policy that
    /// filters the caller's role.
    async fn catalogue_answers(
        &self,
        sites: &[Arc<SiteClient>],
        caller: &Caller,
        query: &FeasibilityQuery,
        deadline: Instant,
    ) -> Vec<
        std::result::Result<
            (Arc<Catalogue>, CatalogueAnswer, FeasibilityQuery),
            Option<query::catalogue::Miss>,
        >,
    > {
        let kept =
            futures::future::join_all(sites.iter().map(|s| self.catalogues.of(s, deadline))).await;
        kept.into_iter()
            .map(|catalogue| {
                let c = catalogue.ok_or(None)?;
                let role = caller.role.to_string();
                let ruled = c
                    .caller_rules
                    .iter()
                    .find(|r| r.matches(&role, &caller.project));
                if ruled.is_some_and(|r| r.asked_fresh) {
                    return Err(Some(query::catalogue::miss(
                        "steward",
                        format!(
                            "a rule of the site holds every question of a {role} in this project for its steward, so they are asked of the site"
                        ),
                    )));
                }
                let asked = match c.role_filters.get(&role) {
                    None => query.clone(),
                    Some(filter) => with_role_filter(&c, query, filter)
                        .ok_or_else(|| {
                            Some(query::catalogue::miss(
                                "role_filter",
                                format!(
                                    "the site adds {filter} to a {role}'s questions, which its catalogue cannot apply"
                                ),
                            ))
                        })?,
                };
                let a = query::catalogue::answer(&c, &asked).map_err(Some)?;
                Ok((c, a, asked))
            })
            .collect()
    }

    /// The answers of the sites whose catalogues answer `query` for this
    /// caller (nothing is asked of them, nothing charged), and the sites
    /// that must be asked.
    async fn answered_by_catalogues(
        &self,
        sites: &[Arc<SiteClient>],
        caller: &Caller,
        query: &FeasibilityQuery,
        deadline: Instant,
    ) -> (Vec<SiteAnswer>, Vec<Arc<SiteClient>>) {
        let mut answers = Vec::new();
        let mut fresh = Vec::new();
        let found = self.catalogue_answers(sites, caller, query, deadline).await;
        for (site, found) in sites.iter().zip(found) {
            match found {
                Ok((c, a, asked)) => answers.push(from_catalogue(site, &c, &asked, &a)),
                Err(_) => fresh.push(site.clone()),
            }
        }
        (answers, fresh)
    }

    /// One question from the caller's history. Sites that were waiting for
    /// approval are asked again (free: nothing is charged until a steward
    /// approves, and an approved release is remembered), and the entry is
    /// updated with what they say now.
    pub async fn look_again(&self, who: &Requester, id: i64) -> Result<FederatedResult> {
        let caller = &who.caller;
        let (epsilon, mut result) = self.entry(caller, id).await?;
        let waiting: Vec<Arc<SiteClient>> = result
            .sites
            .iter()
            .filter(|s| s.status == SiteStatus::WaitingForApproval)
            .filter_map(|s| {
                self.sites
                    .iter()
                    .find(|c| c.id.as_str() == s.site_id)
                    .cloned()
            })
            .collect();
        if !waiting.is_empty() {
            let started = Instant::now();
            let answers = fanout::ask_all(
                &waiting,
                who,
                &result.query,
                // The ticket was filed with the purpose on the first ask.
                (epsilon, None),
                started + self.deadline,
            )
            .await;
            let mut sites = result.sites.clone();
            for answer in answers {
                if let Some(s) = sites.iter_mut().find(|s| s.site_id == answer.site_id) {
                    *s = answer;
                }
            }
            result = merge::merge(&result.query, sites, result.elapsed_ms);
            let (history, stored) = (self.history.clone(), result.clone());
            tokio::task::spawn_blocking(move || history.update(id, &stored))
                .await
                .map_err(|e| Error::Internal(format!("history worker: {e}")))??;
        }
        result.id = Some(id);
        Ok(result)
    }

    /// Every site with its status and public description.
    pub async fn list_sites(&self) -> Vec<SiteListing> {
        fanout::listings_all(&self.sites, Instant::now() + self.deadline).await
    }

    /// The caller's own budget left at every site.
    pub async fn budgets(&self, who: &Requester) -> Vec<BudgetListing> {
        fanout::budgets_all(&self.sites, who, Instant::now() + self.deadline).await
    }

    /// A question checked against the shared language, as the canonical
    /// query and its SQL: how the researcher's app shows what it would send
    /// and reads SQL typed by hand back into criteria. Nothing is asked.
    pub async fn check_only(
        &self,
        who: &Requester,
        request: &FederatedRequest,
    ) -> Result<CheckedQuestion> {
        let (this, request, caller) = (self.clone(), request.clone(), who.caller.clone());
        let query = tokio::task::spawn_blocking(move || this.check(&request, &caller))
            .await
            .map_err(|e| Error::Internal(format!("question check: {e}")))??;
        Ok(CheckedQuestion {
            sql: query.to_sql(),
            query,
        })
    }

    /// One answer from the caller's history, as it was stored.
    pub async fn answer(&self, caller: &Caller, id: i64) -> Result<FederatedResult> {
        Ok(self.entry(caller, id).await?.1)
    }

    /// One entry of the caller's history: the loss asked for and the answer.
    async fn entry(&self, caller: &Caller, id: i64) -> Result<(Option<f64>, FederatedResult)> {
        let history = self.history.clone();
        let user = caller.user.clone();
        tokio::task::spawn_blocking(move || history.get(&user, id))
            .await
            .map_err(|e| Error::Internal(format!("history worker: {e}")))??
            .ok_or(Error::NotInHistory(id))
    }

    /// The caller's history, newest first.
    pub async fn history(&self, caller: &Caller) -> Result<Vec<HistoryEntry>> {
        let history = self.history.clone();
        let user = caller.user.clone();
        tokio::task::spawn_blocking(move || history.list(&user))
            .await
            .map_err(|e| Error::Internal(format!("history worker: {e}")))?
    }
}

/// `query` as a site asks it of a caller whose role it adds `filter` to,
/// if `catalogue` can answer that: the site's filter parses, and the
/// catalogue has tables of the donors with a consent (an industry
/// partner's `consent_commercial = true`; [`query::catalogue::answer`]
/// says whether it reads the rest).
fn with_role_filter(
    catalogue: &Catalogue,
    query: &FeasibilityQuery,
    filter: &str,
) -> Option<FeasibilityQuery> {
    let forced = sql::parse_filter(filter).ok()?;
    catalogue
        .tables
        .iter()
        .any(|t| t.consent.is_some())
        .then(|| {
            FeasibilityQuery {
                measures: query.measures.clone(),
                filter: bonebank_schemas::Filter::And(vec![query.filter.clone(), forced]),
                group_by: query.group_by.clone(),
            }
            .canonical()
        })
}

/// A site's part of an answer, from its catalogue.
fn from_catalogue(
    site: &SiteClient,
    catalogue: &Catalogue,
    query: &FeasibilityQuery,
    answer: &CatalogueAnswer,
) -> SiteAnswer {
    SiteAnswer {
        site_id: site.id.to_string(),
        status: SiteStatus::Answered,
        message: None,
        hint: None,
        ticket: None,
        result: Some(query::catalogue::to_result(catalogue, query, answer)),
    }
}
