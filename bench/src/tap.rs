//! A [`ServerApi`] over [`HttpRemote`] that the benchmark can look into: it remembers the last
//! access token the engine used (so S2 can open many live sockets on a few sessions, as the
//! issue asks), and it can record pull pages and serve them again with no network (so the
//! apply micro-benchmark measures applying, not HTTP).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use haven_core::remote::http::HttpRemote;
use haven_core::remote::{LiveHeads, PullCursor, RemoteError, ServerApi};
use haven_protocol::api::{
    AuthProof, CreateAccountRequest, CreateAccountResponse, CreateSessionRequest, DevicesResponse,
    EnrolRequest, EnrolmentCreated, KeyBundle, LinkCreated, LinkPayload, PasswordChangeRequest,
    PreloginResponse, PullResponse, PushResponse, RecoveryRequest, RecoveryResetRequest,
    RecoveryResponse, RevokeDeviceRequest, SessionResponse,
};
use haven_protocol::{DeviceId, Envelope, HexId, SpaceId};

type PageKey = (SpaceId, u64, Option<String>);

#[derive(Debug, Default)]
struct TapState {
    access: Option<String>,
    recording: Option<HashMap<PageKey, PullResponse>>,
    replay: Option<Arc<HashMap<PageKey, PullResponse>>>,
    replayed: usize,
    /// Wall time of each call to the server, by endpoint (while `timing` is on).
    timing: Option<HashMap<&'static str, Vec<std::time::Duration>>>,
}

#[derive(Debug, Clone)]
pub(crate) struct TapRemote {
    inner: HttpRemote,
    state: Arc<Mutex<TapState>>,
}

