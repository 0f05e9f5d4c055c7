//! From a feasibility answer to a sample request: the BBMRI-ERIC
//! Negotiator (v3) request for the sites a researcher chose, built from the
//! answer in their history, and optionally sent to the coordinator's
//! Negotiator, whose answer says where the researcher continues.

use std::time::Duration;

use bonebank_schemas::wire::{
    FederatedResult, NegotiatorHandoff, NegotiatorHandoffRequest, NegotiatorOrganization,
    NegotiatorRequest, NegotiatorResource, SiteStatus,
};

use crate::config::{CoordinatorConfig, NegotiatorConfig, biobank_of};
use crate::{Error, Result};

/// Builds and sends Negotiator requests.
#[derive(Debug, Clone)]
pub struct Negotiator {
    /// Site id → Directory collection id, for the sites that have one.
    collections: Vec<(String, String)>,
    /// Where the researchers' app is, for the request's link.
    public_url: String,
    target: Option<Target>,
}

#[derive(Debug, Clone)]
struct Target {
    requests: reqwest::Url,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
}

impl Negotiator {
    pub fn new(config: &CoordinatorConfig, public_url: &str) -> Result<Self> {
        let collections = config
            .sites
            .iter()
            .filter_map(|s| Some((s.id.to_string(), s.directory_collection.clone()?)))
            .collect();
        let target = config.negotiator.as_ref().map(Target::new).transpose()?;
        Ok(Self {
            collections,
            public_url: public_url.trim_end_matches('/').to_owned(),
            target,
        })
    }

    /// Whether requests can be sent from here, not only downloaded.
    pub fn can_send(&self) -> bool {
        self.target.is_some()
    }

    /// The request for the answer `id` (the caller's own) and the sites
    /// asked for; sent when `ask.send`.
    pub async fn hand_off(
        &self,
        id: i64,
        answer: &FederatedResult,
        ask: &NegotiatorHandoffRequest,
    ) -> Result<NegotiatorHandoff> {
        let request = self.request(id, answer, ask.sites.as_deref())?;
        let redirect_url = if ask.send {
            let target = self.target.as_ref().ok_or_else(|| {
                Error::Conflict(
                    "this coordinator sends no requests to a Negotiator; download the request instead"
                        .into(),
                )
            })?;
            Some(target.send(&request).await?)
        } else {
            None
        };
        Ok(NegotiatorHandoff {
            request,
            redirect_url,
        })
    }

    fn request(
        &self,
        id: i64,
        answer: &FederatedResult,
        sites: Option<&[String]>,
    ) -> Result<NegotiatorRequest> {
        let collection = |site: &str| {
            self.collections
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(site))
        };
        let chosen: Vec<&(String, String)> = match sites {
            Some(sites) => sites
                .iter()
                .map(|site| {
                    if !answer.sites.iter().any(|s| s.site_id.eq_ignore_ascii_case(site)) {
                        return Err(Error::Conflict(format!(
                            "{site} was not asked this question"
                        )));
                    }
                    collection(site).ok_or_else(|| {
                        Error::Conflict(format!(
                            "{site} has no collection in the BBMRI-ERIC Directory in this coordinator's config"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
            None => answer
                .sites
                .iter()
                .filter(|s| s.status == SiteStatus::Answered)
                .filter_map(|s| collection(&s.site_id))
                .collect(),
        };
        if chosen.is_empty() {
            return Err(Error::Conflict(
                "no chosen site has a collection in the BBMRI-ERIC Directory".into(),
            ));
        }
        let resources = chosen
            .into_iter()
            .map(|(site, collection)| NegotiatorResource {
                id: collection.clone(),
                name: site.clone(),
                organization: NegotiatorOrganization {
                    id: 0,
                    external_id: biobank_of(collection)
                        .expect("checked when the config was read")
                        .to_owned(),
                    name: site.clone(),
                },
            })
            .collect();
        Ok(NegotiatorRequest {
            url: format!("{}/#a={id}", self.public_url),
            human_readable: human_readable(answer),
            resources,
        })
    }
}

/// The question and what the network answered, in words for the biobanks'
/// staff who read the request.
fn human_readable(answer: &FederatedResult) -> String {
    let mut text = format!("bonebank feasibility question: {}\n", answer.query.to_sql());
    for site in &answer.sites {
        text.push_str(&format!("{}: {}\n", site.site_id, site.status.as_str()));
    }
    text.push_str(
        "The counts are differentially private (noise added at each site); the sites hold the exact numbers.",
    );
    text
}

impl Target {
    fn new(config: &NegotiatorConfig) -> Result<Self> {
        // As a folder, so that the API's path joins below it.
        let base = format!("{}/", config.url.trim_end_matches('/'));
        let requests = reqwest::Url::parse(&base)
            .and_then(|b| b.join("api/v3/requests"))
            .map_err(|e| Error::Usage(format!("negotiator.url: {e}")))?;
        let credentials =
            bonebank_service::config::read_secret(config.credentials_file.as_deref())?
                .map(|text| {
                    text.split_once(':')
                        .map(|(u, p)| (u.to_owned(), p.to_owned()))
                        .ok_or_else(|| {
                            Error::Usage(
                                "negotiator.credentials_file must hold user:password".into(),
                            )
                        })
                })
                .transpose()?;
        bonebank_service::tls::install_default_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| Error::Usage(format!("negotiator client: {e}")))?;
        Ok(Self {
            requests,
            credentials,
            http,
        })
    }

    /// Posts the request; the address the researcher continues at.
    async fn send(&self, request: &NegotiatorRequest) -> Result<String> {
        let mut post = self.http.post(self.requests.clone()).json(request);
        if let Some((user, password)) = &self.credentials {
            post = post.basic_auth(user, Some(password));
        }
        let unavailable = |why: String| {
            tracing::warn!(why, "the Negotiator did not take a request");
            Error::Upstream(format!("the Negotiator did not take the request: {why}"))
        };
        let response = post
            .send()
            .await
            .map_err(|e| unavailable(bonebank_service::error_chain(&e)))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| unavailable(format!("HTTP {status}, unreadable answer: {e}")))?;
        if status != reqwest::StatusCode::CREATED && !status.is_success() {
            let detail = body
                .get("detail")
                .or_else(|| body.get("message"))
                .and_then(|d| d.as_str())
                .unwrap_or("");
            return Err(unavailable(format!("HTTP {status} {detail}")));
        }
        body.get("redirectUrl")
            .and_then(|u| u.as_str())
            .map(str::to_owned)
            .ok_or_else(|| unavailable("its answer has no redirectUrl".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_names_its_biobank() {
        assert_eq!(
            biobank_of("bbmri-eric:ID:DE_LUE:collection:MSC"),
            Some("bbmri-eric:ID:DE_LUE")
        );
        assert_eq!(biobank_of("bbmri-eric:ID:DE_LUE"), None);
        assert_eq!(biobank_of("DE_LUE:collection:MSC"), None);
        assert_eq!(biobank_of("bbmri-eric:ID::collection:MSC"), None);
        assert_eq!(biobank_of("bbmri-eric:ID:DE LUE:collection:MSC"), None);
    }
}
