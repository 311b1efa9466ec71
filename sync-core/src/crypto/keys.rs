//! Key types. Every secret zeroises on drop, prints as `Name(redacted)`, and compares in constant
//! time. Secrets are filled in place (from the random source or HKDF) rather than built from
//! temporary arrays, so as few stray copies as possible are left on the stack.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::SigningKey;
use haven_protocol::{Bytes, DeviceId, DocId};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{CryptoError, hkdf_expand};
use crate::env::{Random, random_array};

/// HKDF info strings of the keys derived from the root key. Distinct, versioned, never reused.
const INFO_BUNDLE_SEAL: &[u8] = b"haven/v1/bundle-seal";
const INFO_BUNDLE_SIGN: &[u8] = b"haven/v1/bundle-sign";
const INFO_EPOCH_WRAP: &[u8] = b"haven/v1/epoch-wrap";
/// Domain of singleton document ids (HMAC under the account's singleton key).
const SINGLETON_DOMAIN: &[u8] = b"haven/v1/singleton\0";

/// Defines a 32-byte secret newtype: zeroised on drop, redacted `Debug`, constant-time `==`.
macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Copies 32 secret bytes, e.g. read back from the encrypted local store.
            pub fn from_bytes(bytes: &[u8; 32]) -> Self {
                let mut key = Self([0; 32]);
                key.0.copy_from_slice(bytes);
                key
            }

            /// The secret bytes. Keep any copy in a zeroising buffer.
            pub fn expose_secret(&self) -> &[u8; 32] {
                &self.0
            }

            /// An all-zero key to be filled in place.
            #[allow(dead_code, reason = "not every key type is filled in place")]
            pub(crate) fn zeroed() -> Self {
                Self([0; 32])
            }

            #[allow(dead_code, reason = "not every key type is filled in place")]
            pub(crate) fn bytes_mut(&mut self) -> &mut [u8; 32] {
                &mut self.0
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other).into()
            }
        }

        impl Eq for $name {}

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(redacted)"))
            }
        }
    };
}

secret_key! {
    /// The account root key `RK`: 32 random bytes made on the first device. It wraps every
    /// epoch key and derives the keys that seal and sign the bundle. Rotated on revocation.
    RootKey
}

secret_key! {
    /// The key-encryption key derived from the password: it wraps `RK` in the bundle. Devices
    /// never store it.
    Kek
}

secret_key! {
    /// The password-derived login proof sent to the server (which stores an Argon2id hash of
    /// it). Knowing it does not help decrypt anything: it is a separate HKDF branch from the KEK.
    AuthSecret
}

secret_key! {
    /// The phrase-derived proof for `/v1/recovery`.
    RecoveryAuth
}

impl AuthSecret {
    /// The wire form for a request body. The copy is as long-lived as the request: drop it soon.
    pub fn to_wire(&self) -> Bytes<32> {
        Bytes(self.0)
    }
}

impl RecoveryAuth {
    /// The wire form for a request body. The copy is as long-lived as the request: drop it soon.
    pub fn to_wire(&self) -> Bytes<32> {
        Bytes(self.0)
    }
}

impl RootKey {
    /// A fresh root key.
    pub fn generate(random: &dyn Random) -> Self {
        let mut key = Self::zeroed();
        random.fill(key.bytes_mut());
        key
    }

    /// The keys derived from this root key.
    pub(crate) fn derived(&self) -> RootDerivedKeys {
        let mut seal = Zeroizing::new([0u8; 32]);
        hkdf_expand(&self.0, INFO_BUNDLE_SEAL, seal.as_mut());
        let mut sign_seed = Zeroizing::new([0u8; 32]);
        hkdf_expand(&self.0, INFO_BUNDLE_SIGN, sign_seed.as_mut());
        let mut epoch_wrap = Zeroizing::new([0u8; 32]);
        hkdf_expand(&self.0, INFO_EPOCH_WRAP, epoch_wrap.as_mut());
        RootDerivedKeys {
            seal,
            signing: SigningKey::from_bytes(&sign_seed),
            epoch_wrap,
        }
    }

    /// The Ed25519 public key that verifies bundles sealed under this root key.
    pub(crate) fn bundle_signing_public(&self) -> [u8; 32] {
        self.derived().signing.verifying_key().to_bytes()
    }
}

/// The keys HKDF derives from `RK`, each under its own info string.
pub(crate) struct RootDerivedKeys {
    /// Encrypts the bundle's inner part ("haven/v1/bundle-seal").
    pub(crate) seal: Zeroizing<[u8; 32]>,
    /// Signs the whole bundle ("haven/v1/bundle-sign"); zeroised on drop by ed25519-dalek.
    pub(crate) signing: SigningKey,
    /// Wraps each epoch key inside the bundle ("haven/v1/epoch-wrap").
    pub(crate) epoch_wrap: Zeroizing<[u8; 32]>,
}

