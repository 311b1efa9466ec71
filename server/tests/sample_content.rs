//! First start's public content: the bundle the client library ships, verbatim, then what the
//! content directory adds on top of it, all through the space service's push path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::StatusCode;
use common::TestApp;
use haven_core::content::{
    BUNDLED_PUBLIC_CONTENT, ContentKey, ContentSet, PublicBundle, PublicContent, plan_publish,
};
use haven_protocol::{Envelope, SequencedEnvelope};
use haven_server::public_content::{dev_public_key, publish_sample_if_empty};
use haven_server::server::AppOptions;
use haven_server::spaces::LogLimits;
use haven_server::store::memory::MemoryStore;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn bundle() -> PublicBundle {
    PublicBundle::from_bytes(BUNDLED_PUBLIC_CONTENT).unwrap()
}

/// An app whose content keys are the development key's, as a default `haven-server` has.
async fn dev_app(max_batch: usize) -> TestApp {
    let options = AppOptions {
        content_keys: vec![dev_public_key().unwrap()],
        log_limits: LogLimits {
            max_batch,
            ..LogLimits::default()
        },
        ..common::options()
    };
    TestApp::with_options(Arc::new(MemoryStore::new()), options).await
}

async fn public_log(app: &TestApp) -> Vec<Envelope> {
    let (status, body) = app.get("/v1/spaces/public/changes", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["caught_up"], true);
    serde_json::from_value::<Vec<SequencedEnvelope>>(body["changes"].clone())
        .unwrap()
        .into_iter()
        .map(|sequenced| sequenced.envelope)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn unchanged_content_publishes_exactly_the_bundle() {
    let app = dev_app(LogLimits::default().max_batch).await;
    publish_sample_if_empty(&app.state, Some(&repo_path("content")))
        .await
        .unwrap();
    assert_eq!(public_log(&app).await, bundle().envelopes);
    // Only a first start publishes.
    publish_sample_if_empty(&app.state, Some(&repo_path("content")))
        .await
        .unwrap();
    assert_eq!(public_log(&app).await, bundle().envelopes);
}

#[tokio::test]
async fn small_batches_publish_the_same_log() {
    let app = dev_app(2).await;
    publish_sample_if_empty(&app.state, Some(&repo_path("content")))
        .await
        .unwrap();
    assert_eq!(public_log(&app).await, bundle().envelopes);
}

#[tokio::test]
async fn without_a_content_directory_the_bundle_is_published() {
    let app = dev_app(LogLimits::default().max_batch).await;
    let empty = tempfile::tempdir().unwrap();
    publish_sample_if_empty(&app.state, Some(empty.path()))
        .await
        .unwrap();
    assert_eq!(public_log(&app).await, bundle().envelopes);
}

#[tokio::test]
async fn a_changed_content_directory_is_published_on_top_of_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let content_dir = dir.path().join("content");
    copy_dir(&repo_path("content"), &content_dir);
    let article = content_dir.join("articles/consent-basics.md");
    let text = std::fs::read_to_string(&article).unwrap();
    let edited = text
        .replacen(
            "updated_at = \"2026-11-28T00:00:00Z\"",
            "updated_at = \"2026-12-01T00:00:00Z\"",
            1,
        )
        .replacen("## ", "## Revised: ", 1);
    assert_ne!(edited, text);
    std::fs::write(&article, edited).unwrap();

    let app = dev_app(LogLimits::default().max_batch).await;
    publish_sample_if_empty(&app.state, Some(&content_dir))
        .await
        .unwrap();
    let log = public_log(&app).await;

    let bundle = bundle();
    let content = ContentSet::load_dir(&content_dir).unwrap();
    let key = ContentKey::load(&repo_path("content/dev-content-key.json")).unwrap();
    let plan = plan_publish(
        &key,
        &bundle.sequenced(),
        &content,
        content.latest_update_ms(),
    )
    .unwrap();
    assert_eq!(
        plan.envelopes.len(),
        2,
        "the article's change and the manifest's"
    );
    assert_eq!(log[..bundle.envelopes.len()], bundle.envelopes[..]);
    assert_eq!(log[bundle.envelopes.len()..], plan.envelopes[..]);
    // ... which is exactly what `haven content bundle` appends to the bundle.
    assert_eq!(
        bundle
            .extend(&key, &content, content.latest_update_ms())
            .unwrap()
            .envelopes,
        log
    );

    // A device that started from the bundle takes the server's log on top of it.
    let pinned = [dev_public_key().unwrap()];
    let device = PublicContent::from_envelopes(bundle.envelopes.iter().chain(&log), &pinned);
    assert!(device.rejected.is_empty(), "{:?}", device.rejected);
    assert_eq!(device.manifest.unwrap().version, 2);
    assert!(
        device
            .articles
            .iter()
            .any(|article| article.body.contains("## Revised: "))
    );
}

#[tokio::test]
async fn nothing_is_published_unless_the_dev_key_is_configured() {
    // `common::options()` configures a test content key, not the development key.
    let app = TestApp::new().await;
    publish_sample_if_empty(&app.state, Some(&repo_path("content")))
        .await
        .unwrap();
    assert!(public_log(&app).await.is_empty());
}
