//! A site's fair share among its users: how long one question's plan may
//! run, how many questions one user may have in flight, and how many fresh
//! questions a user and a project may ask per minute. Read from the
//! `[limits]` table of the node's config.
//!
//! The rate limits are token buckets kept in memory: a bucket holds up to a
//! minute's worth of questions and refills continuously. Only fresh questions
//! (those that run a plan) take a token; remembered answers cost a lookup
//! and stay free, but they count towards the in-flight cap like any request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bonebank_schemas::wire::SiteLimits;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkLimits {
    /// Milliseconds one question's plan may be estimated to take, from its
    /// shape and the dataset's row count alone (never from which rows
    /// match): a question past it is turned away before any data is read,
    /// and charged nothing. A plan that starts runs to its end.
    pub plan_timeout_ms: u64,
    /// Questions one user may have in flight at this node at once; more get
    /// HTTP 429.
    pub concurrent_per_user: u32,
    /// Fresh questions one user may ask per minute (remembered answers do
    /// not count); more get HTTP 429 with Retry-After.
    pub user_questions_per_minute: u32,
    /// The same for all users of one project together.
    pub project_questions_per_minute: u32,
}

impl Default for WorkLimits {
    fn default() -> Self {
        Self {
            plan_timeout_ms: bonebank_engine::DEFAULT_PLAN_TIMEOUT.as_millis() as u64,
            concurrent_per_user: 4,
            user_questions_per_minute: 30,
            project_questions_per_minute: 120,
        }
    }
}

impl WorkLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.plan_timeout_ms == 0
            || self.concurrent_per_user == 0
            || self.user_questions_per_minute == 0
            || self.project_questions_per_minute == 0
        {
            return Err("limits: every limit must be at least 1".into());
        }
        Ok(())
    }

    /// The default plan timeout without a fair share: for benchmarks and
    /// tests where one client asks everything.
    pub fn unthrottled() -> Self {
        Self {
            concurrent_per_user: 1_000,
            user_questions_per_minute: 1_000_000,
            project_questions_per_minute: 1_000_000,
            ..Self::default()
        }
    }

    pub fn plan_timeout(&self) -> Duration {
        Duration::from_millis(self.plan_timeout_ms)
    }

    /// The limits as `/v1/site` shows them.
    pub fn describe(&self) -> SiteLimits {
        SiteLimits {
            question: bonebank_query::limits::LIMITS,
            plan_timeout_ms: self.plan_timeout_ms,
            concurrent_per_user: self.concurrent_per_user,
            user_questions_per_minute: self.user_questions_per_minute,
            project_questions_per_minute: self.project_questions_per_minute,
        }
    }
}

/// Who is asking what, right now, and how many tokens each bucket holds.
#[derive(Debug, Clone)]
pub struct FairShare {
    limits: WorkLimits,
    inner: Arc<Mutex<Counters>>,
}

#[derive(Debug, Default)]
struct Counters {
    in_flight: HashMap<String, u32>,
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A question in flight; it leaves the count when dropped.
#[derive(Debug)]
pub struct InFlight {
    inner: Arc<Mutex<Counters>>,
    user: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut c = self.inner.lock().expect("lock");
        if let Some(n) = c.in_flight.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                c.in_flight.remove(&self.user);
            }
        }
    }
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl FairShare {
    pub fn new(limits: WorkLimits) -> Self {
        Self {
            limits,
            inner: Arc::default(),
        }
    }

    pub fn limits(&self) -> &WorkLimits {
        &self.limits
    }

    /// Counts a question of `user` in flight, or refuses it when the user
    /// already has as many as the site allows.
    pub fn enter(&self, user: &str) -> Result<InFlight> {
        let mut c = self.inner.lock().expect("lock");
        let n = c.in_flight.entry(user.to_owned()).or_default();
        if *n >= self.limits.concurrent_per_user {
            return Err(Error::TooManyRequests {
                message: format!(
                    "you already have {} questions running at this site, as many as it allows at once",
                    self.limits.concurrent_per_user
                ),
                retry_after: 1,
            });
        }
        *n += 1;
        Ok(InFlight {
            inner: self.inner.clone(),
            user: user.to_owned(),
        })
    }

    /// Takes a token for a fresh question from the user's and the project's
    /// buckets, or neither when one of them is empty.
    pub fn take(&self, user: &str, project: &str) -> Result<()> {
        self.take_at(user, project, Instant::now())
    }

    // Hand-kept rather than `governor`'s keyed limiter: a fresh question
    // takes a token from the user's bucket and the project's together or
    // from neither (a keyed limiter checks one key at a time, so a project
    // that is out would still cost the user a token), and the Retry-After
    // names whichever bucket refused.
    fn take_at(&self, user: &str, project: &str, now: Instant) -> Result<()> {
        let mut c = self.inner.lock().expect("lock");
        if c.buckets.len() > MAX_BUCKETS {
            let limits = self.limits;
            c.buckets.retain(|k, b| {
                let per_minute = if k.starts_with("u:") {
                    limits.user_questions_per_minute
                } else {
                    limits.project_questions_per_minute
                };
                refilled(*b, per_minute, now).tokens < f64::from(per_minute)
            });
            // More accounts than that asked within a minute: the fullest
            // buckets go first (an account whose bucket is dropped starts
            // full again, which is where those were nearly back anyway).
            if c.buckets.len() > MAX_BUCKETS {
                let mut fullness: Vec<(f64, String)> = c
                    .buckets
                    .iter()
                    .map(|(k, b)| {
                        let per_minute = if k.starts_with("u:") {
                            limits.user_questions_per_minute
                        } else {
                            limits.project_questions_per_minute
                        };
                        let b = refilled(*b, per_minute, now);
                        (b.tokens / f64::from(per_minute), k.clone())
                    })
                    .collect();
                fullness.sort_by(|a, b| b.0.total_cmp(&a.0));
                for (_, k) in fullness.into_iter().take(c.buckets.len() - MAX_BUCKETS / 2) {
                    c.buckets.remove(&k);
                }
            }
        }
        let accounts = [
            (
                "your",
                format!("u:{user}"),
                self.limits.user_questions_per_minute,
            ),
            (
                "your project's",
                format!("p:{project}"),
                self.limits.project_questions_per_minute,
            ),
        ];
        let mut filled = Vec::new();
        for (whose, key, per_minute) in &accounts {
            let b = c.buckets.get(key).copied().unwrap_or(Bucket {
                tokens: f64::from(*per_minute),
                at: now,
            });
            let b = refilled(b, *per_minute, now);
            if b.tokens < 1.0 {
                let seconds = (1.0 - b.tokens) * 60.0 / f64::from(*per_minute);
                return Err(Error::TooManyRequests {
                    message: format!(
                        "{whose} {per_minute} fresh questions per minute at this site are used up"
                    ),
                    retry_after: seconds.ceil().max(1.0) as u64,
                });
            }
            filled.push((key.clone(), b));
        }
        for (key, mut b) in filled {
            b.tokens -= 1.0;
            c.buckets.insert(key, b);
        }
        Ok(())
    }
}

