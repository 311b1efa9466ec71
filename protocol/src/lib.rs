//! Haven's v1 wire protocol: the types of the HTTP API, the envelope and its canonical bytes,
//! padding, error codes and the validation that server and clients share. No I/O.
//!
//! Encodings: binary fields are standard base64 with padding in JSON; ids in URL paths are
//! lowercase hex; spaces are named `public` or by 32 hex characters.

pub mod api;
pub mod bytes;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod padding;

pub use bytes::{Blob, Bytes};
pub use envelope::{Envelope, EnvelopeError, EnvelopeLimits, Kind, SequencedEnvelope};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use ids::{DeviceId, DocId, EnvelopeId, HexId, Signature, SpaceId, UserId};
