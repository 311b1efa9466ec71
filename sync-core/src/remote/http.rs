//! [`HttpRemote`]: the v1 API over HTTP(S) with reqwest, and the live feed over a WebSocket with
//! tokio-tungstenite. TLS is rustls with bundled webpki roots, so it behaves the same on Android,
//! iOS and desktops whatever their platform TLS stack.
//!
//! Decisions (DESIGN.md §3):
//! - **Secrets.** The bearer token travels only in the `Authorization` header (marked sensitive,
//!   so it is redacted from `Debug` output), never in a URL. Error reasons built here never hold
//!   a URL (a link mailbox id is a capability), a token or a response body. `Debug` of
//!   [`HttpRemote`] prints only the base URL, which may not carry credentials.
//! - **Redirects are not followed** (`redirect::Policy::none()`): following one could send the
//!   `Authorization` header to another host. A 3xx answer is reported as a retryable
//!   `RemoteError::Server` (a captive portal or a misconfigured URL; see [`synthesized_error`]).
//! - **No cookies, no proxies.** The API is stateless bearer auth; proxies from the environment
//!   are ignored so that HTTP and the WebSocket (which tungstenite never proxies) take the same
//!   path.
//! - **Timeouts.** `connect_timeout` bounds the TCP + TLS connect; `request_timeout` is the total
//!   deadline of one request, body included (and of a WebSocket upgrade). The engine sizes pull
//!   pages so a page fits in it on a slow link.
//! - **Caps.** A 2xx body above `max_response_bytes` (default 32 MiB) is a `Decode` error, read no
//!   further; an error body above 64 KiB is not parsed (a synthesized error stands in). Live
//!   messages and frames are capped at 16 KiB and each socket keeps a 4 KiB read buffer and no
//!   write buffer, because a phone holds a socket per space and the benchmark opens thousands
//!   from one process.
//! - **Error mapping.** 2xx → the DTO (or `()`); non-2xx with the contract's error body →
//!   `RemoteError::Server { status, body }` as sent; non-2xx without it (a proxy or gateway page)
//!   → `RemoteError::Server` with a body synthesized from the status ([`synthesized_error`]);
//!   connect/IO/TLS failures → `Network`; any deadline → `Timeout`; a 2xx body that does not
//!   decode → `Decode`; a bad base URL or a header value that cannot be sent → `Config`.
//!
//! An [`HttpRemote`] is cheap to clone and every clone shares one connection pool. Tokens are
//! per call, so one remote serves any number of accounts and devices of the same server.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt as _, StreamExt as _};
use haven_protocol::api::{
    AuthProof, CLIENT_VERSION_HEADER, CreateAccountRequest, CreateAccountResponse,
    CreateSessionRequest, DevicesResponse, EnrolRequest, EnrolmentCreated, ErasureNotice,
    KeyBundle, LIVE_CLOSE_AUTH, LinkCreated, LinkPayload, LiveHead, PasswordChangeRequest,
    PreloginRequest, PreloginResponse, PullResponse, PushResponse, RecoveryRequest,
    RecoveryResetRequest, RecoveryResponse, RevokeDeviceRequest, SessionResponse,
};
use haven_protocol::{DeviceId, Envelope, ErrorBody, ErrorCode, HexId, SpaceId};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{LiveEnded, LiveHeads, PullCursor, RemoteError, ServerApi};