fn refilled(b: Bucket, per_minute: u32, now: Instant) -> Bucket {
    let per_minute = f64::from(per_minute);
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + elapsed * per_minute / 60.0).min(per_minute),
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(concurrent: u32, user: u32, project: u32) -> FairShare {
        FairShare::new(WorkLimits {
            concurrent_per_user: concurrent,
            user_questions_per_minute: user,
            project_questions_per_minute: project,
            ..WorkLimits::default()
        })
    }

    fn retry_after(r: Result<()>) -> u64 {
        match r {
            Err(Error::TooManyRequests { retry_after, .. }) => retry_after,
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn the_buckets_stay_bounded_however_many_accounts_ask() {
        let share = share(4, 5, 1_000_000);
        let start = Instant::now();
        // One user a millisecond: older buckets have refilled more.
        let at = |u: usize| start + Duration::from_millis(u as u64);
        for u in 0..3 * MAX_BUCKETS {
            share
                .take_at(&format!("user{u}"), "one project", at(u))
                .unwrap();
            let held = share.inner.lock().unwrap().buckets.len();
            assert!(held <= MAX_BUCKETS + 2, "{held} buckets after {u} users");
        }
        // The newest users keep their buckets: the limit still holds for them.
        let now = at(3 * MAX_BUCKETS);
        let last = format!("user{}", 3 * MAX_BUCKETS - 1);
        for _ in 0..4 {
            share.take_at(&last, "one project", now).unwrap();
        }
        assert!(share.take_at(&last, "one project", now).is_err());
    }

    #[test]
    fn one_user_cannot_have_more_questions_in_flight_than_allowed() {
        let s = share(2, 10, 10);
        let a = s.enter("ann").unwrap();
        let _b = s.enter("ann").unwrap();
        assert!(matches!(s.enter("ann"), Err(Error::TooManyRequests { .. })));
        // Another user is not affected.
        let _c = s.enter("bob").unwrap();
        // A question that ends frees its place.
        drop(a);
        s.enter("ann").unwrap();
    }

    #[test]
    fn buckets_hold_a_minute_of_questions_and_refill() {
        let s = share(4, 3, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            s.take_at("ann", "p", t0).unwrap();
        }
        // Three per minute: the next token is 20 s away.
        assert_eq!(retry_after(s.take_at("ann", "p", t0)), 20);
        assert_eq!(
            retry_after(s.take_at("ann", "p", t0 + Duration::from_secs(15))),
            5
        );
        s.take_at("ann", "p", t0 + Duration::from_secs(20)).unwrap();
        // Bob's bucket is his own.
        s.take_at("bob", "p", t0).unwrap();
    }

    #[test]
    fn the_project_bucket_is_shared_and_a_refusal_takes_nothing() {
        let s = share(4, 2, 4);
        let t0 = Instant::now();
        for user in ["a", "b", "c", "d"] {
            s.take_at(user, "p", t0).unwrap();
        }
        assert_eq!(retry_after(s.take_at("e", "p", t0)), 15);
        // e's own bucket was not charged for the refused question: e still
        // has both of its questions for this minute, in another project.
        s.take_at("e", "q", t0).unwrap();
        s.take_at("e", "q", t0).unwrap();
        match s.take_at("e", "q", t0) {
            Err(Error::TooManyRequests { message, .. }) => {
                assert!(message.starts_with("your 2 fresh"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
