//! The public-content bundle: its file format, whole-bundle verification, and the committed
//! development bundle (`sync-core/assets/public-content.bundle`) being up to date with `content/`.

// Test helpers outside #[test] functions are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use haven_core::content::{
    BUNDLE_MAGIC, BUNDLED_PUBLIC_CONTENT, BundleError, ContentKey, ContentSet,
    MAX_BUNDLE_ENVELOPES, MAX_RECORD_BYTES, PublicBundle, VerifyError, bundled_dev_content_key,
    plan_publish,
};
use haven_protocol::{Blob, Envelope};
use proptest::prelude::*;

/// The command that rebuilds the committed bundle, run from the repository root.
const REGENERATE: &str = "cargo run -p haven-cli -- content bundle --key content/dev-content-key.json content --out sync-core/assets/public-content.bundle";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn dev_key() -> ContentKey {
    ContentKey::load(&repo_path("content/dev-content-key.json")).unwrap()
}

fn other_key() -> ContentKey {
    ContentKey::from_secret_bytes(&[9; 32])
}

fn repo_content() -> &'static ContentSet {
    static CONTENT: OnceLock<ContentSet> = OnceLock::new();
    CONTENT.get_or_init(|| ContentSet::load_dir(&repo_path("content")).unwrap())
}

/// The committed bundle, decoded (not yet verified).
fn committed() -> PublicBundle {
    PublicBundle::from_bytes(BUNDLED_PUBLIC_CONTENT).unwrap()
}

/// A bundle of the repository's content signed by [`other_key`], as bytes.
fn other_bundle_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let content = repo_content();
        PublicBundle::build(&other_key(), content, content.latest_update_ms())
            .unwrap()
            .to_bytes()
            .unwrap()
    })
}

fn read_and_verify(bytes: &[u8], key: &ContentKey) -> Result<(), BundleError> {
    PublicBundle::from_bytes(bytes)?
        .verify(&[key.verifying_key()])
        .map(|_| ())
}

#[test]
fn the_committed_bundle_is_up_to_date() {
    let bundle = committed();
    let content = repo_content();
    let plan = plan_publish(
        &dev_key(),
        &bundle.sequenced(),
        content,
        content.latest_update_ms(),
    )
    .unwrap();
    let changed: Vec<String> = plan
        .report
        .documents
        .iter()
        .filter(|document| document.outcome != haven_core::content::DocumentOutcome::Unchanged)
        .map(|document| {
            format!(
                "{} `{}` ({:?})",
                document.kind, document.slug, document.outcome
            )
        })
        .collect();
    assert!(
        plan.is_empty(),
        "sync-core/assets/public-content.bundle is out of date with content/ \
         (changed: {changed:?}; manifest changed: {}). Regenerate it from the repository root \
         with:\n\n    {REGENERATE}\n\nThis extends the committed bundle with the change; \
         commit the new bundle together with the content change.",
        plan.report.manifest_changed,
    );
    assert!(plan.report.skipped.is_empty(), "{:?}", plan.report.skipped);
}

#[test]
fn the_committed_bundle_has_the_articles_and_the_hotlines() {
    let (bundle, public) = PublicBundle::bundled_dev_content().unwrap();
    assert!(bundle.envelopes.len() >= 7);
    assert_eq!(bundled_dev_content_key(), dev_key().verifying_key());
    let slugs: Vec<&str> = public.articles.iter().map(|a| a.slug.as_str()).collect();
    for slug in [
        "consent-basics",
        "first-hours-and-days",
        "him-though",
        "supporting-a-friend",
    ] {
        assert!(slugs.contains(&slug), "{slug} missing from {slugs:?}");
    }
    let rainn = public
        .resource_lists
        .iter()
        .flat_map(|list| &list.resources)
        .find(|resource| resource.phone.as_deref() == Some("+18006564673"))
        .expect("RAINN's hotline is bundled");
    assert!(rainn.is_24_7);
    assert!(rainn.name.contains("RAINN"), "{}", rainn.name);
    // Up to date, so the bundle holds exactly what content/ says.
    assert_eq!(public.articles, repo_content().articles);
    assert_eq!(public.resource_lists, repo_content().resource_lists);
    let manifest = public.manifest.unwrap();
    assert_eq!(manifest.entries.len(), 6);
    assert!(public.rejected.is_empty() && public.unreadable.is_empty());
    assert!(public.incomplete.is_empty());
}

