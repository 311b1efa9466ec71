//! A `ServerApi` that sits between a client and the real server and misbehaves like a bad network,
//! deterministically from a seed: requests lost before the server, answers lost after it (the
//! server acted, the client never hears), requests sent twice, pages delivered in shuffled order,
//! small delays, and a switch that cuts the device off entirely.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use haven_core::remote::{LiveHeads, PullCursor, RemoteError, ServerApi};
use haven_protocol::api::{
    AuthProof, CreateAccountRequest, CreateAccountResponse, CreateSessionRequest, DevicesResponse,
    EnrolRequest, EnrolmentCreated, KeyBundle, LinkCreated, LinkPayload, PasswordChangeRequest,
    PreloginResponse, PullResponse, PushResponse, RecoveryRequest, RecoveryResetRequest,
    RecoveryResponse, RevokeDeviceRequest, SessionResponse,
};
use haven_protocol::{DeviceId, Envelope, HexId, SequencedEnvelope, SpaceId};

/// How often each fault strikes, in percent of calls.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub lose_request: u8,
    pub lose_answer: u8,
    pub duplicate: u8,
    pub shuffle_page: u8,
    pub delay: u8,
    /// A malicious server: a pulled page also carries an envelope delivered before (a replay).
    pub replay: u8,
}

impl Faults {
    pub const NONE: Self = Self {
        lose_request: 0,
        lose_answer: 0,
        duplicate: 0,
        shuffle_page: 0,
        delay: 0,
        replay: 0,
    };
    pub const ROUGH: Self = Self {
        lose_request: 10,
        lose_answer: 10,
        duplicate: 10,
        shuffle_page: 30,
        delay: 5,
        replay: 20,
    };
}

/// A small deterministic generator (splitmix64): the simulation's only source of choices.
#[derive(Debug)]
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn percent(&mut self, p: u8) -> bool {
        self.below(100) < u64::from(p)
    }
}

#[derive(Debug)]
pub struct ChaosRemote {
    inner: Arc<dyn ServerApi>,
    dice: Mutex<Dice>,
    faults: Mutex<Faults>,
    offline: AtomicBool,
    /// Private envelopes delivered so far, for replays.
    delivered: Mutex<Vec<SequencedEnvelope>>,
    replayed: std::sync::atomic::AtomicUsize,
    /// Every envelope this device sent, as sent (what the account uploaded).
    pushed: Mutex<Vec<Envelope>>,
    /// Answer every call with `account_erased`, and invent an erasure notice.
    claims_erasure: AtomicBool,
    /// Pushes and pulls in the order they were asked for, e.g. `push journal`, `pull public`.
    calls: Mutex<Vec<String>>,
    /// Answer pushes as if the network dropped them (nothing reaches the server).
    pushes_fail: AtomicBool,
}

impl ChaosRemote {
    /// A recorder in front of the real server at `url`: no faults, every push kept
    /// ([`ChaosRemote::pushed`]), lies on demand ([`ChaosRemote::claim_erasure`]).
    pub fn recording(url: &str) -> Result<Arc<Self>, RemoteError> {
        let inner: Arc<dyn ServerApi> = Arc::new(haven_core::remote::http::HttpRemote::new(
            url,
            haven_core::remote::http::HttpOptions::default(),
        )?);
        Ok(Arc::new(Self::new(inner, 1, Faults::NONE)))
    }

    pub fn new(inner: Arc<dyn ServerApi>, seed: u64, faults: Faults) -> Self {
        Self {
            inner,
            dice: Mutex::new(Dice::new(seed)),
            faults: Mutex::new(faults),
            offline: AtomicBool::new(false),
            delivered: Mutex::new(Vec::new()),
            replayed: std::sync::atomic::AtomicUsize::new(0),
            pushed: Mutex::new(Vec::new()),
            claims_erasure: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
            pushes_fail: AtomicBool::new(false),
        }
    }