impl TapRemote {
    pub(crate) fn new(inner: HttpRemote) -> Self {
        Self {
            inner,
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, TapState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn saw(&self, access: Option<&str>) {
        if let Some(access) = access {
            let mut state = self.state();
            if state.access.as_deref() != Some(access) {
                state.access = Some(access.to_owned());
            }
        }
    }

    /// The last access token the engine sent.
    pub(crate) fn access(&self) -> Option<String> {
        self.state().access.clone()
    }

    pub(crate) fn inner(&self) -> &HttpRemote {
        &self.inner
    }

    pub(crate) fn start_recording(&self) {
        self.state().recording = Some(HashMap::new());
    }

    pub(crate) fn take_recording(&self) -> HashMap<PageKey, PullResponse> {
        self.state().recording.take().unwrap_or_default()
    }

    /// From now on, pulls found in `pages` are answered from memory.
    pub(crate) fn replay(&self, pages: Arc<HashMap<PageKey, PullResponse>>) {
        let mut state = self.state();
        state.replay = Some(pages);
        state.replayed = 0;
    }

    /// Starts timing every call to the server, by endpoint.
    pub(crate) fn start_timing(&self) {
        self.state().timing = Some(HashMap::new());
    }

    /// The calls timed since `start_timing`: per endpoint, count and latency percentiles.
    pub(crate) fn take_timing(&self) -> serde_json::Value {
        let timing = self.state().timing.take().unwrap_or_default();
        let mut out = serde_json::Map::new();
        for (name, samples) in timing {
            out.insert(
                name.to_owned(),
                serde_json::to_value(crate::procfs::latency(&samples)).unwrap_or_default(),
            );
        }
        serde_json::Value::Object(out)
    }

    fn timed(&self, name: &'static str, started: std::time::Instant) {
        if let Some(timing) = self.state().timing.as_mut() {
            timing.entry(name).or_default().push(started.elapsed());
        }
    }

    /// Pulls answered from memory so far.
    pub(crate) fn replayed(&self) -> usize {
        self.state().replayed
    }
}

fn page_key(space: &SpaceId, cursor: &PullCursor) -> PageKey {
    (*space, cursor.after, cursor.at.map(|id| id.to_hex()))
}

#[async_trait]
impl ServerApi for TapRemote {
    async fn prelogin(&self, username: &str) -> Result<PreloginResponse, RemoteError> {
        self.inner.prelogin(username).await
    }
    async fn create_account(
        &self,
        request: &CreateAccountRequest,
    ) -> Result<CreateAccountResponse, RemoteError> {
        self.inner.create_account(request).await
    }
    async fn create_session(
        &self,
        request: &CreateSessionRequest,
    ) -> Result<SessionResponse, RemoteError> {
        let session = self.inner.create_session(request).await?;
        self.saw(Some(&session.access_token));
        Ok(session)
    }
    async fn refresh_session(&self, refresh_token: &str) -> Result<SessionResponse, RemoteError> {
        let session = self.inner.refresh_session(refresh_token).await?;
        self.saw(Some(&session.access_token));
        Ok(session)
    }
    async fn delete_session(&self, access: &str) -> Result<(), RemoteError> {
        self.inner.delete_session(access).await
    }
    async fn recover(&self, request: &RecoveryRequest) -> Result<RecoveryResponse, RemoteError> {
        self.inner.recover(request).await
    }
    async fn reset_after_recovery(
        &self,
        request: &RecoveryResetRequest,
    ) -> Result<(), RemoteError> {
        self.inner.reset_after_recovery(request).await
    }
    async fn devices(&self, access: &str) -> Result<DevicesResponse, RemoteError> {
        self.saw(Some(access));
        self.inner.devices(access).await
    }
    async fn revoke_device(
        &self,
        access: &str,
        device: &DeviceId,
        request: &RevokeDeviceRequest,
    ) -> Result<(), RemoteError> {
        self.inner.revoke_device(access, device, request).await
    }
    async fn create_link(&self) -> Result<LinkCreated, RemoteError> {
        self.inner.create_link().await
    }
    async fn put_link(
        &self,
        access: &str,
        id: &HexId,
        payload: &LinkPayload,
    ) -> Result<(), RemoteError> {
        self.inner.put_link(access, id, payload).await
    }
    async fn take_link(&self, id: &HexId) -> Result<Option<LinkPayload>, RemoteError> {
        self.inner.take_link(id).await
    }
    async fn get_keys(&self, access: &str) -> Result<KeyBundle, RemoteError> {
        self.saw(Some(access));
        self.inner.get_keys(access).await
    }
    async fn put_keys(&self, access: &str, bundle: &KeyBundle) -> Result<(), RemoteError> {
        self.saw(Some(access));
        self.inner.put_keys(access, bundle).await
    }
    async fn delete_account(&self, access: &str, proof: &AuthProof) -> Result<(), RemoteError> {
        self.inner.delete_account(access, proof).await
    }
    async fn erasure_notice(
        &self,
        user: &haven_protocol::HexId,
    ) -> Result<Option<haven_protocol::api::ErasureNotice>, RemoteError> {
        self.inner.erasure_notice(user).await
    }
    async fn change_password(
        &self,
        access: &str,
        request: &PasswordChangeRequest,
    ) -> Result<SessionResponse, RemoteError> {
        self.inner.change_password(access, request).await
    }
    async fn create_enrolment(&self, access: &str) -> Result<EnrolmentCreated, RemoteError> {
        self.inner.create_enrolment(access).await
    }
    async fn enrol_session(&self, request: &EnrolRequest) -> Result<SessionResponse, RemoteError> {
        self.inner.enrol_session(request).await
    }
    async fn push(
        &self,
        access: Option<&str>,
        space: &SpaceId,
        changes: &[Envelope],
    ) -> Result<PushResponse, RemoteError> {
        self.saw(access);
        let started = std::time::Instant::now();
        let result = self.inner.push(access, space, changes).await;
        self.timed("push", started);
        result
    }
    async fn pull(
        &self,
        access: Option<&str>,
        space: &SpaceId,
        cursor: PullCursor,
    ) -> Result<PullResponse, RemoteError> {
        self.saw(access);
        let key = page_key(space, &cursor);
        {
            let mut state = self.state();
            let hit = state
                .replay
                .as_ref()
                .and_then(|pages| pages.get(&key).cloned());
            if let Some(page) = hit {
                state.replayed += 1;
                return Ok(page);
            }
        }
        let started = std::time::Instant::now();
        let page = self.inner.pull(access, space, cursor).await;
        self.timed(
            if space.is_public() {
                "pullPublic"
            } else {
                "pullPrivate"
            },
            started,
        );
        let page = page?;
        if let Some(recording) = self.state().recording.as_mut() {
            recording.insert(key, page.clone());
        }
        Ok(page)
    }
    async fn live(
        &self,
        access: Option<&str>,
        space: &SpaceId,
    ) -> Result<Box<dyn LiveHeads>, RemoteError> {
        self.saw(access);
        self.inner.live(access, space).await
    }
}
