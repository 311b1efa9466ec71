//! Publishing public content end to end: content directory → signed envelopes → verified,
//! materialised content on a device.

// Test helpers outside #[test] functions are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::OnceLock;

use haven_core::content::{
    ContentError, ContentKey, ContentSet, DocumentOutcome, MANIFEST_LIFETIME_MS, ManifestGuard,
    PublicContent, PublishPlan, VerifyError, plan_publish, verify_public_envelope,
};
use haven_core::documents::DocType;
use haven_protocol::{Envelope, SequencedEnvelope};
use proptest::prelude::*;

const NOW_MS: i64 = 1_750_000_000_000;
const DAY_MS: i64 = 86_400_000;

const CONSENT: &str = r#"+++
slug = "what-is-consent"
title = "What is consent?"
summary = "Consent is a clear, freely given yes, and it can be withdrawn."
author = "Haven editorial team"
tags = ["consent", "basics"]
content_warnings = []
language = "en"
published_at = "2025-01-10T09:00:00Z"
updated_at = "2025-02-01T09:00:00Z"
+++

# What is consent?

Consent is an agreement between people to engage in sexual activity. It is given freely,
it is specific, and it can be withdrawn at any time.
"#;

const AFTER: &str = r#"+++
title = "After an assault"
summary = "What you can do in the first hours and days, at your own pace."
author = "Haven editorial team"
tags = ["support"]
content_warnings = ["describes sexual assault"]
language = "en"
published_at = 2025-01-12T09:00:00+01:00
+++

# After an assault

What happened is not your fault. You decide what happens next.
"#;

const US_NATIONAL: &str = r#"
title = "National services (United States)"
region = "US"

[[resources]]
name = "National Sexual Assault Hotline (RAINN)"
description = "Free, confidential support by phone and online chat."
phone = "+18006564673"
chat_url = "https://hotline.rainn.org/online"
url = "https://www.rainn.org"
hours = "24/7"
is_24_7 = true
languages = ["en", "es"]
categories = ["hotline", "chat"]
source_url = "https://www.rainn.org/about-national-sexual-assault-telephone-hotline"
verified_at = 2025-01-15

[[resources]]
name = "National Sexual Violence Resource Center (NSVRC)"
description = "Information, research and prevention resources. Not a crisis line."
url = "https://www.nsvrc.org"
hours = "Office hours, Eastern Time"
is_24_7 = false
languages = ["en", "es"]
categories = ["organisation"]
source_url = "https://www.nsvrc.org/about"
verified_at = "2025-01-15"
"#;

fn key() -> ContentKey {
    ContentKey::from_secret_bytes(&[42; 32])
}

fn other_key() -> ContentKey {
    ContentKey::from_secret_bytes(&[7; 32])
}

fn write_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn sample_files() -> Vec<(&'static str, String)> {
    vec![
        ("articles/what-is-consent.md", CONSENT.to_owned()),
        ("articles/after-an-assault.md", AFTER.to_owned()),
        ("resources/us-national.toml", US_NATIONAL.to_owned()),
    ]
}

fn load(files: &[(&str, String)]) -> ContentSet {
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let dir = write_dir(&borrowed);
    ContentSet::load_dir(dir.path()).unwrap()
}

fn sample() -> ContentSet {
    load(&sample_files())
}

/// The public space after pushing `envelopes` in order.
fn sequenced(envelopes: &[Envelope]) -> Vec<SequencedEnvelope> {
    envelopes
        .iter()
        .zip(1..)
        .map(|(envelope, seq)| SequencedEnvelope {
            seq,
            envelope: envelope.clone(),
        })
        .collect()
}

fn first_publish() -> &'static (ContentSet, PublishPlan) {
    static FIRST: OnceLock<(ContentSet, PublishPlan)> = OnceLock::new();
    FIRST.get_or_init(|| {
        let content = sample();
        let plan = plan_publish(&key(), &[], &content, NOW_MS).unwrap();
        (content, plan)
    })
}

fn materialise(envelopes: &[Envelope]) -> PublicContent {
    PublicContent::from_envelopes(envelopes, &[key().verifying_key()])
}

#[test]
fn parses_in_file_name_order() {
    let content = sample();
    let slugs: Vec<_> = content.articles.iter().map(|a| a.slug.as_str()).collect();
    assert_eq!(slugs, ["after-an-assault", "what-is-consent"]);
    assert_eq!(content.resource_lists[0].slug, "us-national");
    assert_eq!(
        content.articles[0].updated_at,
        content.articles[0].published_at
    );
}