/// The symmetric key of one key epoch of the private space: it seals that epoch's envelopes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EpochKey {
    epoch: u32,
    key: [u8; 32],
}

impl EpochKey {
    /// A fresh key for `epoch`.
    pub fn generate(epoch: u32, random: &dyn Random) -> Self {
        let mut key = Self {
            epoch,
            key: [0; 32],
        };
        random.fill(&mut key.key);
        key
    }

    /// Copies a stored key (e.g. from the encrypted local store).
    pub fn from_bytes(epoch: u32, bytes: &[u8; 32]) -> Self {
        let mut key = Self {
            epoch,
            key: [0; 32],
        };
        key.key.copy_from_slice(bytes);
        key
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The secret bytes. Keep any copy in a zeroising buffer.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.key
    }
}

impl ConstantTimeEq for EpochKey {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.epoch.ct_eq(&other.epoch) & self.key.ct_eq(&other.key)
    }
}

impl PartialEq for EpochKey {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for EpochKey {}

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpochKey({}, redacted)", self.epoch)
    }
}

/// Every epoch key an account has had, by epoch: old ones stay so history stays readable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EpochKeyring {
    keys: BTreeMap<u32, EpochKey>,
}

impl EpochKeyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key of `key.epoch()`.
    pub fn insert(&mut self, key: EpochKey) {
        self.keys.insert(key.epoch(), key);
    }

    pub fn get(&self, epoch: u32) -> Option<&EpochKey> {
        self.keys.get(&epoch)
    }

    /// The key of the highest epoch.
    pub fn latest(&self) -> Option<&EpochKey> {
        self.keys.values().next_back()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys in ascending epoch order.
    pub fn iter(&self) -> impl Iterator<Item = &EpochKey> {
        self.keys.values()
    }
}

impl fmt::Debug for EpochKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochKeyring")
            .field("epochs", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One install's keys: a random device id, an X25519 key (RK is sealed to it) and an Ed25519
/// key (for signing as this device, e.g. when linking). Made once per install; a restored
/// backup is a new device.
pub struct DeviceKeys {
    device_id: DeviceId,
    /// Zeroised on drop by x25519-dalek.
    agreement: StaticSecret,
    /// Zeroised on drop by ed25519-dalek.
    signing: SigningKey,
}

// Both secret fields zeroise themselves on drop; the device id is not secret.
impl ZeroizeOnDrop for DeviceKeys {}

/// Length of [`DeviceKeys::to_secret_bytes`]: device id ‖ X25519 secret ‖ Ed25519 seed.
pub const DEVICE_KEYS_LEN: usize = 16 + 32 + 32;

impl DeviceKeys {
    /// New keys for a new install.
    pub fn generate(random: &dyn Random) -> Self {
        let device_id = Bytes(random_array::<16>(random));
        let mut agreement = Zeroizing::new([0u8; 32]);
        random.fill(agreement.as_mut());
        let mut signing = Zeroizing::new([0u8; 32]);
        random.fill(signing.as_mut());
        Self {
            device_id,
            agreement: StaticSecret::from(*agreement),
            signing: SigningKey::from_bytes(&signing),
        }
    }

    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The public half: what the bundle certifies and other devices seal to.
    pub fn public_keys(&self) -> DevicePublicKeys {
        DevicePublicKeys {
            device_id: self.device_id,
            agreement: PublicKey::from(&self.agreement).to_bytes(),
            signing: self.signing.verifying_key().to_bytes(),
        }
    }

    /// The secret form for the encrypted local store: device id ‖ X25519 secret ‖ Ed25519 seed.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; DEVICE_KEYS_LEN]> {
        let mut out = Zeroizing::new([0u8; DEVICE_KEYS_LEN]);
        out[..16].copy_from_slice(&self.device_id.0);
        out[16..48].copy_from_slice(self.agreement.as_bytes());
        out[48..].copy_from_slice(self.signing.as_bytes());
        out
    }

    /// Reads [`DeviceKeys::to_secret_bytes`]' output.
    pub fn from_secret_bytes(bytes: &[u8; DEVICE_KEYS_LEN]) -> Self {
        let mut device_id = [0u8; 16];
        device_id.copy_from_slice(&bytes[..16]);
        let mut agreement = Zeroizing::new([0u8; 32]);
        agreement.copy_from_slice(&bytes[16..48]);
        let mut signing = Zeroizing::new([0u8; 32]);
        signing.copy_from_slice(&bytes[48..]);
        Self {
            device_id: Bytes(device_id),
            agreement: StaticSecret::from(*agreement),
            signing: SigningKey::from_bytes(&signing),
        }
    }

    pub(crate) fn agreement_secret(&self) -> &StaticSecret {
        &self.agreement
    }
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// A device's public keys, as certified in the bundle's device list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePublicKeys {
    pub device_id: DeviceId,
    /// X25519 public key: RK is sealed to it.
    pub agreement: [u8; 32],
    /// Ed25519 public key.
    pub signing: [u8; 32],
}

