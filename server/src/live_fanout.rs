//! Live fan-out across server instances over PostgreSQL (DESIGN.md §7).
//!
//! [`crate::live_hub::LiveHub`] reaches only this process's sockets. With several instances over
//! one database, a push accepted by instance A must wake the subscribers of that space on
//! instance B, and a revocation on A must close B's affected sockets:
//! - `notify`: every append that stores something runs `pg_notify('haven_heads', 'SPACE HEAD')`
//!   in its transaction, so the notification leaves at commit and never ahead of the data. Each
//!   instance LISTENs and raises the heads of its hub. Revocations are relayed the same way on
//!   `haven_revocations`. Notifications lost while the listening connection was down are made
//!   up by polling the heads of watched spaces on reconnect, and by a slow safety poll.
//! - `poll`: for engines without LISTEN/NOTIFY (CockroachDB, YugabyteDB's older releases), the
//!   heads of spaces with live sockets here are read every interval. Revocations are then not
//!   relayed: sockets on other instances close when their token expires (at most 15 minutes),
//!   and every request is refused at once anyway.
//!
//! Payloads carry space, user and session ids only: never tokens, bodies or names.

use std::sync::Arc;
use std::time::Duration;

use haven_protocol::{HexId, SpaceId};
use sqlx::Row as _;
use sqlx::postgres::{PgListener, PgNotification, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::live_hub::{LiveHub, Revocation};
use crate::store::postgres::{HEADS_CHANNEL, PgStore, REVOCATIONS_CHANNEL};

/// How heads reach other instances (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutMode {
    Notify,
    Poll,
}

/// With `notify`, polling is only a safety net: this many intervals between polls.
const SAFETY_POLL_FACTOR: u32 = 10;

/// Session ids per revocation notification (a payload must stay under 8000 bytes).
const SESSIONS_PER_NOTIFICATION: usize = 100;

/// Longest wait between attempts to (re)open the listening connection.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The fan-out's background tasks; they run until [`Fanout::abort`].
#[derive(Debug)]
pub struct Fanout {
    tasks: Vec<JoinHandle<()>>,
}

impl Fanout {
    pub fn abort(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Starts the fan-out between `live` and the other instances on `store`'s database.
pub fn start(store: PgStore, live: Arc<LiveHub>, mode: FanoutMode, poll_every: Duration) -> Fanout {
    let pool = store.pool().clone();
    let tasks = match mode {
        FanoutMode::Poll => vec![tokio::spawn(poll_forever(pool, live, poll_every))],
        FanoutMode::Notify => {
            let (relay, revocations) = mpsc::unbounded_channel();
            live.set_relay(relay);
            vec![
                tokio::spawn(listen_forever(pool.clone(), Arc::clone(&live))),
                tokio::spawn(relay_forever(
                    pool,
                    live,
                    revocations,
                    poll_every.saturating_mul(SAFETY_POLL_FACTOR),
                )),
            ]
        }
    };
    Fanout { tasks }
}

/// Reads the heads of the spaces watched here and raises them in the hub.
async fn poll_heads(pool: &PgPool, live: &LiveHub) {
    let watched: Vec<String> = live
        .watched()
        .into_iter()
        .map(|(space, _)| space.name())
        .collect();
    if watched.is_empty() {
        return;
    }
    let rows = match sqlx::query("SELECT space, head FROM spaces WHERE space = ANY($1)")
        .bind(&watched)
        .fetch_all(pool)
        .await
    {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "polling the heads of watched spaces failed");
            return;
        }
    };
    for row in rows {
        let (Ok(name), Ok(head)) = (row.try_get::<String, _>(0), row.try_get::<i64, _>(1)) else {
            continue;
        };
        if let (Ok(space), Ok(head)) = (name.parse::<SpaceId>(), u64::try_from(head)) {
            live.publish(&space, head);
        }
    }
}

async fn poll_forever(pool: PgPool, live: Arc<LiveHub>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        poll_heads(&pool, &live).await;
    }
}

