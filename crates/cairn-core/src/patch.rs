//! Patch markers: `ctx.patched("id")` records one when a new execution takes the new code
//! path, so replays of that run take it too, while runs recorded before the change (without
//! the marker at that point) keep the old path.

/// Slug of patch markers.
pub const PATCH_SLUG: &str = "cairn.patch";

/// The step key of the marker of patch `id`.
pub fn patch_key(id: &str) -> String {
    format!("{PATCH_SLUG}:{id}")
}
