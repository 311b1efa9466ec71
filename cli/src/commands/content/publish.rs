//! `haven content publish --key KEYFILE DIR`: the publisher's tool.
//!
//! 1. Pull the whole public space anonymously (pages of 1000, `next`/`at`, until caught up):
//!    `plan_publish` must see every envelope this key signed, or two publishes would reuse the
//!    key's Automerge sequence numbers (it refuses an incomplete history).
//! 2. `plan_publish(key, existing, content, now)`: one signed change per changed document, then
//!    the manifest.
//! 3. Push in order, in batches of at most 500; any refused item fails the command (nothing is
//!    skipped silently; a re-run pulls what did land and pushes the rest).
//!
//! `now` is the wall clock, not the content's latest update (which `content bundle` uses so that
//! a shipped bundle rebuilds byte for byte). A manifest expires `MANIFEST_LIFETIME_MS` (180 days)
//! after `now`, and `plan_publish` re-signs an unchanged manifest only when it has less than
//! `MANIFEST_REFRESH_MS` (30 days) left *at `now`*. With the content's own date as `now`, that
//! never happens: unchanged content would keep its first manifest until devices see it expire.
//! With the wall clock, re-running `publish` on unchanged content pushes nothing until the
//! manifest nears its expiry, and then exactly one new manifest version.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use haven_core::content::{ContentKey, ContentSet, DocumentOutcome, plan_publish};
use haven_core::remote::{PullCursor, ServerApi};
use haven_protocol::{Envelope, SequencedEnvelope, SpaceId};

use crate::GlobalArgs;
use crate::device::{self, with_deadline};
use crate::output::say;

/// Envelopes per push (the server takes up to 1000 by default).
const PUSH_BATCH: usize = 500;
/// Changes per pull page (the contract's maximum).
const PULL_PAGE: u32 = 1000;
/// A bound on pull pages, so a confused server cannot keep the publisher busy forever.
const MAX_PAGES: usize = 100_000;

pub(super) fn run(global: &GlobalArgs, key_file: &Path, dir: &Path) -> anyhow::Result<()> {
    let key = ContentKey::load(key_file).context("reading the content key")?;
    let content = ContentSet::load_dir(dir)
        .with_context(|| format!("reading the content in {}", dir.display()))?;
    let remote = device::remote(&global.server, None)?;
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_millis(),
    )
    .context("the system clock is out of range")?;

    let (plan, pushed) = with_deadline(global, "publishing", async {
        let existing = pull_public(&remote).await?;
        let plan =
            plan_publish(&key, &existing, &content, now_ms).context("planning the publish")?;
        let pushed = push_all(&remote, &plan.envelopes).await?;
        Ok((plan, pushed))
    })
    .with_context(|| format!("publishing to {}", global.server))?;

    let report = &plan.report;
    for document in &report.documents {
        let outcome = match document.outcome {
            DocumentOutcome::Created => "created",
            DocumentOutcome::Updated => "updated",
            DocumentOutcome::Unchanged => "unchanged",
        };
        say!("{outcome:<9} {} {}", document.kind, document.slug);
    }
    let manifest = report
        .manifest_version
        .map_or_else(|| "none".to_owned(), |version| version.to_string());
    say!(
        "manifest version {manifest}{}; pushed {pushed} envelopes, signed by {}",
        if report.manifest_changed {
            " (new)"
        } else {
            " (unchanged)"
        },
        key.public_key_base64()
    );
    if !report.skipped.is_empty() {
        eprintln!(
            "haven: {} envelopes of the public space are not this key's (left as they are)",
            report.skipped.len()
        );
    }
    for missing in &report.missing_sources {
        eprintln!(
            "haven: public document {} ({}) has no source in {} any more; left as it is",
            missing.doc.to_hex(),
            missing.slug.as_deref().unwrap_or("unreadable"),
            dir.display()
        );
    }
    Ok(())
}

/// Every envelope of the public space, in seq order.
async fn pull_public(remote: &dyn ServerApi) -> anyhow::Result<Vec<SequencedEnvelope>> {
    let mut existing = Vec::new();
    let mut cursor = PullCursor {
        after: 0,
        at: None,
        limit: PULL_PAGE,
    };
    for _ in 0..MAX_PAGES {
        let page = remote
            .pull(None, &SpaceId::Public, cursor)
            .await
            .context("pulling the public space")?;
        let last = page
            .changes
            .last()
            .map(|change| (change.seq, change.envelope.id));
        existing.extend(page.changes);
        if page.caught_up {
            return Ok(existing);
        }
        match last {
            Some((seq, id)) if seq > cursor.after => {
                cursor.after = seq;
                cursor.at = Some(id);
            }
            _ => bail!(
                "the server's public space does not advance (not caught up, but no new changes)"
            ),
        }
    }
    bail!("the server never said caught up")
}

/// Pushes `envelopes` in order; fails on the first refused item. Returns how many were acked.
async fn push_all(remote: &dyn ServerApi, envelopes: &[Envelope]) -> anyhow::Result<usize> {
    let mut acked = 0;
    for batch in envelopes.chunks(PUSH_BATCH) {
        let answer = remote
            .push(None, &SpaceId::Public, batch)
            .await
            .context("pushing to the public space")?;
        if let Some(error) = answer.errors.first() {
            bail!(
                "the server refused {} of {} envelopes (first: document {} {}: {}); fix that and publish again",
                answer.errors.len(),
                batch.len(),
                batch
                    .iter()
                    .find(|envelope| envelope.id == error.id)
                    .map_or_else(|| "?".to_owned(), |envelope| envelope.doc.to_hex()),
                error.code.as_str(),
                error.message
            );
        }
        acked += answer.acks.len();
    }
    Ok(acked)
}