#[test]
fn round_trip_and_determinism() {
    let content = repo_content();
    let key = other_key();
    let bundle = PublicBundle::build(&key, content, content.latest_update_ms()).unwrap();
    let bytes = bundle.to_bytes().unwrap();
    assert!(bytes.starts_with(BUNDLE_MAGIC));
    assert_eq!(bytes, other_bundle_bytes(), "same inputs, same bytes");
    let read = PublicBundle::from_bytes(&bytes).unwrap();
    assert_eq!(read, bundle);
    let public = read.verify(&[key.verifying_key()]).unwrap();
    assert_eq!(public.articles, content.articles);
    // Any of several pinned keys will do.
    assert!(
        read.verify(&[dev_key().verifying_key(), key.verifying_key()])
            .is_ok()
    );
    // The timestamp is part of every change: this is why a bundle must be THE first publication,
    // and why tools stamp it with the content's date instead of the clock.
    let later = PublicBundle::build(&key, content, content.latest_update_ms() + 1000).unwrap();
    assert_ne!(later.envelopes[0].id, bundle.envelopes[0].id);
}

#[test]
fn a_bundle_signed_by_another_key_is_refused() {
    assert_eq!(
        read_and_verify(other_bundle_bytes(), &dev_key()),
        Err(BundleError::Envelope {
            index: 0,
            source: VerifyError::BadSignature
        })
    );
    assert!(read_and_verify(other_bundle_bytes(), &other_key()).is_ok());
    assert!(matches!(
        committed().verify(&[]),
        Err(BundleError::Envelope {
            source: VerifyError::BadSignature,
            ..
        })
    ));
}

#[test]
fn a_changed_byte_anywhere_is_refused() {
    let bytes = other_bundle_bytes();
    let key = other_key();
    // One bit of every byte; other changes to a byte go through the same checks (and the
    // proptest below overwrites random stretches).
    for index in 0..bytes.len() {
        let mut tampered = bytes.to_vec();
        tampered[index] ^= 0x01;
        assert!(
            read_and_verify(&tampered, &key).is_err(),
            "flipping a bit of byte {index} of {} went unnoticed",
            bytes.len()
        );
    }
}

#[test]
fn truncated_files_are_refused_with_a_typed_error() {
    let bytes = other_bundle_bytes();
    for len in 0..bytes.len() {
        let error = PublicBundle::from_bytes(&bytes[..len]).unwrap_err();
        assert!(
            matches!(
                error,
                BundleError::NotABundle
                    | BundleError::Truncated
                    | BundleError::Record { .. }
                    | BundleError::RecordTooLarge { .. }
            ),
            "prefix of {len} bytes: {error:?}"
        );
    }
    // A record cut short inside the last envelope is a truncation, not a different envelope.
    assert_eq!(
        PublicBundle::from_bytes(&bytes[..bytes.len() - 1]),
        Err(BundleError::Truncated)
    );
}

#[test]
fn malformed_framing_gets_its_own_error() {
    let with_header = |count: u32, rest: &[u8]| {
        let mut bytes = BUNDLE_MAGIC.to_vec();
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(rest);
        bytes
    };
    assert_eq!(PublicBundle::from_bytes(b""), Err(BundleError::NotABundle));
    assert_eq!(
        PublicBundle::from_bytes(b"HAVENPB2\0\0\0\0"),
        Err(BundleError::NotABundle)
    );
    assert_eq!(
        PublicBundle::from_bytes(BUNDLE_MAGIC),
        Err(BundleError::Truncated)
    );
    assert_eq!(
        PublicBundle::from_bytes(&with_header(u32::MAX, &[])),
        Err(BundleError::TooManyEnvelopes {
            count: u32::MAX as usize,
            max: MAX_BUNDLE_ENVELOPES
        })
    );
    // A count the remaining bytes cannot hold is refused before anything is allocated.
    assert_eq!(
        PublicBundle::from_bytes(&with_header(50_000, &[0; 16])),
        Err(BundleError::Truncated)
    );
    assert_eq!(
        PublicBundle::from_bytes(&with_header(1, &u32::MAX.to_be_bytes())),
        Err(BundleError::RecordTooLarge {
            index: 0,
            len: u32::MAX as usize,
            max: MAX_RECORD_BYTES
        })
    );
    assert!(matches!(
        PublicBundle::from_bytes(&with_header(1, &[0, 0, 0, 3, 9, 9, 9])),
        Err(BundleError::Record { index: 0, .. })
    ));
    // An empty bundle reads, and holds nothing a device could believe.
    let empty = PublicBundle::from_bytes(&with_header(0, &[])).unwrap();
    assert_eq!(
        empty.verify(&[other_key().verifying_key()]),
        Err(BundleError::NoManifest)
    );
    assert_eq!(
        PublicBundle::from_bytes(&with_header(0, &[1, 2])),
        Err(BundleError::TrailingBytes { len: 2 })
    );
    let mut trailing = other_bundle_bytes().to_vec();
    trailing.push(0);
    assert_eq!(
        PublicBundle::from_bytes(&trailing),
        Err(BundleError::TrailingBytes { len: 1 })
    );
}