#[test]
fn first_publish_verifies_and_materialises() {
    let (content, plan) = first_publish();
    assert_eq!(plan.envelopes.len(), 4, "three documents and the manifest");
    let public_key = key().verifying_key();
    for (envelope, ctr) in plan.envelopes.iter().zip(1..) {
        assert_eq!(envelope.ctr, ctr);
        assert_eq!(envelope.key_epoch, 0);
        let change = verify_public_envelope(envelope, &[public_key]).unwrap();
        assert_eq!(change.hash().0, envelope.id.0);
    }
    let devices: Vec<_> = plan.envelopes.iter().map(|e| e.device).collect();
    assert!(devices.windows(2).all(|pair| pair[0] == pair[1]));
    let outcomes: Vec<_> = plan.report.documents.iter().map(|d| d.outcome).collect();
    assert_eq!(outcomes, [DocumentOutcome::Created; 3]);
    assert_eq!(plan.report.manifest_version, Some(1));

    let public = materialise(&plan.envelopes);
    assert_eq!(public.articles, content.articles);
    assert_eq!(public.resource_lists, content.resource_lists);
    assert!(public.rejected.is_empty() && public.unreadable.is_empty());
    let manifest = public.manifest.unwrap();
    assert_eq!(manifest.version, 1);
    assert_eq!(manifest.expires_at, NOW_MS + MANIFEST_LIFETIME_MS);
    assert_eq!(manifest.entries.len(), 3);
    for document in &plan.report.documents {
        let entry = &manifest.entries[&document.doc];
        assert_eq!(
            (entry.kind, entry.slug.as_str()),
            (document.kind, document.slug.as_str())
        );
        let hash = plan
            .envelopes
            .iter()
            .find(|e| e.doc == document.doc)
            .unwrap()
            .id;
        assert_eq!(
            entry.heads.iter().map(|h| h.0).collect::<Vec<_>>(),
            [hash.0]
        );
    }
}

#[test]
fn publishing_is_deterministic() {
    let (content, plan) = first_publish();
    assert_eq!(&plan_publish(&key(), &[], content, NOW_MS).unwrap(), plan);
    // Another key gives other document ids.
    let other = plan_publish(&other_key(), &[], content, NOW_MS).unwrap();
    assert_ne!(other.envelopes[0].doc, plan.envelopes[0].doc);
}

