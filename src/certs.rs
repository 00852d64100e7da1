//! A throwaway CA and the serving (and optionally client) certificate it signs.
//!
//! For local runs and clusters without cert-manager. The CA key is never written: each
//! run makes a new CA, whose certificate becomes the webhook's `caBundle`.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// DNS names of the in-cluster Service (`nsguard` in `nsguard-system`) and of local use.
pub const DEFAULT_DNS_NAMES: [&str; 5] = [
    "nsguard.nsguard-system.svc",
    "nsguard.nsguard-system.svc.cluster.local",
    "nsguard.nsguard-system",
    "nsguard",
    "localhost",
];

/// Loopback addresses, so `curl https://127.0.0.1:8443` verifies.
pub const DEFAULT_IPS: [&str; 2] = ["127.0.0.1", "::1"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Validity of the serving and client certificates; the CA lives twice as long.
    pub days: u32,
    /// Also issue a client certificate with this common name (for `--client-ca`).
    pub client_name: Option<String>,
}

impl Default for CertRequest {
    fn default() -> Self {
        Self {
            dns_names: DEFAULT_DNS_NAMES.iter().map(|s| s.to_string()).collect(),
            ips: DEFAULT_IPS
                .iter()
                .map(|s| s.parse().expect("valid IP"))
                .collect(),
            days: 365,
            client_name: None,
        }
    }
}

/// PEM text of everything generated.
#[derive(Debug, Clone)]
pub struct GeneratedCerts {
    pub ca_cert: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub client: Option<(String, String)>,
}

/// The file names written into the output directory.
pub const CA_CERT_FILE: &str = "ca.crt";
pub const TLS_CERT_FILE: &str = "tls.crt";
pub const TLS_KEY_FILE: &str = "tls.key";
pub const CLIENT_CERT_FILE: &str = "client.crt";
pub const CLIENT_KEY_FILE: &str = "client.key";

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks that run behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
}

/// `nsguard webhook CA <16 hex digits of the SHA-256 of its public key>`.
fn ca_common_name(key: &KeyPair) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw());
    let id: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("nsguard webhook CA {id}")
}

fn named(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "nsguard");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Generate a CA, a serving certificate for the requested names, and maybe a client one.
pub fn generate(req: &CertRequest) -> anyhow::Result<GeneratedCerts> {
    if req.dns_names.is_empty() && req.ips.is_empty() {
        bail!("a serving certificate needs at least one --dns-name or --ip");
    }
    if req.days == 0 {
        bail!("--days must be at least 1");
    }

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::default();
    // A subject of its own (from its key), so a certificate from another nsguard CA is
    // reported as an unknown issuer rather than a bad signature.
    ca.distinguished_name = named(&ca_common_name(&ca_key));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, req.days.saturating_mul(2));
    let ca_cert = ca.self_signed(&ca_key).context("self-signing the CA")?;
    let issuer = Issuer::new(ca, ca_key);

    let mut serving = CertificateParams::new(req.dns_names.clone())
        .context("a --dns-name is not a valid DNS name")?;
    serving
        .subject_alt_names
        .extend(req.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    serving.distinguished_name = named(
        req.dns_names
            .first()
            .map(String::as_str)
            .unwrap_or("nsguard"),
    );
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut serving, req.days);
    let tls_key = KeyPair::generate().context("generating the serving key")?;
    let tls_cert = serving
        .signed_by(&tls_key, &issuer)
        .context("signing the serving certificate")?;

    let client = match &req.client_name {
        Some(name) => {
            let mut params = CertificateParams::default();
            params.distinguished_name = named(name);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            validity(&mut params, req.days);
            let key = KeyPair::generate().context("generating the client key")?;
            let cert = params
                .signed_by(&key, &issuer)
                .context("signing the client certificate")?;
            Some((cert.pem(), key.serialize_pem()))
        }
        None => None,
    };

    Ok(GeneratedCerts {
        ca_cert: ca_cert.pem(),
        tls_cert: tls_cert.pem(),
        tls_key: tls_key.serialize_pem(),
        client,
    })
}

impl GeneratedCerts {
    /// Write the files into `dir` (created if missing). Keys are written mode 0600.
    /// Refuses to overwrite existing files unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> anyhow::Result<Vec<PathBuf>> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files = vec![
            (CA_CERT_FILE, self.ca_cert.as_str(), false),
            (TLS_CERT_FILE, self.tls_cert.as_str(), false),
            (TLS_KEY_FILE, self.tls_key.as_str(), true),
        ];
        if let Some((cert, key)) = &self.client {
            files.push((CLIENT_CERT_FILE, cert, false));
            files.push((CLIENT_KEY_FILE, key, true));
        }
        let existing = files.iter().find(|(name, ..)| dir.join(name).exists());
        if let (false, Some((name, ..))) = (force, existing) {
            bail!(
                "{} exists; pass --force to replace the certificates in {}",
                dir.join(name).display(),
                dir.display()
            );
        }
        let mut written = Vec::new();
        for (name, pem, secret) in files {
            let path = dir.join(name);
            write_file(&path, pem, secret)
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Write to a temporary file and rename it into place, so a server polling the file
/// never reads half a certificate.
fn write_file(path: &Path, contents: &str, secret: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_into_rustls() {
        let certs = generate(&CertRequest::default()).unwrap();
        crate::server::tls::certified_key(certs.tls_cert.as_bytes(), certs.tls_key.as_bytes())
            .expect("the serving pair is usable");
    }

    #[test]
    fn every_ca_has_a_subject_of_its_own() {
        let cn = |certs: &GeneratedCerts| {
            use rustls_pki_types::pem::PemObject as _;
            let der =
                rustls_pki_types::CertificateDer::from_pem_slice(certs.ca_cert.as_bytes()).unwrap();
            let prefix = b"nsguard webhook CA ";
            let at = der
                .windows(prefix.len())
                .position(|w| w == prefix)
                .expect("the CA's common name");
            String::from_utf8(der[at..at + prefix.len() + 16].to_vec()).unwrap()
        };
        let (a, b) = (
            generate(&CertRequest::default()).unwrap(),
            generate(&CertRequest::default()).unwrap(),
        );
        assert_ne!(cn(&a), cn(&b));
        assert!(
            cn(&a)
                .trim_start_matches("nsguard webhook CA ")
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
    }

    #[test]
    fn refuses_empty_names_and_zero_days() {
        let no_names = CertRequest {
            dns_names: vec![],
            ips: vec![],
            ..CertRequest::default()
        };
        assert!(generate(&no_names).is_err());
        let zero = CertRequest {
            days: 0,
            ..CertRequest::default()
        };
        assert!(generate(&zero).is_err());
    }

    #[test]
    fn write_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate(&CertRequest::default()).unwrap();
        certs.write(dir.path(), false).unwrap();
        assert!(certs.write(dir.path(), false).is_err());
        certs.write(dir.path(), true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(TLS_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