/// LISTENs on both channels, reconnecting with backoff; after any gap, polls once.
async fn listen_forever(pool: PgPool, live: Arc<LiveHub>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match open_listener(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "opening the live fan-out listener failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Whatever was announced before LISTEN took effect.
        poll_heads(&pool, &live).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => deliver(&live, &notification),
                // The connection dropped and is re-established on the next call: anything
                // announced in between is lost, so read the heads instead.
                Ok(None) => poll_heads(&pool, &live).await,
                Err(error) => {
                    tracing::warn!(%error, "the live fan-out listener failed; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn open_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([HEADS_CHANNEL, REVOCATIONS_CHANNEL])
        .await?;
    Ok(listener)
}

fn deliver(live: &LiveHub, notification: &PgNotification) {
    let payload = notification.payload();
    match notification.channel() {
        HEADS_CHANNEL => {
            if let Some((space, head)) = parse_head(payload) {
                live.publish(&space, head);
            }
        }
        REVOCATIONS_CHANNEL => {
            if let Some(revocation) = parse_revocation(payload) {
                // Not relayed again: it came from the database.
                live.revoke_here(revocation);
            }
        }
        _ => {}
    }
}

fn parse_head(payload: &str) -> Option<(SpaceId, u64)> {
    let (space, head) = payload.split_once(' ')?;
    Some((space.parse().ok()?, head.parse().ok()?))
}

fn parse_revocation(payload: &str) -> Option<Revocation> {
    let mut words = payload.split(' ');
    match words.next()? {
        "user" => Some(Revocation::User(words.next()?.parse().ok()?)),
        "sessions" => words
            .map(|word| word.parse::<HexId>().ok())
            .collect::<Option<Vec<_>>>()
            .map(Revocation::Sessions),
        _ => None,
    }
}

/// The notification payloads of one revocation.
fn revocation_payloads(revocation: &Revocation) -> Vec<String> {
    match revocation {
        Revocation::User(user) => vec![format!("user {user}")],
        Revocation::Sessions(sessions) => sessions
            .chunks(SESSIONS_PER_NOTIFICATION)
            .map(|chunk| {
                let mut payload = String::from("sessions");
                for session in chunk {
                    payload.push(' ');
                    payload.push_str(&session.to_string());
                }
                payload
            })
            .collect(),
    }
}

/// Sends this instance's revocations to the others, and polls heads now and then in case a
/// notification was lost.
async fn relay_forever(
    pool: PgPool,
    live: Arc<LiveHub>,
    mut revocations: mpsc::UnboundedReceiver<Revocation>,
    safety_every: Duration,
) {
    let mut safety = tokio::time::interval(safety_every);
    safety.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            revocation = revocations.recv() => {
                let Some(revocation) = revocation else {
                    // The hub is gone: the server is stopping.
                    return;
                };
                for payload in revocation_payloads(&revocation) {
                    if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(REVOCATIONS_CHANNEL)
                        .bind(payload)
                        .execute(&pool)
                        .await
                    {
                        // Other instances' sockets then close at token expiry; requests are
                        // refused at once regardless.
                        tracing::warn!(%error, "relaying a revocation to other instances failed");
                    }
                }
            }
            _ = safety.tick() => poll_heads(&pool, &live).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_is_ignored() {
        let space = SpaceId::Private(HexId([0xab; 16]));
        assert_eq!(parse_head(&format!("{space} 42")), Some((space, 42)));
        assert_eq!(parse_head("public 7"), Some((SpaceId::Public, 7)));
        assert_eq!(parse_head("public"), None);
        assert_eq!(parse_head("nope 7"), None);
        assert_eq!(parse_head("public -1"), None);

        let user = Revocation::User(HexId([1; 16]));
        let payloads = revocation_payloads(&user);
        assert_eq!(payloads.len(), 1);
        assert_eq!(parse_revocation(&payloads[0]), Some(user));

        let many: Vec<HexId> = (0..=250u8).map(|n| HexId([n; 16])).collect();
        let payloads = revocation_payloads(&Revocation::Sessions(many.clone()));
        assert_eq!(payloads.len(), 3);
        assert!(payloads.iter().all(|payload| payload.len() < 8000));
        let back: Vec<HexId> = payloads
            .iter()
            .flat_map(|payload| match parse_revocation(payload) {
                Some(Revocation::Sessions(ids)) => ids,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(back, many);
        assert_eq!(parse_revocation("sessions zz"), None);
        assert_eq!(parse_revocation("other 1"), None);
    }
}
