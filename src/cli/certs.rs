//! `nsguard certs`: a CA and a serving certificate for the webhook.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::certs::{self, CertRequest};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard certs --out certs                               # for nsguard in nsguard-system
  nsguard certs --out /tmp/dev --dns-name localhost --days 30
  nsguard certs --client-name kube-apiserver              # also a client pair for --client-ca")]
pub struct CertsArgs {
    /// Directory for ca.crt, tls.crt and tls.key (created if missing).
    #[arg(long, default_value = "certs")]
    out: PathBuf,
    /// DNS name for the serving certificate (repeatable). Without --dns-name and --ip:
    /// the in-cluster Service names of nsguard in nsguard-system, localhost, 127.0.0.1, ::1.
    #[arg(long = "dns-name", value_name = "NAME")]
    dns_names: Vec<String>,
    /// IP address for the serving certificate (repeatable).
    #[arg(long = "ip", value_name = "IP")]
    ips: Vec<IpAddr>,
    /// Days the serving certificate is valid (the CA: twice as long).
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Also write client.crt/client.key with this common name, signed by the same CA,
    /// for a server started with --client-ca.
    #[arg(long)]
    client_name: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

pub fn certs(args: CertsArgs) -> anyhow::Result<ExitCode> {
    // Names given on the command line replace the defaults entirely.
    let defaults = CertRequest::default();
    let (dns_names, ips) = if args.dns_names.is_empty() && args.ips.is_empty() {
        (defaults.dns_names, defaults.ips)
    } else {
        (args.dns_names, args.ips)
    };
    let request = CertRequest {
        dns_names,
        ips,
        days: args.days,
        client_name: args.client_name,
    };
    for path in certs::generate(&request)?.write(&args.out, args.force)? {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