/// Default cap on a successful response body. A pull page is the largest answer; the engine keeps
/// pages well below this.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Error bodies are a few hundred bytes; anything far larger is not the contract's.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The server sends `{"head": n}`, pings and close frames; nothing near this.
const MAX_LIVE_MESSAGE_BYTES: usize = 16 * 1024;
/// Per-socket read buffer (tungstenite's default is 128 KiB, eagerly allocated).
const LIVE_READ_BUFFER_BYTES: usize = 4 * 1024;
/// The client only writes pongs and a close frame; a blocked socket must not grow without bound.
const LIVE_MAX_WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// How long a live feed waits for its close reply to go out once the server closed.
const LIVE_CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// Settings of an [`HttpRemote`]. Build with struct update syntax over `Default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Total deadline of one request, from sending to the last byte of the answer; also bounds a
    /// WebSocket upgrade. Default 30 s.
    pub request_timeout: Duration,
    /// Deadline of the TCP and TLS connect. Default 10 s.
    pub connect_timeout: Duration,
    /// Sent as the `haven-client-version` header (`major.minor.patch`); a server whose minimum
    /// is higher answers 426 `client_too_old`. Default: this crate's version, since the core
    /// library is what speaks the protocol. `None` sends no header.
    pub client_version: Option<String>,
    /// The `User-Agent` header. Default `haven-core/<version>`.
    pub user_agent: String,
    /// Cap on a successful response body. Default [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: usize,
    /// A live feed that hears nothing (no head, no ping) for this long is considered dead and
    /// ends with `LiveEnded::Network`. The server pings every 30 s; default 75 s, so one lost
    /// ping is tolerated. This catches a peer that vanished without a FIN (a phone that changed
    /// networks), which TCP alone may not notice for many minutes. It must exceed the server's
    /// ping interval (`--ping-secs`), or healthy feeds end and reconnect.
    pub live_idle_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            client_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            user_agent: concat!("haven-core/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            live_idle_timeout: Duration::from_secs(75),
        }
    }
}

/// The v1 API over HTTP(S) and WebSocket. See the module documentation for the decisions.
#[derive(Clone)]
pub struct HttpRemote {
    client: reqwest::Client,
    /// The API root, always ending in `/`.
    base: Url,
    /// The same root with a `ws` / `wss` scheme.
    ws_base: Url,
    /// Headers every request and upgrade carries (user agent, client version).
    headers: HeaderMap,
    request_timeout: Duration,
    max_response_bytes: usize,
    live_idle_timeout: Duration,
}

impl fmt::Debug for HttpRemote {
    // Only the base URL: it is validated to hold no credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRemote")
            .field("base_url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl HttpRemote {
    /// A remote for the server at `base_url` (`https://host[:port][/prefix]`).
    ///
    /// `http://` is accepted for tests and loopback development servers; apps must use
    /// `https://`, since tokens and sealed key bundles travel in these requests.
    ///
    /// # Errors
    /// `RemoteError::Config` when the URL is not an absolute http(s) URL with a host, carries
    /// credentials, a query or a fragment, or when an option cannot be sent as a header.
    pub fn new(base_url: &str, options: HttpOptions) -> Result<Self, RemoteError> {
        let base = parse_base_url(base_url)?;
        let mut ws_base = base.clone();
        let ws_scheme = if base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        ws_base
            .set_scheme(ws_scheme)
            .map_err(|()| config_error("the base URL cannot be turned into a WebSocket URL"))?;

        let mut headers = HeaderMap::new();
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_str(&options.user_agent)
                .map_err(|_| config_error("the user agent is not a valid header value"))?,
        );
        if let Some(version) = &options.client_version {
            headers.insert(
                CLIENT_VERSION_HEADER,
                HeaderValue::from_str(version)
                    .map_err(|_| config_error("the client version is not a valid header value"))?,
            );
        }

        let mut request_headers = headers.clone();
        request_headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .default_headers(request_headers)
            .build()
            .map_err(|error| config_error(format!("the HTTP client: {}", describe(&error))))?;

        Ok(Self {
            client,
            base,
            ws_base,
            headers,
            request_timeout: options.request_timeout,
            max_response_bytes: options.max_response_bytes,
            live_idle_timeout: options.live_idle_timeout,
        })
    }

    /// The API root this remote talks to (with a trailing `/`).
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `base` + a relative path made only of fixed words and canonical ids (hex or `public`),
    /// so nothing needs escaping.
    fn url(&self, path: &str) -> Result<Url, RemoteError> {
        self.base
            .join(path)
            .map_err(|_| config_error("an API path did not join the base URL"))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        access: Option<&str>,
    ) -> Result<RequestBuilder, RemoteError> {
        let mut builder = self.client.request(method, self.url(path)?);
        if let Some(token) = access {
            builder = builder.header(header::AUTHORIZATION, bearer(token)?);
        }
        Ok(builder)
    }

