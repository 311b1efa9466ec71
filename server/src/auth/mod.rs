//! Authentication (DESIGN.md §5): password checks, access and refresh tokens, login throttling.
//!
//! Nothing here logs a token, a secret or a username; session ids and kids appear at debug only.

pub mod password;

pub use password::{PasswordError, PasswordHasher};