#[test]
fn republishing_unchanged_content_is_empty() {
    let (content, plan) = first_publish();
    let existing = sequenced(&plan.envelopes);
    let again = plan_publish(&key(), &existing, content, NOW_MS + DAY_MS).unwrap();
    assert!(again.is_empty(), "{:?}", again.report);
    assert!(!again.report.manifest_changed);
    assert_eq!(again.report.manifest_version, Some(1));
    assert!(again.report.skipped.is_empty());
    assert!(
        again
            .report
            .documents
            .iter()
            .all(|d| d.outcome == DocumentOutcome::Unchanged)
    );
    // Re-reading the same directory (new parse, CRLF line ends) is still unchanged.
    let crlf: Vec<_> = sample_files()
        .into_iter()
        .map(|(name, text)| (name, text.replace('\n', "\r\n")))
        .collect();
    assert!(
        plan_publish(&key(), &existing, &load(&crlf), NOW_MS)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn editing_one_article_gives_its_change_and_a_manifest_change() {
    let (content, first) = first_publish();
    let mut files = sample_files();
    files[0].1 = CONSENT.replace(
        "withdrawn at any time.",
        "withdrawn at any time, even part way through.",
    );
    let edited = load(&files);
    let existing = sequenced(&first.envelopes);
    let plan = plan_publish(&key(), &existing, &edited, NOW_MS + DAY_MS).unwrap();
    assert_eq!(plan.envelopes.len(), 2);
    assert_eq!(plan.envelopes[0].ctr, 5);
    assert_eq!(plan.envelopes[1].ctr, 6);
    let consent = plan
        .report
        .documents
        .iter()
        .find(|d| d.slug == "what-is-consent")
        .unwrap();
    assert_eq!(consent.outcome, DocumentOutcome::Updated);
    assert_eq!(plan.envelopes[0].doc, consent.doc);
    assert_eq!(plan.report.manifest_version, Some(2));
    // The body change is a diff, not the whole body.
    assert!(
        plan.envelopes[0].body.len() < 300,
        "{} bytes",
        plan.envelopes[0].body.len()
    );

    // A device holding the first publish applies only the new envelopes.
    let mut all = first.envelopes.clone();
    all.extend(plan.envelopes.iter().cloned());
    let public = materialise(&all);
    assert_eq!(public.articles, edited.articles);
    assert_ne!(public.articles, content.articles);
    assert_eq!(public.manifest.unwrap().version, 2);

    // And publishing the edit again changes nothing.
    let existing = sequenced(&all);
    assert!(
        plan_publish(&key(), &existing, &edited, NOW_MS + 2 * DAY_MS)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn removed_sources_are_reported_and_left_in_place() {
    let (_, first) = first_publish();
    let mut files = sample_files();
    files.remove(1);
    let plan = plan_publish(&key(), &sequenced(&first.envelopes), &load(&files), NOW_MS).unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.report.missing_sources.len(), 1);
    let missing = &plan.report.missing_sources[0];
    assert_eq!(missing.kind, Some(DocType::Article));
    assert_eq!(missing.slug.as_deref(), Some("after-an-assault"));
}

#[test]
fn an_aging_manifest_is_re_signed() {
    let (content, first) = first_publish();
    let later = NOW_MS + 151 * DAY_MS;
    let plan = plan_publish(&key(), &sequenced(&first.envelopes), content, later).unwrap();
    assert_eq!(plan.envelopes.len(), 1);
    assert!(plan.report.manifest_changed);
    let mut all = first.envelopes.clone();
    all.extend(plan.envelopes.iter().cloned());
    let manifest = materialise(&all).manifest.unwrap();
    assert_eq!(
        (manifest.version, manifest.expires_at),
        (2, later + MANIFEST_LIFETIME_MS)
    );
}

#[test]
fn foreign_envelopes_are_refused_and_skipped() {
    let (content, first) = first_publish();
    let foreign = plan_publish(&other_key(), &[], content, NOW_MS).unwrap();
    for envelope in &foreign.envelopes {
        assert_eq!(
            verify_public_envelope(envelope, &[key().verifying_key()]).unwrap_err(),
            VerifyError::BadSignature
        );
    }
    // The publisher ignores them and still sees its own documents as current.
    let mut mixed = foreign.envelopes.clone();
    mixed.extend(first.envelopes.iter().cloned());
    let plan = plan_publish(&key(), &sequenced(&mixed), content, NOW_MS).unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.report.skipped.len(), foreign.envelopes.len());
    assert!(
        plan.report
            .skipped
            .iter()
            .all(|s| s.reason == VerifyError::BadSignature)
    );
    // A device pinning only the first key shows only its content.
    let public = materialise(&mixed);
    assert_eq!(public.articles, content.articles);
    assert_eq!(public.rejected.len(), foreign.envelopes.len());
}

#[test]
fn tampering_with_any_byte_is_refused() {
    let (_, plan) = first_publish();
    let pinned = [key().verifying_key()];
    let original = &plan.envelopes[0];
    let flip = |edit: &dyn Fn(&mut Envelope)| {
        let mut envelope = original.clone();
        edit(&mut envelope);
        verify_public_envelope(&envelope, &pinned)
    };
    for index in 0..original.body.len() {
        assert!(
            flip(&|e| e.body.0[index] ^= 1).is_err(),
            "body byte {index}"
        );
    }
    for index in 0..64 {
        assert!(
            flip(&|e| e.sig.as_mut().unwrap().0[index] ^= 1).is_err(),
            "sig byte {index}"
        );
    }
    for index in 0..32 {
        assert!(flip(&|e| e.id.0[index] ^= 1).is_err(), "id byte {index}");
    }
    for index in 0..16 {
        assert!(flip(&|e| e.doc.0[index] ^= 1).is_err(), "doc byte {index}");
        assert!(
            flip(&|e| e.device.0[index] ^= 1).is_err(),
            "device byte {index}"
        );
    }
    assert!(flip(&|e| e.ctr += 1).is_err());
    assert!(flip(&|e| e.sig = None).is_err());
    assert!(flip(&|e| e.kind = haven_protocol::Kind::Tombstone).is_err());
    assert!(flip(&|e| e.key_epoch = 1).is_err());
    assert!(flip(&|e| e.body.0.clear()).is_err());
    assert!(flip(&|_| ()).is_ok());
}

#[test]
fn manifest_rollback_is_refused() {
    let (_, first) = first_publish();
    let mut files = sample_files();
    files[2].1 = US_NATIONAL.replace("Office hours, Eastern Time", "Weekdays, Eastern Time");
    let second = plan_publish(&key(), &sequenced(&first.envelopes), &load(&files), NOW_MS).unwrap();
    let mut all = first.envelopes.clone();
    all.extend(second.envelopes.iter().cloned());

    let mut guard = ManifestGuard::new();
    let newest = materialise(&all).manifest.unwrap();
    guard.accept(&newest).unwrap();
    guard.accept(&newest).unwrap();
    assert_eq!(guard.last_accepted(), Some(2));
    // A server that serves only the first publish offers version 1.
    let stale = materialise(&first.envelopes).manifest.unwrap();
    assert_eq!(
        guard.accept(&stale).unwrap_err(),
        VerifyError::ManifestRollback {
            offered: 1,
            last_accepted: 2
        }
    );
    assert_eq!(guard.last_accepted(), Some(2));
    assert!(ManifestGuard::with_last_accepted(2).accept(&stale).is_err());
}

#[test]
fn publishing_on_an_incomplete_history_is_refused() {
    let (content, first) = first_publish();
    let mut files = sample_files();
    files[0].1 = CONSENT.replace("clear", "plain");
    let mut existing = sequenced(&first.envelopes);
    let second = plan_publish(&key(), &existing, &load(&files), NOW_MS).unwrap();
    existing.extend(sequenced(&second.envelopes));
    // The server lost the article's first change: its later change cannot apply.
    let article = second.envelopes[0].doc;
    let lost = existing
        .iter()
        .position(|e| e.envelope.doc == article)
        .unwrap();
    existing.remove(lost);
    assert!(matches!(
        plan_publish(&key(), &existing, content, NOW_MS),
        Err(ContentError::IncompleteHistory { doc, missing: 1 }) if doc == article
    ));
}

#[test]
fn directory_errors_name_file_and_field() {
    let cases: [(&str, String, &str); 5] = [
        (
            "resources/us-national.toml",
            US_NATIONAL.replace("+18006564673", "1-800-656-4673"),
            "resources[0].phone",
        ),
        (
            "resources/us-national.toml",
            US_NATIONAL.replace("https://www.nsvrc.org\"", "www.nsvrc.org\""),
            "resources[1].url",
        ),
        (
            "resources/us-national.toml",
            US_NATIONAL.replace("is_24_7 = false", "is_24_7 = false\nfax = \"none\""),
            "fax",
        ),
        (
            "articles/what-is-consent.md",
            CONSENT.replace("+++\n\n#", "\n\n#"),
            "+++",
        ),
        (
            "articles/what-is-consent.md",
            CONSENT.replace("language = \"en\"", "language = \"en\"\nmood = \"calm\""),
            "mood",
        ),
    ];
    for (file, text, field) in cases {
        let dir = write_dir(&[(file, &text)]);
        let message = ContentSet::load_dir(dir.path()).unwrap_err().to_string();
        assert!(message.contains(file), "{message}");
        assert!(message.contains(field), "{message}");
    }
    let dir = write_dir(&[("articles/notes.txt", "x"), ("articles/.swap", "x")]);
    let message = ContentSet::load_dir(dir.path()).unwrap_err().to_string();
    assert!(message.contains("articles/notes.txt"), "{message}");
    let empty = tempfile::tempdir().unwrap();
    assert!(ContentSet::load_dir(empty.path()).is_err());
}

#[test]
fn the_repository_content_parses_and_publishes() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../content"));
    if !dir.join("articles").is_dir() {
        println!("skipped: {} has no articles/ yet", dir.display());
        return;
    }
    let content = ContentSet::load_dir(dir).unwrap_or_else(|error| panic!("{error}"));
    println!(
        "{} articles, {} resource lists",
        content.articles.len(),
        content.resource_lists.len()
    );
    let plan = plan_publish(&key(), &[], &content, NOW_MS).unwrap();
    let public = materialise(&plan.envelopes);
    assert_eq!(public.articles, content.articles);
    assert_eq!(public.resource_lists, content.resource_lists);
}

/// Every envelope of two publishes (create, then edit), pushed once each.
fn history() -> &'static (Vec<Envelope>, PublicContent) {
    static HISTORY: OnceLock<(Vec<Envelope>, PublicContent)> = OnceLock::new();
    HISTORY.get_or_init(|| {
        let (_, first) = first_publish();
        let mut files = sample_files();
        files[0].1 = CONSENT.replace("It is given freely", "It is always given freely");
        files[2].1 = US_NATIONAL.replace(
            "\"en\", \"es\"]\ncategories = [\"organisation\"]",
            "\"en\"]\ncategories = [\"organisation\"]",
        );
        let second =
            plan_publish(&key(), &sequenced(&first.envelopes), &load(&files), NOW_MS).unwrap();
        assert_eq!(second.envelopes.len(), 3);
        let mut all = first.envelopes.clone();
        all.extend(second.envelopes);
        let expected = materialise(&all);
        (all, expected)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Envelopes arrive in any order, some twice: the content is the same.
    #[test]
    fn any_arrival_order_gives_the_same_content(
        order in Just(history().0.clone()).prop_shuffle(),
        repeats in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let (all, expected) = history();
        let mut arrived = order;
        for index in repeats {
            arrived.push(all[index.index(all.len())].clone());
        }
        let public = materialise(&arrived);
        prop_assert!(public.incomplete.is_empty());
        prop_assert_eq!(&public, expected);
    }
}
