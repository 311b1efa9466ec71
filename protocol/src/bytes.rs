//! Binary values on the wire: standard base64 with padding in JSON, lowercase hex in URL paths.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// A fixed-size binary value (an id, a key, a signature).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes<const N: usize>(pub [u8; N]);

impl<const N: usize> Bytes<N> {
    /// Lowercase hex, the form used in URL paths.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses lowercase or uppercase hex of exactly `N` bytes.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; N];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// Standard base64 with padding, the form used in JSON.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses standard base64 with padding of exactly `N` bytes.
    pub fn from_base64(text: &str) -> Option<Self> {
        let decoded = STANDARD.decode(text).ok()?;
        let array: [u8; N] = decoded.try_into().ok()?;
        Some(Self(array))
    }

    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> From<[u8; N]> for Bytes<N> {
    fn from(value: [u8; N]) -> Self {
        Self(value)
    }
}

impl<const N: usize> AsRef<[u8]> for Bytes<N> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for Bytes<N> {
    // Ids are opaque and not secret; keys never use this type, so printing a prefix is safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "{}…", &hex[..hex.len().min(12)])
    }
}

impl<const N: usize> Serialize for Bytes<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de, const N: usize> Deserialize<'de> for Bytes<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_base64(&text).ok_or_else(|| {
            D::Error::custom(format!("expected {N} bytes in standard padded base64"))
        })
    }
}

impl<const N: usize> PartialSchema for Bytes<N> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Byte)))
            .description(Some(format!("{N} bytes, standard base64 with padding")))
            .min_length(Some(N.div_ceil(3) * 4))
            .max_length(Some(N.div_ceil(3) * 4))
            .into()
    }
}

impl<const N: usize> ToSchema for Bytes<N> {}

/// A variable-length binary value (an envelope body, a sealed bundle).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Vec<u8>);

impl Blob {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Blob {
    fn from(value: Vec<u8>) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Blob {
    // Bodies may be plaintext (public content) or ciphertext; never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Self)
            .map_err(|_| D::Error::custom("expected standard padded base64"))
    }
}

impl PartialSchema for Blob {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Byte)))
            .description(Some("bytes, standard base64 with padding"))
            .into()
    }
}

impl ToSchema for Blob {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_length_check() {
        let id = Bytes::<16>([7; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"BwcHBwcHBwcHBwcHBwcHBw==\"");
        assert_eq!(serde_json::from_str::<Bytes<16>>(&json).unwrap(), id);
        assert!(serde_json::from_str::<Bytes<32>>(&json).is_err());
        assert!(serde_json::from_str::<Bytes<16>>("\"not base64!\"").is_err());
        // Unpadded input is refused: the contract says padded.
        assert!(serde_json::from_str::<Bytes<16>>("\"BwcHBwcHBwcHBwcHBwcHBw\"").is_err());
        assert!(serde_json::from_str::<Bytes<16>>("17").is_err());
    }

    #[test]
    fn hex_round_trip() {
        let id = Bytes::<16>([0xab; 16]);
        assert_eq!(Bytes::<16>::from_hex(&id.to_hex()), Some(id));
        assert_eq!(Bytes::<16>::from_hex("abcd"), None);
        assert_eq!(Bytes::<16>::from_hex(&"zz".repeat(16)), None);
    }

    #[test]
    fn blob_round_trip() {
        let blob = Blob(vec![0, 1, 2, 255]);
        let json = serde_json::to_string(&blob).unwrap();
        assert_eq!(serde_json::from_str::<Blob>(&json).unwrap(), blob);
        assert!(serde_json::from_str::<Blob>("\"%%%\"").is_err());
        assert_eq!(format!("{blob:?}"), "Blob(4 bytes)");
    }
}
