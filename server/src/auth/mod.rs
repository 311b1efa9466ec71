//! Authentication (DESIGN.md §5): password checks, access and refresh tokens, login throttling.
//!
//! Nothing here logs a token, a secret or a username; session ids and kids appear at debug only.

use haven_protocol::ErrorCode;
use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::ApiError;

pub mod access;
pub mod jwt;
pub mod limits;
pub mod password;
pub mod refresh;

#[cfg(test)]
mod test_support;

pub use access::{AuthContext, Authenticator};
pub use jwt::{AccessClaims, JwtConfig, KeyError, KeyInfo, KeySet, TokenError};
pub use limits::{LoginLimiter, LoginLimits};
pub use password::{PasswordError, PasswordHasher};
pub use refresh::{RefreshConfig, RefreshError, RefreshTokens};

/// `device_revoked`: the app stops syncing and offers export.
pub(crate) fn device_revoked() -> ApiError {
    ApiError::new(ErrorCode::DeviceRevoked, "this device was revoked")
}

/// `account_erased`: the app stops syncing and offers export.
pub(crate) fn account_erased() -> ApiError {
    ApiError::new(ErrorCode::AccountErased, "this account was erased")
}

/// HMAC-SHA256 under a 32-byte key over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC zero-pads keys shorter than the hash block (RFC 2104), so padding the key to the
    // 64-byte block by hand gives the same MAC through the infallible constructor.
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_slice_constructor() {
        let key = [7u8; 32];
        let mut reference = <Hmac<Sha256>>::new_from_slice(&key).unwrap();
        reference.update(b"ab");
        reference.update(b"cd");
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(hmac_sha256(&key, &[b"ab", b"cd"]), expected);
    }
}
