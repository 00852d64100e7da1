//! The one pipeline every guard that reads the cluster goes through. A guard is three
//! things ([`Guard`]): what it lets through before looking (its exemptions, and what it
//! does not judge), its lookup, and its decision over what the lookup read. The steps
//! around them are written here once:
//!
//! 1. one [`Deadline`] for every read of the decision, set when the question is asked;
//! 2. the lookup, under the guard's own bound on lookups at once (the cluster's);
//! 3. fail closed: a lookup that failed or passed its deadline is decided as such, its
//!    typed [`LookupError`] said in the refusal, named in `nsguard_lookup_errors_total`;
//! 4. the guard's metrics, its decision log line, the Event of a refusal (not for a dry
//!    run), and the answer.
//!
//! [`decide`] (steps 1 to 3) is what the CLI asks too (`can-delete`, `can-create-claim`,
//! `can-delete-claim`), so the CLI and the webhook cannot disagree; `Webhook::judge`
//! adds step 4.

use futures::future::BoxFuture;
use std::time::{Duration, Instant};

use super::{Request, Response, Text, Webhook};
use crate::cluster::events::{Refusal, Regarding};
use crate::cluster::{ClusterSource, Deadline, LookupError};
use crate::metrics::Metrics;

/// A guard whose decision reads the cluster.
pub trait Guard {
    /// The question, as this guard reads it from a review or the CLI's arguments.
    type Ask<'a>;
    /// What the lookup is about, known before it (the sub-env and its namespace).
    type Subject;
    /// What the lookup read.
    type Facts;
    /// The answer: every verdict says why.
    type Decision: Ruling;

    /// What needs no lookup: `Err` is the decision, made before any API call (so an
    /// emergency never waits on the API server).
    fn before_lookup(&self, ask: &Self::Ask<'_>) -> Result<Self::Subject, Self::Decision>;

    /// The guard's reads, done by `deadline`, and the API calls they made.
    fn lookup<'s, 'q>(
        &'s self,
        cluster: &'s ClusterSource,
        ask: &'s Self::Ask<'q>,
        subject: &'s Self::Subject,
        deadline: Deadline,
    ) -> BoxFuture<'s, (Result<Self::Facts, LookupError>, usize)>
    where
        'q: 's;

    /// The decision over what was read, or over why it could not be (fail closed).
    fn decide(
        &self,
        ask: &Self::Ask<'_>,
        subject: Self::Subject,
        facts: Result<&Self::Facts, &LookupError>,
    ) -> Self::Decision;

    /// What a review asks, or why it cannot be asked (an HTTP 400's message). `groups`:
    /// the review's, owned once for the guard to borrow.
    fn ask<'a>(
        &self,
        request: &'a Request<'_>,
        groups: &'a [String],
    ) -> Result<Self::Ask<'a>, String>;

    /// The guard's own counters (the lookup's errors are counted by the pipeline).
    fn count(
        &self,
        metrics: &Metrics,
        decision: &Self::Decision,
        lookup: Option<&Lookup<Self::Facts>>,
    );

    /// The decision log line (`nsguard::audit`), one per decision, allowed or denied.
    fn log(
        &self,
        request: &Request<'_>,
        ask: &Self::Ask<'_>,
        decision: &Self::Decision,
        lookup: Option<&Lookup<Self::Facts>>,
        elapsed: Duration,
    );

    /// The object a refusal's Event is about, and what was refused (`Delete`, `Create`).
    fn regarding(&self, request: &Request<'_>, ask: &Self::Ask<'_>) -> (Regarding, &'static str);

    /// The answer to an allowed request (what it says besides "allowed", if anything).
    fn allow<'r>(&self, request: &'r Request<'_>, decision: &Self::Decision) -> Response<'r>;

    /// The answer to a refused one, with `message` (its HTTP code is the guard's).
    fn refuse<'r>(&self, request: &'r Request<'_>, message: String) -> Response<'r>;
}

/// What every guard's decision answers.
pub trait Ruling {
    fn allowed(&self) -> bool;
    /// The answer in words: for kubectl, the CLI and the Event.
    fn message(&self) -> String;
}

/// How a lookup went: what it read or why it failed, and the API calls it made.
#[derive(Debug)]
pub struct Lookup<F> {
    pub read: Result<F, LookupError>,
    pub api_calls: usize,
}

/// Steps 1 to 3: the guard's question answered, with its lookup (`None` when decided
/// before one).
///
/// # Guarantees
/// Never allows over a lookup that failed or passed its deadline, unless the guard's
/// decision says what was read already settles it; exemptions are checked before any
/// API call; every read ends by one deadline, `timeout` from the call.
pub async fn decide<G: Guard>(
    guard: &G,
    cluster: &ClusterSource,
    ask: &G::Ask<'_>,
    timeout: Duration,
) -> (G::Decision, Option<Lookup<G::Facts>>) {
    let subject = match guard.before_lookup(ask) {
        Ok(subject) => subject,
        Err(decided) => return (decided, None),
    };
    let deadline = Deadline::after(timeout);
    let (read, api_calls) = guard.lookup(cluster, ask, &subject, deadline).await;
    let decision = guard.decide(ask, subject, read.as_ref());
    (decision, Some(Lookup { read, api_calls }))
}

impl Webhook {
    /// One review through the pipeline: the question read from the review, decided,
    /// counted, logged, recorded as an Event when refused (not under `dryRun`: nothing
    /// happened), and answered. Runs the same under `dryRun`, so `kubectl ...
    /// --dry-run=server` asks "would this be allowed?".
    pub(super) async fn judge<'r, G: Guard>(
        &self,
        guard: &G,
        request: &'r Request<'_>,
    ) -> Response<'r> {
        let started = Instant::now();
        // Not the hot path: a few owned strings are nothing next to a lookup.
        let groups: Vec<String> = (request.user_info.groups.iter())
            .flatten()
            .map(ToString::to_string)
            .collect();
        let ask = match guard.ask(request, &groups) {
            Ok(ask) => ask,
            Err(message) => return Response::bad_request(request, message),
        };
        let (decision, lookup) = decide(guard, &self.cluster, &ask, self.lookup_timeout).await;
        if let Some(Lookup { read: Err(err), .. }) = &lookup {
            self.metrics.lookup_error(err.reason());
        }
        guard.count(&self.metrics, &decision, lookup.as_ref());
        guard.log(request, &ask, &decision, lookup.as_ref(), started.elapsed());
        if decision.allowed() {
            return guard.allow(request, &decision);
        }
        let message = decision.message();
        if let Some(events) = &self.events
            && !request.dry_run
        {
            let (regarding, action) = guard.regarding(request, &ask);
            events.record(Refusal {
                regarding,
                action,
                user: username(request).to_owned(),
                message: message.clone(),
            });
        }
        guard.refuse(request, message)
    }
}

/// Who asks (`""` when the review does not say).
pub(super) fn username<'r>(request: &'r Request<'_>) -> &'r str {
    request.user_info.username.as_ref().map_or("", Text::as_str)
}
