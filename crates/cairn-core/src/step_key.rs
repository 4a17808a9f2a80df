//! Step identity: slugs and the `<slug>#<n>` keys that name a step inside a run.

use std::{fmt, sync::Arc};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name of one step inside one run, e.g. `research-signup#0`.
///
/// Assigned when the step call is *made* (not when it is polled): `n` counts the earlier
/// calls of the same slug in this execution of the workflow body, so adding or removing a
/// call of a different slug never shifts a key. A caller may override it with a custom key.
///
/// Shared, not copied, when cloned: a step's key goes into its events, its journal entry and
/// its error, each a clone, and a clone that allocates was ~20 allocations per 3-step run.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct StepKey(Arc<str>);

impl StepKey {
    /// The automatic key of the `n`-th call (counting from 0) of `slug`.
    pub fn numbered(slug: &str, n: u32) -> StepKey {
        StepKey(format!("{slug}#{n}").into())
    }

    /// A key chosen by the workflow author (`.key("name")`).
    pub fn custom(name: impl Into<String>) -> StepKey {
        StepKey(name.into().into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StepKey {
    fn from(value: &str) -> Self {
        StepKey(value.into())
    }
}

/// A slug that breaks the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid slug {slug:?}: use 1 to {max} characters of lowercase letters, digits, '-' or '_', starting with a letter or digit"
)]
pub struct InvalidSlug {
    /// The rejected slug.
    pub slug: String,
    /// The longest slug allowed.
    pub max: usize,
}

/// Slug of `ctx.now()` steps.
pub const NOW_SLUG: &str = "cairn.now";
/// Slug of `ctx.random()` steps.
pub const RANDOM_SLUG: &str = "cairn.random";
/// Slug of `ctx.uuid()` steps.
pub const UUID_SLUG: &str = "cairn.uuid";
/// Slug of durable sleeps.
pub const SLEEP_SLUG: &str = "cairn.sleep";
/// Slug of hooks.
pub const HOOK_SLUG: &str = "cairn.hook";

/// The longest slug Cairn accepts.
pub const MAX_SLUG_LEN: usize = 64;

/// Checks that `slug` is 1–64 characters of `[a-z0-9_-]` starting with `[a-z0-9]`.
///
/// Built-in step kinds use slugs with a `cairn.` prefix, which this rule keeps out of users'
/// hands so a user's action can never collide with them.
pub fn validate_slug(slug: &str) -> Result<(), InvalidSlug> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let valid = !slug.is_empty()
        && slug.len() <= MAX_SLUG_LEN
        && slug.chars().all(ok_char)
        && slug.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(InvalidSlug {
            slug: slug.to_owned(),
            max: MAX_SLUG_LEN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_keys_have_the_slug_and_the_count() {
        assert_eq!(
            StepKey::numbered("research-signup", 0).as_str(),
            "research-signup#0"
        );
        assert_eq!(StepKey::numbered("a", 12).to_string(), "a#12");
    }

    #[test]
    fn slugs_are_checked() {
        for good in ["a", "signup-pipeline", "post_brief2", "0day"] {
            assert!(validate_slug(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Upper",
            "-lead",
            "has space",
            "cairn.now",
            "é",
            &"x".repeat(65),
        ] {
            let err = validate_slug(bad).unwrap_err();
            assert_eq!(err.slug, bad);
        }
    }
}
