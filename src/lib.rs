//! nsguard: a Kubernetes admission webhook and CLI that stops a Namespace DELETE from
//! cascade-deleting other stacks' workloads, and keeps simple-container sub-env
//! workloads in their own namespaces.
//!
//! The crate is a pure core ([`naming`], [`labels`], [`placement`], [`guard`], [`audit`]
//! and its [`audit::policy_report`], [`data_at_risk`], [`outcome`], [`redeploy`],
//! [`volume_guard`]) and a thin shell around
//! it ([`admission`], [`cluster`] lookups, [`documents`] reading, [`server`], the
//! [`audit::background`] audit and its [`audit::leader`] election, [`certs`], [`cli`]);
//! the shell does I/O and calls the core, never the other way round.

pub mod admission;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod data_at_risk;
pub mod documents;
pub mod guard;
pub mod labels;
pub mod manifests;
pub mod metrics;
pub mod migration;
pub mod naming;
pub mod outcome;
pub mod placement;
pub mod redeploy;
pub mod scope;
pub mod server;
pub mod telemetry;
pub mod volume_guard;
pub mod yaml;
