//! Conversions between rows and records. Counters are u64 in Rust and bigint in SQL: values
//! above i64::MAX are refused on the way in ([`StoreError::Engine`]) and negative ones on the
//! way out ([`StoreError::Corrupt`]), never wrapped.

use haven_protocol::api::{KdfParams, KeyBundle};
use haven_protocol::{Blob, Bytes, HexId};
use sqlx::Row;
use sqlx::postgres::PgRow;
use zeroize::Zeroizing;

use crate::store::{
    AccountRecord, DeviceRecord, JwtKeyRecord, JwtKeyState, SessionRecord, StoreError, StoreResult,
};

pub(super) fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Engine(format!("{what} {value} exceeds PostgreSQL's bigint")))
}

pub(super) fn to_u64(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what}: negative ({value})")))
}

pub(super) fn to_u32(value: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what}: out of range ({value})")))
}

pub(super) fn account_from_row(row: &PgRow) -> StoreResult<AccountRecord> {
    Ok(AccountRecord {
        user_id: HexId(row.try_get("user_id")?),
        space_id: HexId(row.try_get("space_id")?),
        username_key: row.try_get("username_key")?,
        auth_hash: row.try_get("auth_hash")?,
        recovery_hash: row.try_get("recovery_hash")?,
        kdf: KdfParams {
            salt: Bytes(row.try_get("kdf_salt")?),
            m_kib: to_u32(row.try_get("kdf_m_kib")?, "kdf m_kib")?,
            t: to_u32(row.try_get("kdf_t")?, "kdf t")?,
            p: to_u32(row.try_get("kdf_p")?, "kdf p")?,
        },
        key_bundle: KeyBundle {
            version: to_u64(row.try_get("bundle_version")?, "key bundle version")?,
            key_epoch: to_u32(row.try_get("bundle_epoch")?, "key bundle epoch")?,
            blob: Blob(row.try_get("bundle_blob")?),
        },
        auth_version: to_u64(row.try_get("auth_version")?, "auth version")?,
        revision: to_u64(row.try_get("revision")?, "revision")?,
        created_day: row.try_get("created_day")?,
    })
}

pub(super) fn device_from_row(row: &PgRow) -> StoreResult<DeviceRecord> {
    Ok(DeviceRecord {
        user_id: HexId(row.try_get("user_id")?),
        device_id: Bytes(row.try_get("device_id")?),
        name: row.try_get("name")?,
        created_day: row.try_get("created_day")?,
        last_seen_day: row.try_get("last_seen_day")?,
        revoked: row.try_get("revoked")?,
    })
}

pub(super) fn session_from_row(row: &PgRow) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        session_id: HexId(row.try_get("session_id")?),
        user_id: HexId(row.try_get("user_id")?),
        device_id: Bytes(row.try_get("device_id")?),
        created_at: to_u64(row.try_get("created_at")?, "session created_at")?,
        last_used_at: to_u64(row.try_get("last_used_at")?, "session last_used_at")?,
        generation: to_u64(row.try_get("generation")?, "session generation")?,
        current_hash: row.try_get("current_hash")?,
        previous_hash: row.try_get("previous_hash")?,
        rotated_at: to_u64(row.try_get("rotated_at")?, "session rotated_at")?,
        revoked: row.try_get("revoked")?,
    })
}

/// Session ids from `RETURNING session_id` rows, sorted (the order callers see from sled).
pub(super) fn session_ids(rows: &[PgRow]) -> StoreResult<Vec<HexId>> {
    let mut ids = rows
        .iter()
        .map(|row| Ok(HexId(row.try_get(0)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    ids.sort();
    Ok(ids)
}

pub(in crate::store) fn jwt_state_name(state: JwtKeyState) -> &'static str {
    match state {
        JwtKeyState::Active => "active",
        JwtKeyState::VerifyOnly => "verify_only",
        JwtKeyState::Retired => "retired",
    }
}

fn jwt_state_from_name(name: &str) -> StoreResult<JwtKeyState> {
    match name {
        "active" => Ok(JwtKeyState::Active),
        "verify_only" => Ok(JwtKeyState::VerifyOnly),
        "retired" => Ok(JwtKeyState::Retired),
        _ => Err(StoreError::Corrupt(format!(
            "jwt key: unknown state {name:?}"
        ))),
    }
}

pub(super) fn jwt_key_from_row(row: &PgRow) -> StoreResult<JwtKeyRecord> {
    let secret: Zeroizing<Vec<u8>> = Zeroizing::new(row.try_get("secret")?);
    let secret: [u8; 32] = secret
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt("jwt key: secret is not 32 bytes".into()))?;
    Ok(JwtKeyRecord {
        kid: row.try_get("kid")?,
        secret: Zeroizing::new(secret),
        created_at: to_u64(row.try_get("created_at")?, "jwt key created_at")?,
        state: jwt_state_from_name(row.try_get("state")?)?,
    })
}