impl DevicePublicKeys {
    /// Checks that the Ed25519 key is a valid point and that the X25519 key is not of low order
    /// (sealing RK to it would fail at every later `seal`, locking the bundle).
    pub fn validate(&self) -> Result<(), CryptoError> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.signing)
            .map_err(|_| CryptoError::BadPublicKey)?;
        // X25519 clamps every scalar to a multiple of the cofactor, so any scalar maps a
        // low-order point to the all-zero output: one agreement with a fixed scalar tells.
        let probe = StaticSecret::from([0x5a; 32]);
        if probe
            .diffie_hellman(&PublicKey::from(self.agreement))
            .was_contributory()
        {
            Ok(())
        } else {
            Err(CryptoError::BadPublicKey)
        }
    }
}

/// Per-account random constants, kept in the bundle and stable across rotations (document ids
/// and envelope ids must not change when the keys do).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AccountConstants {
    /// HMAC key of envelope ids ([`super::envelope_id`]).
    id_key: [u8; 32],
    /// HMAC key of singleton document ids ([`AccountConstants::singleton_doc_id`]).
    singleton_key: [u8; 32],
}

impl AccountConstants {
    pub fn generate(random: &dyn Random) -> Self {
        let mut constants = Self {
            id_key: [0; 32],
            singleton_key: [0; 32],
        };
        random.fill(&mut constants.id_key);
        random.fill(&mut constants.singleton_key);
        constants
    }

    pub fn from_bytes(id_key: &[u8; 32], singleton_key: &[u8; 32]) -> Self {
        let mut constants = Self {
            id_key: [0; 32],
            singleton_key: [0; 32],
        };
        constants.id_key.copy_from_slice(id_key);
        constants.singleton_key.copy_from_slice(singleton_key);
        constants
    }

    pub fn id_key(&self) -> &[u8; 32] {
        &self.id_key
    }

    pub fn singleton_key(&self) -> &[u8; 32] {
        &self.singleton_key
    }

    /// The document id of a singleton (`"journal-index"`, `"saved-resources"`, …): the first 16
    /// bytes of HMAC-SHA256(singleton_key, "haven/v1/singleton\0" ‖ name). Every device of the
    /// account computes the same id, so singletons made offline on two devices merge (§2).
    pub fn singleton_doc_id(&self, name: &str) -> DocId {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.singleton_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(SINGLETON_DOMAIN);
        mac.update(name.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&tag[..16]);
        Bytes(id)
    }
}

impl ConstantTimeEq for AccountConstants {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.id_key.ct_eq(&other.id_key) & self.singleton_key.ct_eq(&other.singleton_key)
    }
}

