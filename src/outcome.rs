//! What an admission review came to: the endpoint it arrived on and the decision, as
//! logs and metrics name them. A leaf module, so that [`crate::metrics`] can count them
//! without depending on [`crate::admission`], which records into the metrics.

/// Which webhook endpoint a review arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
    /// `/volume-guard`: claims' creates and deletes, for the volume guard alone (the
    /// placement webhooks send claims' creates to `/validate`, judged there as any object).
    VolumeGuard,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Validate, Endpoint::Mutate, Endpoint::VolumeGuard];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
            Endpoint::VolumeGuard => "volume-guard",
        }
    }
}

/// What nsguard decided, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
    /// Allowed with a JSONPatch.
    Patched,
    /// Allowed with warnings for the client.
    Warned,
}

impl Decision {
    pub const ALL: [Decision; 4] = [
        Decision::Allowed,
        Decision::Denied,
        Decision::Patched,
        Decision::Warned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Patched => "patched",
            Decision::Warned => "warned",
        }
    }
}
