//! What every guard lets through before it looks: the break-glass annotation on the
//! object, an exempt user, a member of an exempt group. Checked before any API call, so
//! that an emergency never waits on the API server. Each guard says the exemption in its
//! own verdict (the namespace guard's `break-glass`/`exempt-user`/`exempt-group`, the
//! volume guard's `exempt`).

use crate::simple_container::labels::StringMap;

/// `nsguard.dev/allow-delete: "true"`: the object's delete goes ahead whatever it
/// destroys. On a claim it also lets a create through: a sub-env's claim started on an
/// empty volume on purpose.
pub const BREAK_GLASS_ANNOTATION: &str = "nsguard.dev/allow-delete";

/// Who asks, and the annotations of the object they ask about.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
    pub annotations: Option<&'a dyn StringMap>,
}

/// Why a request is let through without a lookup, in the order they are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exemption {
    BreakGlass,
    User(String),
    Group(String),
}

/// The exemption that applies to `asker`, given the exempt users and groups
/// (`--exempt-user`, `--exempt-group`); `None` when the guard must look.
pub fn exemption(
    exempt_users: &[String],
    exempt_groups: &[String],
    asker: &Asker<'_>,
) -> Option<Exemption> {
    if asker
        .annotations
        .and_then(|a| a.get_str(BREAK_GLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
    {
        Some(Exemption::BreakGlass)
    } else if exempt_users.iter().any(|u| u == asker.username) {
        Some(Exemption::User(asker.username.to_owned()))
    } else {
        (asker.groups.iter())
            .find(|g| exempt_groups.contains(g))
            .map(|group| Exemption::Group(group.clone()))
    }
}