    /// The pushes and pulls asked for since the last call of this, in order, as `push S` and
    /// `pull S` with S the space's name (`public`, or `private` for an account's log).
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .calls
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }

    /// From now on, pushes fail as if the network dropped them; pulls still go through.
    pub fn fail_pushes(&self, fail: bool) {
        self.pushes_fail.store(fail, Ordering::SeqCst);
    }

    fn log_call(&self, call: &str, space: &SpaceId) {
        let space = if space.is_public() {
            "public"
        } else {
            "private"
        };
        self.calls
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(format!("{call} {space}"));
    }

    pub fn set_faults(&self, faults: Faults) {
        *self
            .faults
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = faults;
    }

    /// Every envelope pushed through this remote so far.
    pub fn pushed(&self) -> Vec<Envelope> {
        self.pushed
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// How many replays were injected.
    pub fn replayed(&self) -> usize {
        self.replayed.load(Ordering::SeqCst)
    }

    /// From now on, answer like a server claiming the account was erased (a malicious server
    /// trying to make devices wipe themselves).
    pub fn claim_erasure(&self) {
        self.claims_erasure.store(true, Ordering::SeqCst);
    }

    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    fn roll(&self, pick: impl Fn(&Faults) -> u8) -> bool {
        let p = pick(
            &self
                .faults
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        self.dice
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .percent(p)
    }

    /// Runs a call through the faults: maybe never sent, maybe sent twice, maybe its answer lost.
    async fn through<T, F, Fut>(&self, call: F) -> Result<T, RemoteError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let lost = || {
            Err(RemoteError::Network {
                reason: "chaos: lost".into(),
            })
        };
        if self.claims_erasure.load(Ordering::SeqCst) {
            return Err(RemoteError::Server {
                status: 410,
                body: haven_protocol::ErrorBody::new(
                    haven_protocol::ErrorCode::AccountErased,
                    "chaos: the account was erased (a lie)",
                ),
            });
        }
        if self.offline.load(Ordering::SeqCst) || self.roll(|f| f.lose_request) {
            return lost();
        }
        if self.roll(|f| f.delay) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.roll(|f| f.duplicate) {
            let _ = call().await;
        }
        let answer = call().await;
        if self.roll(|f| f.lose_answer) {
            return lost();
        }
        answer
    }
}