    /// Sends a request and reads its answer: the body of a 2xx, or the error it maps to.
    async fn execute(&self, builder: RequestBuilder) -> Result<Vec<u8>, RemoteError> {
        let response = builder.send().await.map_err(map_reqwest)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        if status.is_success() {
            match read_capped(response, self.max_response_bytes).await? {
                Some(body) => Ok(body),
                None => Err(RemoteError::Decode {
                    reason: format!(
                        "the answer is larger than {} bytes",
                        self.max_response_bytes
                    ),
                }),
            }
        } else {
            // The status is what matters; a body that fails to arrive leaves a synthesized one.
            let body = read_capped(response, MAX_ERROR_BODY_BYTES)
                .await
                .ok()
                .flatten();
            Err(server_error(status.as_u16(), body.as_deref(), retry_after))
        }
    }

    async fn json<T: DeserializeOwned>(&self, builder: RequestBuilder) -> Result<T, RemoteError> {
        decode(&self.execute(builder).await?)
    }

    /// For 204 endpoints: any 2xx is success and its body, if any, is ignored.
    async fn empty(&self, builder: RequestBuilder) -> Result<(), RemoteError> {
        self.execute(builder).await.map(|_| ())
    }
}

#[async_trait]
impl ServerApi for HttpRemote {
    async fn prelogin(&self, username: &str) -> Result<PreloginResponse, RemoteError> {
        let body = PreloginRequest {
            username: username.to_owned(),
        };
        self.json(self.request(Method::POST, "v1/prelogin", None)?.json(&body))
            .await
    }

    async fn create_account(
        &self,
        request: &CreateAccountRequest,
    ) -> Result<CreateAccountResponse, RemoteError> {
        self.json(
            self.request(Method::POST, "v1/accounts", None)?
                .json(request),
        )
        .await
    }

    async fn create_session(
        &self,
        request: &CreateSessionRequest,
    ) -> Result<SessionResponse, RemoteError> {
        self.json(
            self.request(Method::POST, "v1/sessions", None)?
                .json(request),
        )
        .await
    }

