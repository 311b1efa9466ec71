//! What a device checks before it believes a public envelope or a manifest.

use automerge::Change;
use ed25519_dalek::VerifyingKey;
use haven_protocol::{Envelope, EnvelopeError, EnvelopeLimits, Kind, SpaceId};

use crate::documents::Manifest;

/// Why a public envelope or manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed public envelope: {0}")]
    Shape(#[from] EnvelopeError),
    #[error("`{0}` envelopes are not accepted in the public space yet")]
    UnsupportedKind(&'static str),
    #[error("signature is not valid for any pinned content key")]
    BadSignature,
    #[error("body is not an Automerge change")]
    MalformedChange,
    #[error("envelope id is not the hash of its change")]
    IdMismatch,
    /// A signed change its document refuses, typically one that reuses another change's actor
    /// and sequence number (two publishers that did not see each other's work).
    #[error("change cannot be applied to its document")]
    CannotApply,
    #[error("manifest version {offered} is older than the accepted version {last_accepted}")]
    ManifestRollback { offered: u64, last_accepted: u64 },
}

/// Checks a public envelope and returns the Automerge change it carries: it must be signed by one
/// of the `pinned` content keys over [`Envelope::signed_bytes`], its body must be an Automerge
/// change, and its id must be that change's hash.
///
/// The signature is checked before the body is parsed, so unsigned bytes never reach the
/// Automerge decoder.
pub fn verify_public_envelope(
    envelope: &Envelope,
    pinned: &[VerifyingKey],
) -> Result<Change, VerifyError> {
    check_signature(envelope, pinned)?;
    let change = crate::documents::untrusted::parse_change(&envelope.body.0)
        .map_err(|_| VerifyError::MalformedChange)?;
    if change.hash().0 != envelope.id.0 {
        return Err(VerifyError::IdMismatch);
    }
    Ok(change)
}

/// The cheap half of [`verify_public_envelope`]: shape, kind and signature, without parsing the
/// body. Parsing an Automerge change costs far more than checking a signature, so a whole bundle
/// is checked this way first, and no byte of a bundle with a bad signature is parsed.
pub(crate) fn check_signature(
    envelope: &Envelope,
    pinned: &[VerifyingKey],
) -> Result<(), VerifyError> {
    envelope.validate(&SpaceId::Public, &EnvelopeLimits::default())?;
    if envelope.kind != Kind::Change {
        return Err(VerifyError::UnsupportedKind(envelope.kind.as_str()));
    }
    let signature_bytes = envelope
        .sig
        .as_ref()
        .ok_or(VerifyError::Shape(EnvelopeError::MissingSignature))?;
    let signature = ed25519_dalek::Signature::from_bytes(&signature_bytes.0);
    let message = envelope.signed_bytes(&SpaceId::Public);
    // verify_strict also refuses small-order keys and malleable signatures.
    if !pinned
        .iter()
        .any(|key| key.verify_strict(&message, &signature).is_ok())
    {
        return Err(VerifyError::BadSignature);
    }
    Ok(())
}

/// Remembers the highest manifest version a device accepted and refuses one that goes backwards,
/// so a server cannot roll a device back to older content (for example to an outdated hotline
/// number). The caller persists [`ManifestGuard::last_accepted`] between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestGuard {
    last_accepted: Option<u64>,
}

impl ManifestGuard {
    /// A guard that has accepted nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A guard restored from a persisted version.
    pub fn with_last_accepted(version: u64) -> Self {
        Self {
            last_accepted: Some(version),
        }
    }

    /// The highest version accepted so far.
    pub fn last_accepted(&self) -> Option<u64> {
        self.last_accepted
    }

    /// Accepts `manifest` if its version is not below the last accepted one (an equal version is
    /// the same manifest seen again).
    pub fn accept(&mut self, manifest: &Manifest) -> Result<(), VerifyError> {
        if let Some(last_accepted) = self.last_accepted
            && manifest.version < last_accepted
        {
            return Err(VerifyError::ManifestRollback {
                offered: manifest.version,
                last_accepted,
            });
        }
        self.last_accepted = Some(manifest.version);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentKey;
    use automerge::transaction::Transactable as _;
    use automerge::{AutoCommit, ROOT};
    use haven_protocol::{Blob, Bytes};

    fn signed(key: &ContentKey, id: [u8; 32], body: Vec<u8>, kind: Kind) -> Envelope {
        let mut envelope = Envelope {
            id: Bytes(id),
            doc: Bytes([1; 16]),
            kind,
            device: Bytes([2; 16]),
            ctr: 1,
            key_epoch: 0,
            body: Blob(body),
            sig: None,
            covers: None,
            upto_seq: None,
        };
        envelope.sig = Some(key.sign(&envelope.signed_bytes(&SpaceId::Public)));
        envelope
    }

    fn change() -> Change {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "k", "v").unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    }

    #[test]
    fn checks_each_rule_in_turn() {
        let key = ContentKey::from_secret_bytes(&[1; 32]);
        let other = ContentKey::from_secret_bytes(&[2; 32]);
        let pinned = [key.verifying_key()];
        let mut change = change();
        let hash = change.hash().0;
        let body = change.bytes().into_owned();

        let good = signed(&key, hash, body.clone(), Kind::Change);
        assert_eq!(
            verify_public_envelope(&good, &pinned).unwrap().hash().0,
            hash
        );
        // Any of several pinned keys will do.
        let both = [other.verifying_key(), key.verifying_key()];
        assert!(verify_public_envelope(&good, &both).is_ok());
        assert_eq!(
            verify_public_envelope(&good, &[]),
            Err(VerifyError::BadSignature)
        );

        let wrong_id = signed(&key, [0; 32], body.clone(), Kind::Change);
        assert_eq!(
            verify_public_envelope(&wrong_id, &pinned),
            Err(VerifyError::IdMismatch)
        );

        let garbage = signed(&key, hash, b"not a change".to_vec(), Kind::Change);
        assert_eq!(
            verify_public_envelope(&garbage, &pinned),
            Err(VerifyError::MalformedChange)
        );

        let tombstone = signed(&key, hash, body.clone(), Kind::Tombstone);
        assert_eq!(
            verify_public_envelope(&tombstone, &pinned),
            Err(VerifyError::UnsupportedKind("tombstone"))
        );

        let mut private_epoch = signed(&key, hash, body, Kind::Change);
        private_epoch.key_epoch = 3;
        assert_eq!(
            verify_public_envelope(&private_epoch, &pinned),
            Err(VerifyError::Shape(EnvelopeError::PublicEpoch))
        );
    }

    #[test]
    fn guard_accepts_equal_and_newer_versions_only() {
        let manifest = |version| Manifest {
            version,
            expires_at: 0,
            entries: Default::default(),
        };
        let mut guard = ManifestGuard::new();
        assert_eq!(guard.last_accepted(), None);
        guard.accept(&manifest(3)).unwrap();
        guard.accept(&manifest(3)).unwrap();
        guard.accept(&manifest(5)).unwrap();
        assert_eq!(
            guard.accept(&manifest(4)),
            Err(VerifyError::ManifestRollback {
                offered: 4,
                last_accepted: 5
            })
        );
        assert_eq!(guard.last_accepted(), Some(5));
    }
}
