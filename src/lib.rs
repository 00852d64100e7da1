//! nsguard: a Kubernetes admission webhook and CLI that stops a Namespace DELETE from
//! cascade-deleting other stacks' workloads, and keeps simple-container sub-env
//! workloads in their own namespaces.
//!
//! A pure core and a thin shell around it. Each module imports only from the modules
//! listed before it (`cargo test --lib import_graph` checks it, and prints the layers with
//! `-- --nocapture`); the shell does I/O and calls the core, never the other way round.
//!
//! The core (no I/O, no clock):
//! - [`excerpt`]: bounded quotes of request-controlled text;
//! - [`outcome`]: what a review came to (endpoint, decision), as logs and metrics name it;
//! - [`yaml`], [`documents`], [`scope`]: manifests and dumps read as kubectl reads them;
//! - [`simple_container`]: its naming, its labels, its releases;
//! - [`decisions`]: the namespace guard, placement, the volume guard, what a delete
//!   destroys, and the exemptions they share;
//! - [`placement_policy`]: placement as the API server's own ValidatingAdmissionPolicy;
//! - [`manifests`]: offline placement over manifest files;
//! - [`audit`] (its findings, [`audit::misplaced`], [`audit::policy_report`]) and
//!   [`migration`] (the plan that keeps every volume).
//!
//! The shell:
//! - [`telemetry`], [`metrics`], [`certs`]: logs, Prometheus, the self-made certificates;
//! - [`cluster`]: reads and writes the cluster (a live API server or a dump) and decides
//!   nothing: lookups, Events, PolicyReports, readiness;
//! - [`admission`]: the AdmissionReview wire format and the one pipeline every guard goes
//!   through (exemptions, lookup under a deadline, decision, metrics, log line, Event,
//!   answer);
//! - [`background_audit`] (and its [`background_audit::leader`] election) and [`server`]
//!   (HTTPS, the routes, connections, shutdown);
//! - [`cli`]: the commands, which call the same decisions and pipeline as the server.

pub mod admission;
pub mod audit;
pub mod background_audit;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod decisions;
pub mod documents;
pub mod excerpt;
pub mod manifests;
pub mod metrics;
pub mod migration;
pub mod outcome;
pub mod placement_policy;
pub mod scope;
pub mod server;
pub mod simple_container;
pub mod telemetry;
pub mod yaml;

#[cfg(test)]
mod import_graph;
