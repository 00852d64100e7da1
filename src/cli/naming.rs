//! `nsguard sanitize` and `nsguard ns-name`: simple-container's naming for scripts.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use crate::simple_container::naming;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard sanitize -- '--My_App.v2--'        # my-appv2")]
pub struct SanitizeArgs {
    /// The name to sanitize. Bytes that are not UTF-8 are dropped, as simple-container
    /// drops every character outside [a-z0-9-]. May start with `-`.
    #[arg(allow_hyphen_values = true)]
    name: OsString,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard ns-name --base pay-space-wallet --stack-env tenant-a --parent-env production
  nsguard ns-name --base pay-space-wallet --stack-env production --parent-env production")]
pub struct NsNameArgs {
    /// The namespace base: the stack name, or the stack's explicit namespace.
    #[arg(long)]
    base: String,
    /// The stack's environment (stackEnv).
    #[arg(long)]
    stack_env: String,
    /// The parent environment of a custom (sub-env) stack; empty or equal to
    /// --stack-env means a standard stack.
    #[arg(long, default_value = "")]
    parent_env: String,
}

pub fn sanitize(args: SanitizeArgs) -> anyhow::Result<ExitCode> {
    let input = args.name.to_string_lossy();
    let name = naming::sanitize(&input);
    if name.is_empty() {
        bail!("{input:?} sanitizes to an empty name (no character in [a-z0-9-])");
    }
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

pub fn ns_name(args: NsNameArgs) -> anyhow::Result<ExitCode> {
    let ns = naming::deployed_namespace(&args.base, &args.stack_env, &args.parent_env)?;
    println!("{ns}");
    Ok(ExitCode::SUCCESS)
}
