//! Authentication (DESIGN.md §5): password checks, access and refresh tokens, login throttling.
//!
//! Nothing here logs a token, a secret or a username; session ids and kids appear at debug only.

pub mod jwt;
pub mod password;

#[cfg(test)]
mod test_support;

pub use jwt::{AccessClaims, JwtConfig, KeyError, KeyInfo, KeySet, TokenError};
pub use password::{PasswordError, PasswordHasher};
