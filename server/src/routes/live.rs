//! `GET /v1/spaces/{space}/live`: a WebSocket that sends `{"head": seq}` whenever the space's
//! durable head moves, pings every 30 s, and closes with 4001 when the token expires or the
//! session is revoked. Clients send nothing but pongs; anything else is ignored, and a client that
//! stops answering pings is dropped.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use haven_protocol::api::{LIVE_CLOSE_AUTH, LiveHead};
use haven_protocol::{ErrorBody, SpaceId};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};

use super::MaybeAuthed;
use crate::app::AppState;
use crate::auth::AuthContext;
use crate::error::{ApiError, ApiResult};
use crate::live_hub::Revocation;

/// Clients only send control frames; cap what they can make us buffer.
const MAX_CLIENT_MESSAGE: usize = 1024;
/// Pings without a pong before the socket is dropped.
const MAX_MISSED_PONGS: u32 = 2;
/// The close code for a server going down ("going away").
const CLOSE_GOING_AWAY: u16 = 1001;

#[utoipa::path(get, path = "/v1/spaces/{space}/live", tag = "spaces",
    params(("space" = String, Path, description = "`public` or the account's space id")),
    responses((status = 101, description = "WebSocket: {\"head\": seq} messages"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security((), ("bearer" = [])))]
/// Upgrades to the live-head WebSocket. The token goes in the upgrade's Authorization header,
/// never in the URL.
pub(super) async fn live(
    State(state): State<AppState>,
    MaybeAuthed(ctx): MaybeAuthed,
    Path(space): Path<String>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let space: SpaceId = space.parse().map_err(|_| ApiError::not_found())?;
    match (space, &ctx) {
        (SpaceId::Public, _) => {}
        (SpaceId::Private(_), None) => return Err(ApiError::unauthorized()),
        (SpaceId::Private(_), Some(ctx)) if space == ctx.space_id => {}
        (SpaceId::Private(_), Some(_)) => return Err(ApiError::not_found()),
    }
    let upgrade =
        upgrade.map_err(|_| ApiError::invalid("this endpoint needs a WebSocket upgrade"))?;
    // Subscribe before reading the head: an append that lands in between is then either in the
    // head read below or announced on the channel, never lost.
    let heads = state.live.subscribe(space, 0);
    let head = state.spaces.visible_head(&space).await?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve(socket, state, heads, head, ctx)))
}

async fn serve(
    mut socket: WebSocket,
    state: AppState,
    mut heads: tokio::sync::watch::Receiver<u64>,
    head: u64,
    ctx: Option<AuthContext>,
) {
    let _connection = ConnectionGauge::new();
    let mut revocations = state.live.revocations();
    let mut shutdown = state.shutdown.clone();
    let mut pings = tokio::time::interval(Duration::from_secs(state.http.ping_secs.max(1)));
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    pings.reset();
    let mut missed_pongs = 0u32;
    // Public sockets have no token; let them live until the server stops.
    let expiry = ctx
        .as_ref()
        .map_or_else(far_future, |ctx| instant_of(&state, ctx.expires_at));

    let first = (*heads.borrow_and_update()).max(head);
    if send_head(&mut socket, first).await.is_err() {
        return;
    }
    let close = loop {
        tokio::select! {
            changed = heads.changed() => {
                if changed.is_err() { break None; }
                let head = *heads.borrow_and_update();
                if send_head(&mut socket, head).await.is_err() { break None; }
            }
            _ = pings.tick() => {
                // The clock is injected: re-check expiry against it, not only the timer below.
                if ctx.as_ref().is_some_and(|ctx| state.clock.now() >= ctx.expires_at) {
                    break Some((LIVE_CLOSE_AUTH, "token expired"));
                }
                if missed_pongs >= MAX_MISSED_PONGS { break None; }
                missed_pongs += 1;
                if socket.send(Message::Ping(axum::body::Bytes::new())).await.is_err() { break None; }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Pong(_))) => missed_pongs = 0,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {} // pings are answered by the library; nothing else is expected
            },
            _ = tokio::time::sleep_until(expiry) => {
                break Some((LIVE_CLOSE_AUTH, "token expired"));
            }
            revocation = revocations.recv() => match revocation {
                Ok(revocation) if affects(&revocation, ctx.as_ref()) => {
                    break Some((LIVE_CLOSE_AUTH, "session revoked"));
                }
                Ok(_) => {}
                // Missed revocations: re-check this session against the store.
                Err(RecvError::Lagged(_)) => {
                    if let Some(ctx) = &ctx && state.auth.recheck(ctx).await.is_err() {
                        break Some((LIVE_CLOSE_AUTH, "session revoked"));
                    }
                }
                Err(RecvError::Closed) => break None,
            },
            () = stopping(&mut shutdown) => {
                break Some((CLOSE_GOING_AWAY, "server shutting down"));
            }
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
}

/// Resolves when the server starts shutting down.
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here rather than across the select.
    let _ = shutdown.wait_for(|stopping| *stopping).await.is_ok();
}

fn affects(revocation: &Revocation, ctx: Option<&AuthContext>) -> bool {
    let Some(ctx) = ctx else { return false };
    match revocation {
        Revocation::Sessions(sessions) => sessions.contains(&ctx.session_id),
        Revocation::User(user) => *user == ctx.user_id,
    }
}

async fn send_head(socket: &mut WebSocket, head: u64) -> Result<(), axum::Error> {
    let text = serde_json::to_string(&LiveHead { head }).unwrap_or_default();
    socket.send(Message::Text(text.into())).await
}

fn instant_of(state: &AppState, unix_seconds: u64) -> Instant {
    let remaining = unix_seconds.saturating_sub(state.clock.now());
    Instant::now() + Duration::from_secs(remaining)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// Counts open live sockets in the metrics.
struct ConnectionGauge;

impl ConnectionGauge {
    fn new() -> Self {
        metrics::gauge!("haven_live_connections").increment(1.0);
        Self
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("haven_live_connections").decrement(1.0);
    }
}
