//! The public space's first content: on first start with an empty store, the sample articles and
//! resource lists under `content/` are published, signed with the development content key, by the
//! same `haven_core::content` code the publisher's CLI uses. A production deployment configures
//! its own content keys, and then the development key's envelopes would be refused, so nothing
//! is published.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ed25519_dalek::VerifyingKey;
use haven_core::content::{ContentKey, ContentSet, plan_publish};
use haven_protocol::SpaceId;

use crate::app::AppState;

/// The development content key committed under `content/`. Its secret is public: never configure
/// its public key in production.
const DEV_KEY_JSON: &str = include_str!("../../content/dev-content-key.json");

/// The development key's public half, the default `--content-keys`.
pub fn dev_public_key() -> anyhow::Result<VerifyingKey> {
    let key = ContentKey::from_json(DEV_KEY_JSON).context("the bundled development key")?;
    Ok(key.verifying_key())
}

/// Parses a base64 Ed25519 public key from `--content-keys`.
pub fn parse_public_key(text: &str) -> anyhow::Result<VerifyingKey> {
    haven_core::content::parse_public_key(text.trim())
        .with_context(|| "a --content-keys entry is not a base64 Ed25519 public key".to_string())
}

/// `./content` when it exists, else the repository's `content/` (a development checkout).
fn default_content_dir() -> PathBuf {
    let local = PathBuf::from("content");
    if local.join("articles").is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("content")
    }
}

/// Publishes the sample content when the public space is empty and the development key is one
/// of the configured content keys.
pub async fn publish_sample_if_empty(state: &AppState, dir: Option<&Path>) -> anyhow::Result<()> {
    if state.store.head(&SpaceId::Public).await? > 0 {
        return Ok(());
    }
    let key = ContentKey::from_json(DEV_KEY_JSON).context("the bundled development key")?;
    if !state.spaces.accepts_content_key(&key.verifying_key()) {
        tracing::info!(
            "the development content key is not configured; no sample content published"
        );
        return Ok(());
    }
    let dir = dir.map_or_else(default_content_dir, Path::to_path_buf);
    if !dir.join("articles").is_dir() && !dir.join("resources").is_dir() {
        tracing::warn!(dir = %dir.display(), "no sample content found; the public space stays empty");
        return Ok(());
    }
    let content = ContentSet::load_dir(&dir)
        .with_context(|| format!("reading the sample content in {}", dir.display()))?;
    let now_ms = i64::try_from(state.clock.now().saturating_mul(1000)).unwrap_or(i64::MAX);
    let plan = plan_publish(&key, &[], &content, now_ms).context("planning the sample content")?;
    let count = plan.envelopes.len();
    let answer = state
        .spaces
        .push(&SpaceId::Public, plan.envelopes)
        .await
        .map_err(|error| anyhow::anyhow!("publishing the sample content: {:?}", error.body()))?;
    if let Some(error) = answer.errors.first() {
        bail!(
            "the sample content was refused: {} ({:?})",
            error.message,
            error.code
        );
    }
    tracing::info!(
        envelopes = count,
        "published the sample content with the development key"
    );
    Ok(())
}
