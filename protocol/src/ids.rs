//! Identifiers. Binary ids (documents, devices, envelopes) are [`Bytes`]; spaces and users are
//! named by text, because a space's name is part of the canonical bytes every envelope is bound to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::bytes::Bytes;

/// Idempotency key of an envelope: a keyed hash of its content.
pub type EnvelopeId = Bytes<32>;
/// Opaque random document id (singletons: derived).
pub type DocId = Bytes<16>;
/// Random per-install device id.
pub type DeviceId = Bytes<16>;
/// An Ed25519 signature.
pub type Signature = Bytes<64>;

/// The literal name of the public space.
pub const PUBLIC_SPACE: &str = "public";

/// A 16-byte account-scoped identifier written as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexId(pub [u8; 16]);

impl HexId {
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &hex::encode(&self.0[..4]))
    }
}

impl FromStr for HexId {
    type Err = IdParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Only the canonical lowercase form, so one id has exactly one spelling.
        if text.len() != 32
            || !text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(IdParseError);
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(text, &mut out).map_err(|_| IdParseError)?;
        Ok(Self(out))
    }
}

impl Serialize for HexId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HexId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom("expected 32 lowercase hex characters"))
    }
}

impl PartialSchema for HexId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9a-f]{32}$"))
            .into()
    }
}

impl ToSchema for HexId {}

/// The id is not in its canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed id")]
pub struct IdParseError;

/// An account's id.
pub type UserId = HexId;

/// A unit of sync and access: the public space or one account's private space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpaceId {
    Public,
    Private(HexId),
}

impl SpaceId {
    pub fn is_public(&self) -> bool {
        matches!(self, Self::Public)
    }

    /// The bytes of the name as it appears in the canonical AAD / signed bytes.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Public => f.write_str(PUBLIC_SPACE),
            Self::Private(id) => id.fmt(f),
        }
    }
}

impl fmt::Debug for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Public => f.write_str("SpaceId(public)"),
            Self::Private(id) => write!(f, "SpaceId({id:?})"),
        }
    }
}

impl FromStr for SpaceId {
    type Err = IdParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == PUBLIC_SPACE {
            Ok(Self::Public)
        } else {
            text.parse().map(Self::Private)
        }
    }
}

impl Serialize for SpaceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpaceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            serde::de::Error::custom("expected \"public\" or 32 lowercase hex characters")
        })
    }
}

impl PartialSchema for SpaceId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(public|[0-9a-f]{32})$"))
            .into()
    }
}

impl ToSchema for SpaceId {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_ids_parse_only_canonical_forms() {
        assert_eq!("public".parse::<SpaceId>(), Ok(SpaceId::Public));
        let hex = "00112233445566778899aabbccddeeff";
        let space: SpaceId = hex.parse().unwrap();
        assert_eq!(space.to_string(), hex);
        for bad in [
            "",
            "Public",
            "00112233445566778899AABBCCDDEEFF",
            "0011",
            &format!("{hex}00"),
            "../etc",
        ] {
            assert!(bad.parse::<SpaceId>().is_err(), "{bad} must not parse");
        }
    }

    #[test]
    fn space_id_json() {
        let space = SpaceId::Private(HexId([1; 16]));
        let json = serde_json::to_string(&space).unwrap();
        assert_eq!(serde_json::from_str::<SpaceId>(&json).unwrap(), space);
        assert_eq!(
            serde_json::to_string(&SpaceId::Public).unwrap(),
            "\"public\""
        );
    }
}