    async fn refresh_session(&self, refresh_token: &str) -> Result<SessionResponse, RemoteError> {
        // Borrowed, so the token is not copied into another String.
        #[derive(Serialize)]
        struct Refresh<'a> {
            refresh_token: &'a str,
        }
        let body = Refresh { refresh_token };
        self.json(
            self.request(Method::POST, "v1/sessions/refresh", None)?
                .json(&body),
        )
        .await
    }

    async fn delete_session(&self, access: &str) -> Result<(), RemoteError> {
        self.empty(self.request(Method::DELETE, "v1/sessions/current", Some(access))?)
            .await
    }

    async fn recover(&self, request: &RecoveryRequest) -> Result<RecoveryResponse, RemoteError> {
        self.json(
            self.request(Method::POST, "v1/recovery", None)?
                .json(request),
        )
        .await
    }

    async fn reset_after_recovery(
        &self,
        request: &RecoveryResetRequest,
    ) -> Result<(), RemoteError> {
        self.empty(
            self.request(Method::POST, "v1/recovery/reset", None)?
                .json(request),
        )
        .await
    }

    async fn devices(&self, access: &str) -> Result<DevicesResponse, RemoteError> {
        self.json(self.request(Method::GET, "v1/devices", Some(access))?)
            .await
    }

    async fn revoke_device(
        &self,
        access: &str,
        device: &DeviceId,
        request: &RevokeDeviceRequest,
    ) -> Result<(), RemoteError> {
        let path = format!("v1/devices/{}/revoke", device.to_hex());
        self.empty(
            self.request(Method::POST, &path, Some(access))?
                .json(request),
        )
        .await
    }

    async fn create_link(&self) -> Result<LinkCreated, RemoteError> {
        self.json(self.request(Method::POST, "v1/link", None)?)
            .await
    }

    async fn put_link(
        &self,
        access: &str,
        id: &HexId,
        payload: &LinkPayload,
    ) -> Result<(), RemoteError> {
        let path = format!("v1/link/{id}");
        self.empty(
            self.request(Method::PUT, &path, Some(access))?
                .json(payload),
        )
        .await
    }

    async fn take_link(&self, id: &HexId) -> Result<Option<LinkPayload>, RemoteError> {
        let path = format!("v1/link/{id}");
        match self.json(self.request(Method::GET, &path, None)?).await {
            Ok(payload) => Ok(Some(payload)),
            // Nothing there yet, already taken or expired: the contract answers 404 to all.
            Err(RemoteError::Server { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn get_keys(&self, access: &str) -> Result<KeyBundle, RemoteError> {
        self.json(self.request(Method::GET, "v1/keys", Some(access))?)
            .await
    }

    async fn put_keys(&self, access: &str, bundle: &KeyBundle) -> Result<(), RemoteError> {
        self.empty(
            self.request(Method::PUT, "v1/keys", Some(access))?
                .json(bundle),
        )
        .await
    }

    async fn delete_account(&self, access: &str, proof: &AuthProof) -> Result<(), RemoteError> {
        self.empty(
            self.request(Method::DELETE, "v1/account", Some(access))?
                .json(proof),
        )
        .await
    }

    async fn erasure_notice(&self, user: &HexId) -> Result<Option<ErasureNotice>, RemoteError> {
        let path = format!("v1/accounts/{user}/erasure");
        match self.json(self.request(Method::GET, &path, None)?).await {
            Ok(notice) => Ok(Some(notice)),
            Err(RemoteError::Server { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn change_password(
        &self,
        access: &str,
        request: &PasswordChangeRequest,
    ) -> Result<SessionResponse, RemoteError> {
        self.json(
            self.request(Method::POST, "v1/account/password", Some(access))?
                .json(request),
        )
        .await
    }

    async fn create_enrolment(&self, access: &str) -> Result<EnrolmentCreated, RemoteError> {
        self.json(
            self.request(Method::POST, "v1/devices/enrolment", Some(access))?
                .json(&serde_json::json!({})),
        )
        .await
    }

    async fn enrol_session(&self, request: &EnrolRequest) -> Result<SessionResponse, RemoteError> {
        self.json(
            self.request(Method::POST, "v1/sessions/enrol", None)?
                .json(request),
        )
        .await
    }

    async fn push(
        &self,
        access: Option<&str>,
        space: &SpaceId,
        changes: &[Envelope],
    ) -> Result<PushResponse, RemoteError> {
        // `PushRequest` owns its envelopes; this borrows them to serialise the same JSON.
        #[derive(Serialize)]
        struct Push<'a> {
            changes: &'a [Envelope],
        }
        let path = format!("v1/spaces/{space}/changes");
        self.json(
            self.request(Method::POST, &path, access)?
                .json(&Push { changes }),
        )
        .await
    }

    async fn pull(
        &self,
        access: Option<&str>,
        space: &SpaceId,
        cursor: PullCursor,
    ) -> Result<PullResponse, RemoteError> {
        let mut url = self.url(&format!("v1/spaces/{space}/changes"))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("after", &cursor.after.to_string());
            // 64 hex characters: base64's `+`, `/` and `=` would need percent-encoding.
            if let Some(at) = &cursor.at {
                query.append_pair("at", &at.to_hex());
            }
            query.append_pair("limit", &cursor.limit.to_string());
        }
        let mut builder = self.client.get(url);
        if let Some(token) = access {
            builder = builder.header(header::AUTHORIZATION, bearer(token)?);
        }
        self.json(builder).await
    }

    async fn live(
        &self,
        access: Option<&str>,
        space: &SpaceId,
    ) -> Result<Box<dyn LiveHeads>, RemoteError> {
        let url = self
            .ws_base
            .join(&format!("v1/spaces/{space}/live"))
            .map_err(|_| config_error("the live path did not join the base URL"))?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|_| config_error("the live URL is not a valid WebSocket URL"))?;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(token) = access {
            headers.insert(header::AUTHORIZATION, bearer(token)?);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(LIVE_READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_write_buffer_size(LIVE_MAX_WRITE_BUFFER_BYTES)
            .max_message_size(Some(MAX_LIVE_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_LIVE_MESSAGE_BYTES));
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        match tokio::time::timeout(self.request_timeout, connecting).await {
            Err(_elapsed) => Err(RemoteError::Timeout),
            Ok(Err(error)) => Err(map_upgrade_error(error)),
            Ok(Ok((socket, _response))) => Ok(Box::new(HttpLive {
                socket: Some(socket),
                idle_timeout: self.live_idle_timeout,
                ended: None,
            })),
        }
    }
}

/// A live feed over a WebSocket.
struct HttpLive {
    /// `None` once the feed ended: the connection is dropped right away so an ended feed that is
    /// kept around holds no socket.
    socket: Option<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    idle_timeout: Duration,
    ended: Option<LiveEnded>,
}

impl fmt::Debug for HttpLive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpLive")
            .field("open", &self.socket.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}

impl HttpLive {
    fn end(&mut self, why: LiveEnded) -> LiveEnded {
        self.socket = None;
        self.ended = Some(why.clone());
        why
    }
}

#[async_trait]
impl LiveHeads for HttpLive {
    async fn next_head(&mut self) -> Result<u64, LiveEnded> {
        loop {
            let Some(socket) = self.socket.as_mut() else {
                return Err(self.ended.clone().unwrap_or(LiveEnded::Closed));
            };
            // Reading is also what answers the server's pings: tungstenite queues the pong and
            // sends it on the next read, which this loop makes at once.
            let next = match tokio::time::timeout(self.idle_timeout, socket.next()).await {
                Ok(next) => next,
                Err(_elapsed) => {
                    return Err(self.end(LiveEnded::Network {
                        reason: format!(
                            "nothing from the server (not even a ping) in {} s",
                            self.idle_timeout.as_secs()
                        ),
                    }));
                }
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    // Unknown messages are ignored: later servers may send more kinds.
                    if let Ok(LiveHead { head }) = serde_json::from_str::<LiveHead>(&text) {
                        return Ok(head);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    // Let tungstenite's close reply go out (bounded), then drop the socket.
                    let _ = tokio::time::timeout(LIVE_CLOSE_FLUSH, socket.flush()).await;
                    let unauthorized =
                        frame.is_some_and(|frame| u16::from(frame.code) == LIVE_CLOSE_AUTH);
                    let why = if unauthorized {
                        LiveEnded::Unauthorized
                    } else {
                        LiveEnded::Closed
                    };
                    return Err(self.end(why));
                }
                // Pings (answered by the library), pongs, binary and raw frames.
                Some(Ok(_)) => {}
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Err(self.end(LiveEnded::Closed));
                }
                Some(Err(error)) => {
                    return Err(self.end(LiveEnded::Network {
                        reason: describe_ws(&error),
                    }));
                }
            }
        }
    }
}

/// Checks and normalises the base URL.
fn parse_base_url(text: &str) -> Result<Url, RemoteError> {
    let mut url = Url::parse(text.trim())
        .map_err(|error| config_error(format!("the base URL does not parse: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(config_error(
            "the base URL must be https:// (or http:// for tests)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(config_error("the base URL has no host"));
    }
    // Credentials in the URL would be sent as Basic auth and shown by Debug.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config_error("the base URL must not hold credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(config_error(
            "the base URL must not have a query or a fragment",
        ));
    }
    // `join` replaces the last segment unless the path ends in `/`.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn config_error(reason: impl Into<String>) -> RemoteError {
    RemoteError::Config {
        reason: reason.into(),
    }
}

/// The `Authorization` value, marked sensitive so `Debug` of the request redacts it.
fn bearer(token: &str) -> Result<HeaderValue, RemoteError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| config_error("the token cannot be sent as a header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads a body up to `cap` bytes: `None` when it is larger (what was read is discarded and the
/// connection dropped rather than drained).
async fn read_capped(mut response: Response, cap: usize) -> Result<Option<Vec<u8>>, RemoteError> {
    let declared = response
        .content_length()
        .and_then(|len| usize::try_from(len).ok());
    if declared.is_some_and(|len| len > cap) {
        return Ok(None);
    }
    // Trust a declared length only as a capacity hint within the cap.
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(cap));
    while let Some(chunk) = response.chunk().await.map_err(map_reqwest)? {
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, RemoteError> {
    serde_json::from_slice(body).map_err(|error| RemoteError::Decode {
        // Category and position only: serde's messages can quote values (tokens, names).
        reason: format!(
            "the answer is not the expected JSON ({:?} error at line {} column {})",
            error.classify(),
            error.line(),
            error.column()
        ),
    })
}

/// A non-2xx answer: the contract's body when it is one, else a body synthesized from the status.
fn server_error(status: u16, body: Option<&[u8]>, retry_after: Option<u64>) -> RemoteError {
    let parsed = body.and_then(|body| serde_json::from_slice::<ErrorBody>(body).ok());
    let body = match parsed {
        Some(mut body) => {
            if body.error.retry_after.is_none() {
                body.error.retry_after = retry_after;
            }
            body
        }
        None => synthesized_error(status, retry_after),
    };
    RemoteError::Server { status, body }
}

/// The error body that stands in for an answer without the contract's (a proxy, gateway, load
/// balancer or captive portal page). The code is the contract's code for that status where one
/// fits, so the engine reacts as it would to the server:
///
/// | status | code | retryable |
/// |---|---|---|
/// | 3xx (redirects are not followed) | `unavailable` | yes: a captive portal goes away; a wrong URL needs a fix either way |
/// | 400 | `invalid` | no |
/// | 401 | `unauthorized` | no (refresh, then retry) |
/// | 404 | `not_found` | no |
/// | 405 | `method_not_allowed` | no |
/// | 408 | `unavailable` | yes |
/// | 413 | `too_large` | no |
/// | 426 | `client_too_old` | no |
/// | 429 | `rate_limited` (with `Retry-After` seconds) | yes |
/// | 500 | `internal` | yes |
/// | 502, 503, 504 and other 5xx | `unavailable` | yes |
/// | other 4xx (403, 409, 410, …) and anything else | `invalid` | no |
///
/// 409 and 410 carry meaning in the contract only with their codes (`id_conflict`,
/// `doc_deleted`, …), which a bodiless answer cannot name, so they are `invalid` here.
pub fn synthesized_error(status: u16, retry_after: Option<u64>) -> ErrorBody {
    let (code, retryable) = match status {
        300..=399 => (ErrorCode::Unavailable, true),
        400 => (ErrorCode::Invalid, false),
        401 => (ErrorCode::Unauthorized, false),
        404 => (ErrorCode::NotFound, false),
        405 => (ErrorCode::MethodNotAllowed, false),
        408 => (ErrorCode::Unavailable, true),
        413 => (ErrorCode::TooLarge, false),
        426 => (ErrorCode::ClientTooOld, false),
        429 => (ErrorCode::RateLimited, true),
        500 => (ErrorCode::Internal, true),
        501..=599 => (ErrorCode::Unavailable, true),
        _ => (ErrorCode::Invalid, false),
    };
    let message = if (300..400).contains(&status) {
        format!(
            "the server redirected (HTTP {status}); redirects are not followed: check the server URL or the network"
        )
    } else {
        format!(
            "the server answered HTTP {status} without the API's error body (a proxy or gateway?)"
        )
    };
    let mut body = ErrorBody::new(code, message);
    body.error.retryable = retryable;
    if status == 429 {
        body.error.retry_after = retry_after;
    }
    body
}

/// `Retry-After` in delta-seconds (the HTTP-date form is not used by the server, and a proxy's
/// date would need a trusted clock: it is ignored).
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn map_reqwest(error: reqwest::Error) -> RemoteError {
    if error.is_timeout() {
        RemoteError::Timeout
    } else if error.is_builder() {
        config_error(describe(&error))
    } else {
        RemoteError::Network {
            reason: describe(&error),
        }
    }
}

/// What failed and why, from the error's causes. reqwest's own `Display` appends the URL, which
/// may hold a capability (a link mailbox id), so only the kind is taken from the error itself.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "could not connect"
    } else if error.is_body() {
        "the body failed"
    } else if error.is_decode() {
        "the body did not decode"
    } else if error.is_request() {
        "the request failed"
    } else if error.is_builder() {
        "the request could not be built"
    } else {
        "HTTP error"
    };
    let mut text = kind.to_owned();
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

/// A failed WebSocket upgrade.
fn map_upgrade_error(error: WsError) -> RemoteError {
    match error {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.trim().parse().ok());
            server_error(status, response.body().as_deref(), retry_after)
        }
        WsError::Io(error) if error.kind() == std::io::ErrorKind::TimedOut => RemoteError::Timeout,
        WsError::Url(_) | WsError::HttpFormat(_) => config_error(describe_ws(&error)),
        // A 101 that breaks the handshake rules, or an answer that is not HTTP at all.
        WsError::Protocol(_) | WsError::Capacity(_) | WsError::Utf8 => RemoteError::Decode {
            reason: describe_ws(&error),
        },
        other => RemoteError::Network {
            reason: describe_ws(&other),
        },
    }
}

/// tungstenite's messages name the failure, never the URL or headers.
fn describe_ws(error: &WsError) -> String {
    match error {
        WsError::Http(response) => format!("HTTP {}", response.status().as_u16()),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let remote = HttpRemote::new("https://sync.example.org", HttpOptions::default()).unwrap();
        assert_eq!(remote.base_url(), "https://sync.example.org/");
        assert_eq!(remote.ws_base.as_str(), "wss://sync.example.org/");
        let prefixed =
            HttpRemote::new("http://127.0.0.1:8080/haven", HttpOptions::default()).unwrap();
        assert_eq!(
            prefixed.url("v1/prelogin").unwrap().as_str(),
            "http://127.0.0.1:8080/haven/v1/prelogin"
        );
        assert_eq!(prefixed.ws_base.as_str(), "ws://127.0.0.1:8080/haven/");
        for bad in [
            "",
            "sync.example.org",
            "ftp://sync.example.org",
            "ws://sync.example.org",
            "https://user:pass@sync.example.org",
            "https://sync.example.org/?a=b",
            "https://sync.example.org/#x",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(
                    HttpRemote::new(bad, HttpOptions::default()),
                    Err(RemoteError::Config { .. })
                ),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn bad_header_options_are_config_errors() {
        let options = HttpOptions {
            client_version: Some("1.0.0\n".into()),
            ..HttpOptions::default()
        };
        assert!(matches!(
            HttpRemote::new("http://127.0.0.1:1", options),
            Err(RemoteError::Config { .. })
        ));
        assert!(matches!(bearer("a\r\nb"), Err(RemoteError::Config { .. })));
        assert!(bearer("abc").unwrap().is_sensitive());
    }

    #[test]
    fn debug_shows_only_the_base_url() {
        let remote = HttpRemote::new("https://sync.example.org/", HttpOptions::default()).unwrap();
        let text = format!("{remote:?}");
        assert!(text.contains("https://sync.example.org/"), "{text}");
        assert!(!text.contains("haven-core/"), "{text}");
    }

    #[test]
    fn contract_bodies_pass_through() {
        let mut sent = ErrorBody::new(ErrorCode::CursorMismatch, "cursor does not match");
        sent.error.head = Some(7);
        let bytes = serde_json::to_vec(&sent).unwrap();
        match server_error(409, Some(&bytes), None) {
            RemoteError::Server { status, body } => {
                assert_eq!(status, 409);
                assert_eq!(body, sent);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bodiless_errors_are_synthesized_by_status() {
        let cases = [
            (302, ErrorCode::Unavailable, true),
            (400, ErrorCode::Invalid, false),
            (401, ErrorCode::Unauthorized, false),
            (403, ErrorCode::Invalid, false),
            (404, ErrorCode::NotFound, false),
            (408, ErrorCode::Unavailable, true),
            (413, ErrorCode::TooLarge, false),
            (426, ErrorCode::ClientTooOld, false),
            (429, ErrorCode::RateLimited, true),
            (500, ErrorCode::Internal, true),
            (502, ErrorCode::Unavailable, true),
            (503, ErrorCode::Unavailable, true),
            (504, ErrorCode::Unavailable, true),
            (520, ErrorCode::Unavailable, true),
        ];
        for (status, code, retryable) in cases {
            let error = server_error(status, Some(b"<html>Bad Gateway</html>"), Some(5));
            assert_eq!(error.code(), Some(code), "{status}");
            assert_eq!(error.retryable(), retryable, "{status}");
            let expected_retry_after = (status == 429).then_some(5);
            assert_eq!(error.retry_after(), expected_retry_after, "{status}");
        }
        // Valid JSON that is not the contract's shape is synthesized too.
        let error = server_error(503, Some(br#"{"message":"down"}"#), None);
        assert_eq!(error.code(), Some(ErrorCode::Unavailable));
        assert!(error.retryable());
    }

    #[test]
    fn decode_errors_do_not_quote_the_body() {
        let error = decode::<PreloginResponse>(br#"{"kdf":"secret-token-value"}"#).unwrap_err();
        let text = error.to_string();
        assert!(!text.contains("secret-token-value"), "{text}");
        assert!(matches!(error, RemoteError::Decode { .. }));
    }

    #[test]
    fn retry_after_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(" 12 "));
        assert_eq!(retry_after(&headers), Some(12));
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
