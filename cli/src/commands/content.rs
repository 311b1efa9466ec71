//! `haven content …`: the publisher's side of public content.
//!
//! - `keygen --out KEYFILE`: a new Ed25519 content key.
//! - `bundle --key KEYFILE DIR --out FILE [--fresh]`: the signed bundle of a content directory,
//!   the start of the public log that an app ships so its content works at first launch with no
//!   network: a new first publication, or an existing bundle extended to the directory's content
//!   (see `haven_core::content::PublicBundle` for why a shipped bundle is extended, never rebuilt).
//!
//! - `publish --key KEYFILE DIR`: the publisher's tool. Pulls the whole public space anonymously,
//!   plans the publish that brings it to DIR (`plan_publish`), and pushes the signed envelopes in
//!   batches; re-publishing unchanged content pushes nothing, an edited file pushes only its new
//!   changes and a new manifest.
//!
//! `keygen` and `bundle` run offline.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use haven_core::content::{ContentKey, ContentSet, PublicBundle};

use crate::GlobalArgs;
use crate::output::say;

mod publish;

#[derive(Debug, Subcommand)]
pub(crate) enum ContentCommand {
    /// Make a new content signing key. Prints its public key, the one devices pin and servers
    /// take with `--content-keys`. Never overwrites a file.
    Keygen {
        /// Where to write the key file (JSON, owner-only permissions). Keep it off the server.
        #[arg(long, value_name = "KEYFILE")]
        out: PathBuf,
    },
    /// Build the signed bundle of a content directory: the start of the public log that an app
    /// ships. If FILE already holds a bundle signed by KEYFILE, it is extended with the publish
    /// that brings it to DIR (nothing, if DIR is unchanged); otherwise FILE gets DIR's first
    /// publication. Deterministic: stamped with the content's latest `updated_at` /
    /// `verified_at`, not the clock, so rebuilding unchanged content gives the same bytes.
    Bundle {
        /// The content key file that signs the bundle.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// The content directory (`articles/*.md`, `resources/*.toml`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Where to write the bundle.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE with a new first publication instead of extending it. Devices that
        /// hold the old bundle, and servers that published it, will refuse the new one: only for
        /// a new content key or a bundle that never shipped.
        #[arg(long)]
        fresh: bool,
    },
    /// Publish a content directory to the server of --server: pulls the public space, signs
    /// what changed (content documents, then the manifest) and pushes it. Unchanged content
    /// pushes nothing (unless the manifest has less than 30 days left: then it is re-signed).
    Publish {
        /// The content key file that signs the content (one the server trusts).
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// The content directory (`articles/*.md`, `resources/*.toml`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

pub(crate) fn run(global: &GlobalArgs, command: ContentCommand) -> anyhow::Result<()> {
    match command {
        ContentCommand::Keygen { out } => keygen(&out),
        ContentCommand::Bundle {
            key,
            dir,
            out,
            fresh,
        } => bundle(&key, &dir, &out, fresh),
        ContentCommand::Publish { key, dir } => publish::run(global, &key, &dir),
    }
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    let key = ContentKey::generate().context("making a content key")?;
    key.save(out).context("writing the content key")?;
    // The public key alone on stdout, so that scripts can capture it; the advice on stderr.
    say!("{}", key.public_key_base64());
    eprintln!(
        "haven: wrote the content key to {}. Keep it secret and off the server; devices pin the public key above.",
        out.display()
    );
    Ok(())
}

fn bundle(key_file: &Path, dir: &Path, out: &Path, fresh: bool) -> anyhow::Result<()> {
    let key = ContentKey::load(key_file).context("reading the content key")?;
    let content = ContentSet::load_dir(dir)
        .with_context(|| format!("reading the content in {}", dir.display()))?;
    let now_ms = content.latest_update_ms();
    let existing = if fresh {
        None
    } else {
        existing_bundle(out, &key)?
    };
    let bundle = match &existing {
        Some(existing) => existing.extend(&key, &content, now_ms),
        None => PublicBundle::build(&key, &content, now_ms),
    }
    .context("signing the content")?;
    let bytes = bundle.to_bytes().context("encoding the bundle")?;

    // Read back what is about to be written, exactly as a device will, before replacing a file
    // that apps may be built from.
    let verified = PublicBundle::from_bytes(&bytes)
        .and_then(|read| read.verify(&[key.verifying_key()]))
        .context("the bundle just built does not verify")?;
    let manifest_version = verified.manifest.as_ref().map_or(0, |m| m.version);
    if verified.articles.len() != content.articles.len()
        || verified.resource_lists.len() != content.resource_lists.len()
    {
        bail!("the bundle just built does not hold the whole content directory");
    }

    let unchanged = std::fs::read(out).is_ok_and(|existing| existing == bytes);
    if !unchanged {
        write_replacing(out, &bytes)
            .with_context(|| format!("writing the bundle to {}", out.display()))?;
    }
    let what = match (&existing, unchanged) {
        (_, true) => "unchanged",
        (Some(_), false) => "extended",
        (None, false) => "wrote",
    };
    say!(
        "{what} {}: {} envelopes ({} articles, {} resource lists, manifest version {}), signed by {}",
        out.display(),
        bundle.envelopes.len(),
        verified.articles.len(),
        verified.resource_lists.len(),
        manifest_version,
        key.public_key_base64(),
    );
    Ok(())
}

/// The bundle already at `out`, to extend, or `None` if there is no file. A file that is not a
/// bundle signed by `key` is left alone: replacing it must be asked for (`--fresh`).
fn existing_bundle(out: &Path, key: &ContentKey) -> anyhow::Result<Option<PublicBundle>> {
    let bytes = match std::fs::read(out) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", out.display()));
        }
    };
    let bundle = PublicBundle::from_bytes(&bytes)
        .and_then(|bundle| bundle.verify(&[key.verifying_key()]).map(|_| bundle))
        .with_context(|| {
            format!(
                "{} is not a valid bundle signed by this key (pass --fresh to replace it with a new first publication)",
                out.display()
            )
        })?;
    Ok(Some(bundle))
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`, so
/// that an interrupted run never leaves a half-written bundle where a build would embed it.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the output path names no file"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let result = written.and_then(|()| std::fs::rename(&temporary, path));
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now; the original error matters.
        let _ = std::fs::remove_file(&temporary);
    }
    result
}