#[test]
fn a_bundle_missing_reordering_or_repeating_envelopes_is_refused() {
    let bundle = PublicBundle::from_bytes(other_bundle_bytes()).unwrap();
    let pinned = [other_key().verifying_key()];
    let last = bundle.envelopes.len() - 1;
    let without = |index: usize| {
        let mut envelopes = bundle.envelopes.clone();
        envelopes.remove(index);
        PublicBundle { envelopes }
    };
    // Every envelope is validly signed, yet a list or an article is missing: the signed manifest
    // lists it.
    assert!(matches!(
        without(last - 1).verify(&pinned),
        Err(BundleError::ManifestMismatch(_))
    ));
    assert!(matches!(
        without(0).verify(&pinned),
        Err(BundleError::ManifestMismatch(_))
    ));
    assert_eq!(without(last).verify(&pinned), Err(BundleError::NoManifest));

    let mut repeated = bundle.clone();
    repeated.envelopes.push(bundle.envelopes[1].clone());
    assert_eq!(
        repeated.verify(&pinned),
        Err(BundleError::DuplicateEnvelope { index: last + 1 })
    );
    let mut reordered = bundle.clone();
    reordered.envelopes.swap(0, 1);
    assert_eq!(
        reordered.verify(&pinned),
        Err(BundleError::OutOfOrder { index: 1 })
    );
}

#[test]
fn extending_appends_the_next_publish() {
    let key = other_key();
    let pinned = [key.verifying_key()];
    let content = repo_content();
    let first = PublicBundle::from_bytes(other_bundle_bytes()).unwrap();
    let now_ms = content.latest_update_ms();
    assert_eq!(first.extend(&key, content, now_ms).unwrap(), first);

    let mut edited = content.clone();
    edited.articles[0].body.push_str("\nOne more line.\n");
    edited.articles[0].updated_at += 1000;
    let now_ms = edited.latest_update_ms();
    let extended = first.extend(&key, &edited, now_ms).unwrap();
    assert_eq!(
        extended.envelopes[..first.envelopes.len()],
        first.envelopes[..]
    );
    assert_eq!(
        extended.envelopes.len(),
        first.envelopes.len() + 2,
        "the article's change and the manifest's"
    );
    let public = extended.verify(&pinned).unwrap();
    assert_eq!(public.manifest.unwrap().version, 2);
    assert!(
        public
            .articles
            .iter()
            .any(|article| article.body.ends_with("One more line.\n"))
    );
    // What a server holding the first bundle plans for the edit is exactly the extension.
    let plan = plan_publish(&key, &first.sequenced(), &edited, now_ms).unwrap();
    assert_eq!(
        plan.envelopes[..],
        extended.envelopes[first.envelopes.len()..]
    );
    let bytes = extended.to_bytes().unwrap();
    assert_eq!(PublicBundle::from_bytes(&bytes).unwrap(), extended);
}

#[test]
fn to_bytes_refuses_what_from_bytes_would() {
    let mut bundle = PublicBundle::from_bytes(other_bundle_bytes()).unwrap();
    bundle.envelopes[0].body = Blob(vec![0; MAX_RECORD_BYTES]);
    assert!(matches!(
        bundle.to_bytes(),
        Err(BundleError::RecordTooLarge { index: 0, .. })
    ));
    // Small bodies: the count alone must be refused, without building 100,000 real changes.
    let mut small: Envelope = bundle.envelopes[1].clone();
    small.body = Blob(Vec::new());
    let many = PublicBundle {
        envelopes: vec![small; MAX_BUNDLE_ENVELOPES + 1],
    };
    assert!(matches!(
        many.to_bytes(),
        Err(BundleError::TooManyEnvelopes { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, with or without the magic, never panic the reader.
    #[test]
    fn garbage_never_panics(
        with_magic in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = if with_magic { BUNDLE_MAGIC.to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        if let Ok(bundle) = PublicBundle::from_bytes(&bytes) {
            prop_assert!(bundle.verify(&[other_key().verifying_key()]).is_err());
        }
    }

    /// A valid bundle with a random stretch overwritten never panics and is never believed.
    #[test]
    fn overwritten_stretches_are_refused(
        start in 0usize..14_000,
        patch in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let bytes = other_bundle_bytes();
        let start = start % bytes.len();
        let mut tampered = bytes.to_vec();
        let end = (start + patch.len()).min(tampered.len());
        tampered[start..end].copy_from_slice(&patch[..end - start]);
        prop_assume!(tampered != bytes);
        prop_assert!(read_and_verify(&tampered, &other_key()).is_err());
    }
}
