//! How long the certificates nsguard serves and trusts stay valid. An expired serving
//! certificate is an outage: the API server cannot call the webhook, and with
//! `failurePolicy: Fail` every namespace delete is refused. So their validity is exported
//! as gauges (updated on every reload), and the log warns once a day while less than
//! [`WARN_BEFORE`] remains.

use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::metrics::Metrics;

/// The log warns while less than this remains.
pub const WARN_BEFORE: Duration = Duration::from_secs(14 * 24 * 3600);
/// And at most once in this long per certificate.
const WARN_EVERY: Duration = Duration::from_secs(24 * 3600);

/// A certificate's validity, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// The validity of the first certificate of a PEM chain (the leaf), or of the one that
    /// expires first when `earliest` (a CA bundle is only as good as its first to expire).
    pub fn of_pem(pem: &[u8], earliest: bool) -> Option<Validity> {
        let mut validities = CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .filter_map(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
                let validity = cert.validity();
                Some(Validity {
                    not_before: validity.not_before.timestamp(),
                    not_after: validity.not_after.timestamp(),
                })
            });
        if earliest {
            validities.min_by_key(|v| v.not_after)
        } else {
            validities.next()
        }
    }
}

/// A certificate nsguard watches: which one (the metrics' `certificate` label), its
/// validity, and when the log last warned about it.
#[derive(Debug)]
pub struct Watched {
    pub name: &'static str,
    pub validity: Validity,
    warned: Option<Instant>,
}

impl Watched {
    pub fn new(name: &'static str, validity: Validity) -> Self {
        Self {
            name,
            validity,
            warned: None,
        }
    }

    /// A new certificate (a reload): its gauges now, and a warning again if it is short.
    pub fn replace(&mut self, validity: Validity, metrics: &Metrics) {
        self.validity = validity;
        self.warned = None;
        self.publish(metrics);
    }

    pub fn publish(&self, metrics: &Metrics) {
        metrics.certificate(self.name, self.validity.not_before, self.validity.not_after);
    }

    /// Warn in the log when less than [`WARN_BEFORE`] remains, at most once a day.
    /// Returns whether it warned (`now_unix`: the wall clock; `now`: for the daily limit).
    pub fn warn_if_expiring(&mut self, now_unix: i64, now: Instant) -> bool {
        let left = self.validity.not_after - now_unix;
        if left >= WARN_BEFORE.as_secs() as i64 {
            return false;
        }
        if self
            .warned
            .is_some_and(|warned| now.duration_since(warned) < WARN_EVERY)
        {
            return false;
        }
        self.warned = Some(now);
        let days = left as f64 / 86_400.0;
        let not_after = k8s_openapi::jiff::Timestamp::from_second(self.validity.not_after)
            .map(|t| t.to_string())
            .unwrap_or_default();
        if left <= 0 {
            tracing::error!(
                certificate = self.name,
                not_after,
                "the {} certificate has expired: the API server cannot call the webhook, and every namespace delete is refused; renew it (docs/runbook.md#nsguardcertificateexpiring)",
                self.name
            );
        } else {
            tracing::warn!(
                certificate = self.name,
                not_after,
                days_left = format!("{days:.1}"),
                "the {} certificate expires in {days:.1} days: renew it before it does (docs/runbook.md#nsguardcertificateexpiringsoon)",
                self.name
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(days: i64) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["nsguard".to_owned()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    /// The leaf's validity, or the bundle's first to expire; the gauges say it.
    #[test]
    fn the_validity_is_read_from_the_pem_and_exported() {
        let (short, long) = (pem(5), pem(400));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let leaf = Validity::of_pem(format!("{long}{short}").as_bytes(), false).unwrap();
        assert!(
            (leaf.not_after - now - 400 * 86_400).abs() < 120,
            "{leaf:?}"
        );
        assert!((leaf.not_before - now + 86_400).abs() < 120, "{leaf:?}");
        let earliest = Validity::of_pem(format!("{long}{short}").as_bytes(), true).unwrap();
        assert!(
            (earliest.not_after - now - 5 * 86_400).abs() < 120,
            "{earliest:?}"
        );
        assert_eq!(Validity::of_pem(b"not a certificate", true), None);

        let metrics = Metrics::new();
        Watched::new("serving", leaf).publish(&metrics);
        let text = metrics.encode();
        assert!(
            text.contains(&format!(
                "nsguard_tls_certificate_not_after_seconds{{certificate=\"serving\"}} {}",
                leaf.not_after
            )),
            "{text}"
        );
    }

    /// Less than 14 days left: a warning, then none for a day, then one again; a
    /// certificate with more left never warns, and a new one warns at once.
    #[test]
    fn the_log_warns_once_a_day_while_less_than_14_days_remain() {
        let now = 1_800_000_000;
        let start = Instant::now();
        let day = Duration::from_secs(86_400);
        let mut short = Watched::new(
            "serving",
            Validity {
                not_before: now - 86_400,
                not_after: now + 13 * 86_400,
            },
        );
        assert!(short.warn_if_expiring(now, start));
        assert!(!short.warn_if_expiring(now + 3600, start + Duration::from_secs(3600)));
        assert!(short.warn_if_expiring(now + 86_400, start + day));
        let metrics = Metrics::new();
        short.replace(
            Validity {
                not_before: now,
                not_after: now + 10 * 86_400,
            },
            &metrics,
        );
        assert!(short.warn_if_expiring(now + 86_400, start + day));
        let mut long = Watched::new(
            "client_ca",
            Validity {
                not_before: now,
                not_after: now + 15 * 86_400,
            },
        );
        assert!(!long.warn_if_expiring(now, start));
        // Expired: an error, still at most once a day.
        assert!(long.warn_if_expiring(now + 16 * 86_400, start + 16 * day));
        assert!(!long.warn_if_expiring(now + 16 * 86_400 + 60, start + 16 * day));
    }
}