#[async_trait]
impl ServerApi for ChaosRemote {
    async fn prelogin(&self, username: &str) -> Result<PreloginResponse, RemoteError> {
        self.through(|| self.inner.prelogin(username)).await
    }
    async fn create_account(
        &self,
        request: &CreateAccountRequest,
    ) -> Result<CreateAccountResponse, RemoteError> {
        self.through(|| self.inner.create_account(request)).await
    }
    async fn create_session(
        &self,
        request: &CreateSessionRequest,
    ) -> Result<SessionResponse, RemoteError> {
        self.through(|| self.inner.create_session(request)).await
    }
    async fn refresh_session(&self, refresh_token: &str) -> Result<SessionResponse, RemoteError> {
        self.through(|| self.inner.refresh_session(refresh_token))
            .await
    }
    async fn delete_session(&self, access: &str) -> Result<(), RemoteError> {
        self.through(|| self.inner.delete_session(access)).await
    }
    async fn recover(&self, request: &RecoveryRequest) -> Result<RecoveryResponse, RemoteError> {
        self.through(|| self.inner.recover(request)).await
    }
    async fn reset_after_recovery(
        &self,
        request: &RecoveryResetRequest,
    ) -> Result<(), RemoteError> {
        self.through(|| self.inner.reset_after_recovery(request))
            .await
    }
    async fn devices(&self, access: &str) -> Result<DevicesResponse, RemoteError> {
        self.through(|| self.inner.devices(access)).await
    }
    async fn revoke_device(
        &self,
        access: &str,
        device: &DeviceId,
        request: &RevokeDeviceRequest,
    ) -> Result<(), RemoteError> {
        self.through(|| self.inner.revoke_device(access, device, request))
            .await
    }
    async fn create_link(&self) -> Result<LinkCreated, RemoteError> {
        self.through(|| self.inner.create_link()).await
    }
    async fn put_link(
        &self,
        access: &str,
        id: &HexId,
        payload: &LinkPayload,
    ) -> Result<(), RemoteError> {
        self.through(|| self.inner.put_link(access, id, payload))
            .await
    }
    async fn take_link(&self, id: &HexId) -> Result<Option<LinkPayload>, RemoteError> {
        self.through(|| self.inner.take_link(id)).await
    }
    async fn get_keys(&self, access: &str) -> Result<KeyBundle, RemoteError> {
        self.through(|| self.inner.get_keys(access)).await
    }
    async fn put_keys(&self, access: &str, bundle: &KeyBundle) -> Result<(), RemoteError> {
        self.through(|| self.inner.put_keys(access, bundle)).await
    }
    async fn delete_account(&self, access: &str, proof: &AuthProof) -> Result<(), RemoteError> {
        self.through(|| self.inner.delete_account(access, proof))
            .await
    }
    async fn erasure_notice(
        &self,
        user: &haven_protocol::HexId,
    ) -> Result<Option<haven_protocol::api::ErasureNotice>, RemoteError> {
        if self.claims_erasure.load(Ordering::SeqCst) {
            // A lying server can invent a notice, but not the account's token.
            return Ok(Some(haven_protocol::api::ErasureNotice {
                wipe_token: Some(haven_protocol::Bytes([0x42; 32])),
            }));
        }
        self.through(|| self.inner.erasure_notice(user)).await
    }
    async fn change_password(
        &self,
        access: &str,
        request: &PasswordChangeRequest,
    ) -> Result<SessionResponse, RemoteError> {
        self.through(|| self.inner.change_password(access, request))
            .await
    }
    async fn create_enrolment(&self, access: &str) -> Result<EnrolmentCreated, RemoteError> {
        self.through(|| self.inner.create_enrolment(access)).await
    }
    async fn enrol_session(&self, request: &EnrolRequest) -> Result<SessionResponse, RemoteError> {
        self.through(|| self.inner.enrol_session(request)).await
    }
    async fn push(
        &self,
        access: Option<&str>,
        space: &SpaceId,
        changes: &[Envelope],
    ) -> Result<PushResponse, RemoteError> {
        self.log_call("push", space);
        if self.pushes_fail.load(Ordering::SeqCst) {
            return Err(RemoteError::Network {
                reason: "pushes fail (test switch)".into(),
            });
        }
        self.pushed
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .extend(changes.iter().cloned());
        self.through(|| self.inner.push(access, space, changes))
            .await
    }
    async fn pull(
        &self,
        access: Option<&str>,
        space: &SpaceId,
        cursor: PullCursor,
    ) -> Result<PullResponse, RemoteError> {
        self.log_call("pull", space);
        if access.is_none() && self.claims_erasure.load(Ordering::SeqCst) {
            // The lie is about the account: public content still flows.
            return self.inner.pull(access, space, cursor).await;
        }
        let mut page = self
            .through(|| self.inner.pull(access, space, cursor))
            .await?;
        if self.roll(|f| f.shuffle_page) {
            // Deliver the page out of order: the client must cope (Automerge queues dependencies).
            let mut dice = self
                .dice
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for i in (1..page.changes.len()).rev() {
                let j = usize::try_from(dice.below(i as u64 + 1)).unwrap_or(0);
                page.changes.swap(i, j);
            }
        }
        if !space.is_public() {
            let mut delivered = self
                .delivered
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if !delivered.is_empty() && self.roll(|f| f.replay) {
                // A server replaying an envelope it served before, inside this page: the client must notice (its counter was applied) and lose nothing.
                let pick = {
                    let mut dice = self
                        .dice
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner());
                    usize::try_from(dice.below(delivered.len() as u64)).unwrap_or(0)
                };
                if let (Some(old), Some(newest)) =
                    (delivered.get(pick).cloned(), page.changes.last())
                {
                    let replay = SequencedEnvelope {
                        seq: newest.seq,
                        envelope: old.envelope,
                    };
                    // Before the genuine envelope of that seq, so the cursor still ends on it.
                    let at = page.changes.len() - 1;
                    page.changes.insert(at, replay);
                    self.replayed.fetch_add(1, Ordering::SeqCst);
                }
            }
            delivered.extend(page.changes.iter().cloned());
        }
        Ok(page)
    }
    async fn live(
        &self,
        access: Option<&str>,
        space: &SpaceId,
    ) -> Result<Box<dyn LiveHeads>, RemoteError> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(RemoteError::Network {
                reason: "chaos: offline".into(),
            });
        }
        self.inner.live(access, space).await
    }
}
