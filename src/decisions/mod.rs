//! nsguard's decisions, side by side: each a pure function over facts it is given (no
//! I/O, no clock), returning a verdict that says why. The admission pipeline
//! ([`crate::admission`]) and the CLI gather the facts and call them; the audit calls the
//! same functions over a whole cluster.
//!
//! - [`namespace_guard`]: may this Namespace be deleted? Not while two stacks live inside.
//! - [`placement`]: where does a sub-env object belong, and is it there?
//! - [`volume_guard`]: does this claim's create or delete lose a sub-env's data?
//! - [`data_at_risk`]: what a delete destroys for good (volumes on `Delete`), which the
//!   namespace guard says and the volume guard and the audit decide over.
//! - [`exemptions`]: who and what every guard lets through before looking.

pub mod data_at_risk;
pub mod exemptions;
pub mod namespace_guard;
pub mod placement;
pub mod volume_guard;