impl PartialEq for AccountConstants {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for AccountConstants {}

impl fmt::Debug for AccountConstants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountConstants(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededRandom;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn debug_output_is_redacted() {
        let random = SeededRandom::new(1);
        let root = RootKey::generate(&random);
        let epoch = EpochKey::generate(3, &random);
        let device = DeviceKeys::generate(&random);
        let constants = AccountConstants::generate(&random);
        let secrets: Vec<Vec<u8>> = vec![
            root.expose_secret().to_vec(),
            epoch.expose_secret().to_vec(),
            device.to_secret_bytes()[16..].to_vec(),
            constants.id_key().to_vec(),
            constants.singleton_key().to_vec(),
        ];
        let debug = format!("{root:?} {epoch:?} {device:?} {constants:?}");
        assert!(debug.contains("RootKey(redacted)"), "{debug}");
        assert!(debug.contains("EpochKey(3, redacted)"), "{debug}");
        for secret in secrets {
            assert!(!debug.contains(&hex(&secret)), "{debug}");
            assert!(!debug.contains(&format!("{secret:?}")), "{debug}");
            // No 4-byte run of any secret in hex form either.
            assert!(!debug.contains(&hex(&secret[..4])), "{debug}");
        }
    }

    #[test]
    fn equality_is_by_value() {
        let random = SeededRandom::new(2);
        let root = RootKey::generate(&random);
        assert_eq!(root, RootKey::from_bytes(root.expose_secret()));
        assert_ne!(root, RootKey::generate(&random));
        let epoch = EpochKey::generate(1, &random);
        assert_ne!(epoch, EpochKey::from_bytes(2, epoch.expose_secret()));
    }

    #[test]
    fn derived_keys_are_distinct_and_pinned() {
        let root = RootKey::from_bytes(&[7; 32]);
        let derived = root.derived();
        assert_ne!(*derived.seal, *derived.epoch_wrap);
        assert_ne!(derived.signing.to_bytes(), *derived.seal);
        // Pinned so an accidental change of an info string or of the KDF is caught. The values were
        // computed independently (Python `cryptography` 48 / OpenSSL: HKDF-SHA256 with an empty
        // salt, Ed25519 public key of the derived seed).
        assert_eq!(
            hex(derived.seal.as_ref()),
            "3e0e63aa829300b322a243215bce897fc929a45745a4123f2d9485c988f73a8e"
        );
        assert_eq!(
            hex(derived.epoch_wrap.as_ref()),
            "bf7f7bb4ff1f434392c0a2009cbc4df40d7cdb8337c608d79f626fff910e7334"
        );
        assert_eq!(
            hex(&root.bundle_signing_public()),
            "da94cc933b6cb38aba87483c769f53d3685c423deaefac434f616ab4a962db7e"
        );
    }

    #[test]
    fn secrets_zeroise_on_drop() {
        fn assert_zeroize_on_drop<T: ZeroizeOnDrop>() {}
        assert_zeroize_on_drop::<RootKey>();
        assert_zeroize_on_drop::<Kek>();
        assert_zeroize_on_drop::<AuthSecret>();
        assert_zeroize_on_drop::<RecoveryAuth>();
        assert_zeroize_on_drop::<EpochKey>();
        assert_zeroize_on_drop::<DeviceKeys>();
        assert_zeroize_on_drop::<AccountConstants>();
        assert_zeroize_on_drop::<crate::crypto::RecoveryPhrase>();
        assert_zeroize_on_drop::<crate::crypto::RecoveryKeys>();
        // And zeroize() really clears (what drop calls).
        let mut root = RootKey::from_bytes(&[9; 32]);
        root.zeroize();
        assert_eq!(root.expose_secret(), &[0; 32]);
        let mut epoch = EpochKey::from_bytes(4, &[9; 32]);
        epoch.zeroize();
        assert_eq!((epoch.epoch(), epoch.expose_secret()), (0, &[0; 32]));
    }

    #[test]
    fn low_order_and_invalid_public_keys_are_refused() {
        let random = SeededRandom::new(5);
        let good = DeviceKeys::generate(&random).public_keys();
        let mut low_order = good;
        low_order.agreement = [0; 32];
        assert_eq!(low_order.validate(), Err(CryptoError::BadPublicKey));
        let mut order_two = good;
        order_two.agreement = [0; 32];
        order_two.agreement[0] = 1;
        assert_eq!(order_two.validate(), Err(CryptoError::BadPublicKey));
        // An Ed25519 encoding that is not a point (y = 2 has no x on the curve).
        let mut bad_signing = good;
        bad_signing.signing = [0; 32];
        bad_signing.signing[0] = 2;
        assert_eq!(bad_signing.validate(), Err(CryptoError::BadPublicKey));
    }

    #[test]
    fn device_keys_round_trip_through_secret_bytes() {
        let random = SeededRandom::new(3);
        let device = DeviceKeys::generate(&random);
        let restored = DeviceKeys::from_secret_bytes(&device.to_secret_bytes());
        assert_eq!(restored.public_keys(), device.public_keys());
        assert!(device.public_keys().validate().is_ok());
        assert_ne!(
            DeviceKeys::generate(&random).public_keys(),
            device.public_keys()
        );
    }

    #[test]
    fn singleton_ids_are_stable_and_separated() {
        let constants = AccountConstants::from_bytes(&[1; 32], &[2; 32]);
        let index = constants.singleton_doc_id("journal-index");
        assert_eq!(index, constants.singleton_doc_id("journal-index"));
        assert_ne!(index, constants.singleton_doc_id("saved-resources"));
        let other = AccountConstants::from_bytes(&[1; 32], &[3; 32]);
        assert_ne!(index, other.singleton_doc_id("journal-index"));
    }

    #[test]
    fn keyring_keeps_every_epoch() {
        let random = SeededRandom::new(4);
        let mut ring = EpochKeyring::new();
        assert!(ring.latest().is_none());
        ring.insert(EpochKey::generate(1, &random));
        ring.insert(EpochKey::generate(2, &random));
        assert_eq!(ring.latest().map(EpochKey::epoch), Some(2));
        assert!(ring.get(1).is_some());
        assert_eq!(ring.len(), 2);
        assert_eq!(format!("{ring:?}"), "EpochKeyring { epochs: [1, 2] }");
    }
}
