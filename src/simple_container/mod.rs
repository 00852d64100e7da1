//! simple-container's model, in one place beneath the decisions: how it names a sub-env's
//! namespace ([`naming`], byte for byte), the labels it writes in each generation
//! ([`labels`]), and what each of its releases does to a sub-env's namespace on redeploy
//! ([`releases`]). When simple-container changes, this is the folder that changes.

pub mod labels;
pub mod naming;
pub mod releases;
