//! TLS for the webhook port: a rustls config whose serving certificate is swapped in
//! place when the files behind `--tls-cert`/`--tls-key` change.
//!
//! Kubernetes updates a mounted Secret by swapping a `..data` symlink, so watching the
//! files' inodes is fragile; nsguard re-reads the two files on an interval and swaps the
//! certificate when their bytes change. Open connections keep the key they negotiated
//! with; new handshakes get the new pair. A broken new pair is logged and ignored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::expiry::{Validity, Watched};
use crate::metrics::Metrics;

/// The crypto provider used everywhere (ring: no C toolchain beyond `cc` needed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate/key pair on disk.
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl KeyPairFiles {
    fn read(&self) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let cert = std::fs::read(&self.cert)
            .with_context(|| format!("reading certificate {}", self.cert.display()))?;
        let key = std::fs::read(&self.key)
            .with_context(|| format!("reading private key {}", self.key.display()))?;
        Ok((cert, key))
    }
}

/// Parse a PEM certificate chain and key, and check that the key belongs to the leaf.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CertifiedKey> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("certificate file is not valid PEM")?;
    if certs.is_empty() {
        bail!("certificate file holds no CERTIFICATE block");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .context("key file holds no valid PEM private key (PKCS#8, PKCS#1 or SEC1)")?;
    CertifiedKey::from_der(certs, key, &provider())
        .context("certificate and private key do not form a usable pair")
}

/// Serves the current certificate to every new handshake.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingResolver {
    fn swap(&self, key: CertifiedKey) {
        // A poisoned lock only means a panic while swapping an Arc; the value is whole.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The TLS side of `serve`: the rustls config and the task that keeps it current.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    resolver: Arc<ReloadingResolver>,
    files: KeyPairFiles,
    loaded: (Vec<u8>, Vec<u8>),
    /// The serving certificate's validity, and the client CA's (with `--client-ca`).
    watched: Vec<Watched>,
}

impl Tls {
    /// Load the pair (failing hard: a server without a certificate cannot start) and,
    /// with `client_ca`, require client certificates signed by that CA.
    pub fn load(files: KeyPairFiles, client_ca: Option<&Path>) -> anyhow::Result<Self> {
        let loaded = files.read()?;
        let key = certified_key(&loaded.0, &loaded.1).with_context(|| {
            format!(
                "loading {} and {}",
                files.cert.display(),
                files.key.display()
            )
        })?;
        let resolver = Arc::new(ReloadingResolver {
            current: RwLock::new(Arc::new(key)),
        });
        let mut watched = Vec::new();
        // A pair rustls accepted parses as X.509; a certificate without a readable
        // validity is served, just not watched.
        if let Some(validity) = Validity::of_pem(&loaded.0, false) {
            watched.push(Watched::new("serving", validity));
        }
        if let Some(path) = client_ca
            && let Some(validity) = std::fs::read(path)
                .ok()
                .and_then(|pem| Validity::of_pem(&pem, true))
        {
            watched.push(Watched::new("client_ca", validity));
        }
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS 1.2 and 1.3 with the ring provider")?;
        let builder = match client_ca {
            Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            resolver,
            files,
            loaded,
            watched,
        })
    }

    /// Export the certificates' validity, and warn in the log if one is short.
    pub fn publish(&mut self, metrics: &Metrics) {
        for watched in &self.watched {
            watched.publish(metrics);
        }
        self.warn_if_expiring();
    }

    fn warn_if_expiring(&mut self) {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        for watched in &mut self.watched {
            watched.warn_if_expiring(now, std::time::Instant::now());
        }
    }

    /// Re-read the files; swap the certificate when they changed and form a valid pair.
    /// Returns whether a new certificate is now served.
    pub fn reload_if_changed(&mut self, metrics: &Metrics) -> bool {
        let read = match self.files.read() {
            Ok(read) => read,
            Err(err) => {
                // Mid-swap a file can be briefly missing; the next tick sees the new one.
                tracing::warn!(error = %format!("{err:#}"), "cannot read TLS files; keeping the current certificate");
                metrics.tls_reload("error");
                return false;
            }
        };
        if read == self.loaded {
            return false;
        }
        let result = certified_key(&read.0, &read.1);
        // Remember the bytes either way, so a broken pair is reported once, not every tick.
        self.loaded = read;
        match result {
            Ok(key) => {
                self.resolver.swap(key);
                if let Some(validity) = Validity::of_pem(&self.loaded.0, false) {
                    match self.watched.iter_mut().find(|w| w.name == "serving") {
                        Some(serving) => serving.replace(validity, metrics),
                        None => {
                            let serving = Watched::new("serving", validity);
                            serving.publish(metrics);
                            self.watched.push(serving);
                        }
                    }
                }
                tracing::info!(cert = %self.files.cert.display(), "reloaded TLS certificate");
                metrics.tls_reload("success");
                true
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), cert = %self.files.cert.display(), "new TLS certificate rejected; keeping the current one");
                metrics.tls_reload("error");
                false
            }
        }
    }

    /// Poll the files every `interval` until `stop` fires.
    pub async fn watch(
        mut self,
        interval: Duration,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.reload_if_changed(&metrics);
                    self.warn_if_expiring();
                }
                () = stop.cancelled() => return,
            }
        }
    }
}

fn client_verifier(
    path: &Path,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("reading client CA bundle {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.with_context(|| format!("client CA bundle {} is not valid PEM", path.display()))?;
        roots.add(cert).with_context(|| {
            format!(
                "client CA bundle {} holds an unusable certificate",
                path.display()
            )
        })?;
    }
    if roots.is_empty() {
        bail!("client CA bundle {} holds no certificate", path.display());
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .context("building the client certificate verifier")
}
