//! The workspace's end-to-end tests, in one binary: docs against the code,
//! the synthetic sites, a federated network on loopback, the totals'
//! intervals against real noise, the demo and the researcher CLI as people
//! run them, identity against a real OpenID Connect provider, and the
//! researchers' and stewards' pages in a real browser.

mod beacon;
mod browser;
mod cli;
mod coverage;
mod docs;
mod doctor;
mod federation;
mod http;
mod i18n;
mod negotiator;
mod notify;
mod oidc;
mod openapi;
mod outbound;
mod packages;
mod report;
mod sites;
mod slow;
mod stewards;
