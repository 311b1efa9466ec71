//! The public space's first content. On first start with an empty store, and only if the
//! development content key is one of the configured content keys:
//!
//! 1. The bundle that the client library ships (`haven_core::content::BUNDLED_PUBLIC_CONTENT`,
//!    built from `content/` with the development key), verified whole against that key, is
//!    published verbatim. Devices start from that bundle with no network; when they pull, they
//!    must find the very same changes here, because every publish from one key writes as one
//!    Automerge actor and two different first publications would conflict (see
//!    `haven_core::content::PublicBundle`).
//! 2. If the content directory (`--content-dir`, default `content/`) holds more than the bundle,
//!    the publish that brings the space to it, planned on top of the bundle and signed with the
//!    development key, follows. It is stamped with the content's own latest date, as
//!    `haven content bundle` stamps bundles, so the public log depends on the content alone and
//!    equals what `haven content bundle` appends to the bundle for the same directory.
//!
//! Both go through `SpaceService::push`, the path every client write takes. A production
//! deployment configures its own content keys; the development key's envelopes would be refused
//! there, so nothing is published, and its publisher pushes its own bundle with its own key.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ed25519_dalek::VerifyingKey;
use haven_core::content::{
    BUNDLED_PUBLIC_CONTENT, ContentKey, ContentSet, PublicBundle, plan_publish,
};
use haven_protocol::{Envelope, SpaceId};

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

/// Publishes the bundled content, then whatever the content directory adds to it, when the
/// public space is empty and the development key is one of the configured content keys.
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
    let bundle = PublicBundle::from_bytes(BUNDLED_PUBLIC_CONTENT)
        .and_then(|bundle| bundle.verify(&[key.verifying_key()]).map(|_| bundle))
        .context("the public content bundled in haven-core")?;
    let bundled = bundle.envelopes.len();

    let dir = dir.map_or_else(default_content_dir, Path::to_path_buf);
    let increment = if dir.join("articles").is_dir() || dir.join("resources").is_dir() {
        let content = ContentSet::load_dir(&dir)
            .with_context(|| format!("reading the sample content in {}", dir.display()))?;
        plan_publish(
            &key,
            &bundle.sequenced(),
            &content,
            content.latest_update_ms(),
        )
        .with_context(|| format!("planning the sample content in {}", dir.display()))?
        .envelopes
    } else {
        tracing::info!(dir = %dir.display(), "no content directory; publishing the bundled content only");
        Vec::new()
    };
    let added = increment.len();

    let mut envelopes = bundle.envelopes;
    envelopes.extend(increment);
    push_all(state, envelopes).await?;
    tracing::info!(
        bundled,
        added,
        "published the bundled sample content with the development key"
    );
    Ok(())
}

/// Pushes `envelopes` in order, in batches the space service accepts, and fails on any refusal.
async fn push_all(state: &AppState, envelopes: Vec<Envelope>) -> anyhow::Result<()> {
    let batch = state.spaces.limits().max_batch.max(1);
    let mut envelopes = envelopes.into_iter().peekable();
    while envelopes.peek().is_some() {
        let chunk: Vec<Envelope> = envelopes.by_ref().take(batch).collect();
        let count = chunk.len();
        let answer = state
            .spaces
            .push(&SpaceId::Public, chunk)
            .await
            .map_err(|error| {
                anyhow::anyhow!("publishing the sample content: {:?}", error.body())
            })?;
        if let Some(error) = answer.errors.first() {
            bail!(
                "the sample content was refused: {} ({:?})",
                error.message,
                error.code
            );
        }
        if answer.acks.len() != count {
            bail!(
                "the sample content was not fully stored: {} of {count} envelopes acknowledged",
                answer.acks.len()
            );
        }
    }
    Ok(())
}
