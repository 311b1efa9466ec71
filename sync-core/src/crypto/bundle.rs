//! The account key bundle (DESIGN.md §4): everything a device needs to read and write the private
//! space, sealed so that only the account can open it and signed so that nobody else can make one.
//!
//! # Two layers
//!
//! RK must be recoverable before anything else can be opened, so the bundle has a clear *wraps*
//! layer (RK under the password's KEK, RK sealed to the recovery key, RK sealed to each current
//! device) and an *inner* part sealed under the RK-derived bundle-seal key (epoch keys, device
//! list, recovery public key, account constants, signer chain). The whole blob is signed by the
//! RK-derived Ed25519 key.
//!
//! # Blob format 1 (all integers big-endian)
//!
//! ```text
//! format        u8 = 1
//! version       u64      ─┐ equal to KeyBundle.version / key_epoch and to the inner copies
//! key_epoch     u32      ─┘
//! password_wrap 72       RK under KEK (XChaCha20-Poly1305, AAD purpose "rk-password")
//! recovery_wrap 104      RK sealed to the recovery X25519 key (purpose "rk-recovery")
//! wrap_count    u16      ≤ 64, strictly ascending device ids
//!   device_id 16 ‖ sealed RK 104      (purpose "rk-device" ‖ device id)
//! inner_len     u32
//! inner         24-byte nonce ‖ XChaCha20-Poly1305(pad(inner plaintext)) under the bundle-seal
//!               key, AAD = "haven/v1/bundle-inner\0" ‖ format ‖ version ‖ key_epoch
//! signature     64       Ed25519 (bundle-sign key) over "haven/v1/bundle-signature\0" ‖ every
//!                        byte above
//! ```
//!
//! Inner plaintext (format 1), padded with the envelope padding so its size leaks little:
//!
//! ```text
//! format u8 = 1 ‖ version u64 ‖ key_epoch u32
//! id_key 32 ‖ singleton_key 32 ‖ recovery_public 32
//! epoch_count u16 (≤ 512, strictly ascending):  epoch u32 ‖ epoch key wrapped under the
//!                                                epoch-wrap key of the current RK (72)
//! device_count u16 (≤ 128, unique ids):  device_id 16 ‖ x25519 32 ‖ ed25519 32 ‖
//!                                        added_at_ms i64 ‖ revoked u8 (0|1) [‖ revoked_at_ms i64]
//!                                        ‖ name_len u8 (≤ 128) ‖ name (UTF-8)
//! signer_count u16 (≤ 512):  since_epoch u32 ‖ ed25519 public 32 ‖ endorsed u8 (0|1)
//!                            [‖ signature 64 by the previous signer over
//!                             "haven/v1/bundle-signer\0" ‖ since_epoch ‖ public]
//! ```
//!
//! # Why a signer chain
//!
//! Anyone who knows a device's X25519 public key can seal *some* root key to it. Signing with a
//! key derived from that same root key proves nothing about who made it, so a device that opens
//! a bundle with its own key also checks that the bundle's signer descends, by endorsements, from
//! the root key it already trusts. Each rotation appends the new signer, endorsed by the old.
//! (Password and recovery wraps cannot be forged without the KEK or the recovery public key,
//! which the server never sees.)
//!
//! # Versions
//!
//! Every change (`add_device`, `rotate`, `rewrap_password`, `set_recovery_key`) raises `version`
//! by one; `PUT /v1/keys` accepts exactly the stored version + 1, so upload after each change.
//! Opening refuses a version below `min_version`, the highest this device has accepted.

use std::collections::BTreeSet;
use std::fmt;

use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use haven_protocol::api::{KeyBundle, MAX_BUNDLE_BYTES};
use haven_protocol::{Blob, Bytes, DeviceId, padding};
use zeroize::Zeroizing;

use super::CryptoError;
use super::aead::{self, NONCE_LEN, TAG_LEN};
use super::codec::{Reader, put_count};
use super::keys::{
    AccountConstants, DeviceKeys, DevicePublicKeys, EpochKey, EpochKeyring, Kek, RootKey,
};
use super::recovery::RecoveryKeys;
use super::wrap::{KeyPurpose, SEALED_KEY_LEN, SealedKey, WRAPPED_KEY_LEN, WrappedKey};
use crate::env::{Random, random_array};

/// Format byte of the outer blob.
pub const BUNDLE_FORMAT: u8 = 1;
const INNER_FORMAT: u8 = 1;
/// At most this many devices hold a wrap (current devices).
pub const MAX_ACTIVE_DEVICES: usize = 64;
/// At most this many devices are listed, revoked ones included.
pub const MAX_LISTED_DEVICES: usize = 128;
/// At most this many key epochs (each rotation adds one) and signers.
pub const MAX_EPOCHS: usize = 512;
/// A device name is at most this many UTF-8 bytes.
pub const MAX_DEVICE_NAME_BYTES: usize = 128;

const SIGNATURE_DOMAIN: &[u8] = b"haven/v1/bundle-signature\0";
const INNER_DOMAIN: &[u8] = b"haven/v1/bundle-inner\0";
const SIGNER_DOMAIN: &[u8] = b"haven/v1/bundle-signer\0";
const SIGNATURE_LEN: usize = 64;

/// One device in the bundle's device list. Its public keys are certified by being in the signed
/// bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub keys: DevicePublicKeys,
    /// The name the user gave it; encrypted with the rest of the inner part.
    pub name: String,
    pub added_at_ms: i64,
    /// When it was revoked; a revoked device holds no wrap.
    pub revoked_at_ms: Option<i64>,
}

impl DeviceRecord {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at_ms.is_some()
    }
}

/// One link of the signer chain: the bundle-sign public key in use from `since_epoch`, endorsed by
/// the previous one (the first link, made at account creation, has no endorsement).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SignerLink {
    since_epoch: u32,
    public: [u8; 32],
    endorsement: Option<[u8; 64]>,
}

impl SignerLink {
    fn endorsed_bytes(since_epoch: u32, public: &[u8; 32]) -> Vec<u8> {
        let mut out = SIGNER_DOMAIN.to_vec();
        out.extend_from_slice(&since_epoch.to_be_bytes());
        out.extend_from_slice(public);
        out
    }
}

/// The opened (or new) contents of an account's key bundle.
#[derive(Clone)]
pub struct BundleContents {
    version: u64,
    key_epoch: u32,
    constants: AccountConstants,
    recovery_public: [u8; 32],
    epoch_keys: EpochKeyring,
    devices: Vec<DeviceRecord>,
    signers: Vec<SignerLink>,
    /// RK wrapped under the KEK. Kept as is: devices never hold the KEK, so they cannot re-make
    /// it; it changes only with the password (`rewrap_password`, `rotate`).
    password_wrap: WrappedKey,
}

impl fmt::Debug for BundleContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleContents")
            .field("version", &self.version)
            .field("key_epoch", &self.key_epoch)
            .field("epoch_keys", &self.epoch_keys)
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl BundleContents {
    /// The bundle of a new account: version 1, key epoch 1 (0 is the public space's), a fresh
    /// epoch key and fresh account constants, the first device, and RK wrapped under `kek`.
    pub fn create(
        rk: &RootKey,
        kek: &Kek,
        recovery_public: &[u8; 32],
        first_device: &DevicePublicKeys,
        device_name: &str,
        now_ms: i64,
        random: &dyn Random,
    ) -> Result<Self, CryptoError> {
        let epoch = 1;
        let mut epoch_keys = EpochKeyring::new();
        epoch_keys.insert(EpochKey::generate(epoch, random));
        let mut contents = Self {
            version: 1,
            key_epoch: epoch,
            constants: AccountConstants::generate(random),
            recovery_public: *recovery_public,
            epoch_keys,
            devices: Vec::new(),
            signers: vec![SignerLink {
                since_epoch: epoch,
                public: rk.bundle_signing_public(),
                endorsement: None,
            }],
            password_wrap: WrappedKey::wrap(
                kek.expose_secret(),
                rk.expose_secret(),
                KeyPurpose::RootKeyForPassword,
                random,
            ),
        };
        contents.push_device(first_device, device_name, now_ms)?;
        Ok(contents)
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn key_epoch(&self) -> u32 {
        self.key_epoch
    }

    pub fn constants(&self) -> &AccountConstants {
        &self.constants
    }

    /// Every epoch key, old and current.
    pub fn epoch_keys(&self) -> &EpochKeyring {
        &self.epoch_keys
    }

    /// The key new envelopes are sealed with.
    pub fn current_epoch_key(&self) -> Result<&EpochKey, CryptoError> {
        self.epoch_keys
            .get(self.key_epoch)
            .ok_or(CryptoError::UnknownEpoch(self.key_epoch))
    }

    pub fn recovery_public_key(&self) -> &[u8; 32] {
        &self.recovery_public
    }

    /// Every device ever added, revoked ones included, in the order they were added.
    pub fn devices(&self) -> &[DeviceRecord] {
        &self.devices
    }

    pub fn device(&self, device_id: &DeviceId) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.keys.device_id == *device_id)
    }

    /// Adds a device (after linking). Version + 1.
    pub fn add_device(
        &mut self,
        device: &DevicePublicKeys,
        name: &str,
        now_ms: i64,
    ) -> Result<(), CryptoError> {
        self.push_device(device, name, now_ms)?;
        self.bump_version()
    }

    fn push_device(
        &mut self,
        device: &DevicePublicKeys,
        name: &str,
        now_ms: i64,
    ) -> Result<(), CryptoError> {
        device.validate()?;
        if self.device(&device.device_id).is_some() {
            return Err(CryptoError::DuplicateDevice);
        }
        if name.len() > MAX_DEVICE_NAME_BYTES {
            return Err(CryptoError::TooLarge {
                what: "a device name",
                len: name.len(),
                max: MAX_DEVICE_NAME_BYTES,
            });
        }
        let active = self.devices.iter().filter(|d| !d.is_revoked()).count();
        if active >= MAX_ACTIVE_DEVICES {
            return Err(CryptoError::TooLarge {
                what: "the number of current devices",
                len: active + 1,
                max: MAX_ACTIVE_DEVICES,
            });
        }
        if self.devices.len() >= MAX_LISTED_DEVICES {
            return Err(CryptoError::TooLarge {
                what: "the device list (revoked devices included)",
                len: self.devices.len() + 1,
                max: MAX_LISTED_DEVICES,
            });
        }
        self.devices.push(DeviceRecord {
            keys: *device,
            name: name.to_owned(),
            added_at_ms: now_ms,
            revoked_at_ms: None,
        });
        Ok(())
    }

    /// Password change: RK re-wrapped under `new_kek`; nothing else changes. Version + 1.
    pub fn rewrap_password(
        &mut self,
        rk: &RootKey,
        new_kek: &Kek,
        random: &dyn Random,
    ) -> Result<(), CryptoError> {
        self.check_root_key(rk)?;
        self.password_wrap = WrappedKey::wrap(
            new_kek.expose_secret(),
            rk.expose_secret(),
            KeyPurpose::RootKeyForPassword,
            random,
        );
        self.bump_version()
    }

    /// A new recovery phrase: RK will be sealed to `recovery_public` from the next `seal`.
    /// Version + 1. If the old phrase may be known to someone else, `rotate` as well.
    pub fn set_recovery_key(&mut self, recovery_public: &[u8; 32]) -> Result<(), CryptoError> {
        self.recovery_public = *recovery_public;
        self.bump_version()
    }

    /// Revocation (a lost or taken phone): marks `revoke` revoked, moves to a new root key and a
    /// new epoch with a fresh epoch key, and wraps `new_rk` under `new_kek` (revocation sets a new
    /// password, since the phone's holder may know the old one). Every old epoch key is kept and,
    /// at the next [`seal`](Self::seal) with `new_rk`, wrapped under it; wraps are re-made there
    /// for the remaining devices and the recovery key. The new signer is endorsed by the current
    /// one. Version + 1, key epoch + 1.
    ///
    /// Old envelopes stay readable (their epoch keys are kept); the revoked device cannot open the
    /// new bundle, so it never learns the new epoch key.
    pub fn rotate(
        &mut self,
        current_rk: &RootKey,
        new_rk: &RootKey,
        new_kek: &Kek,
        revoke: &[DeviceId],
        now_ms: i64,
        random: &dyn Random,
    ) -> Result<(), CryptoError> {
        self.check_root_key(current_rk)?;
        if current_rk == new_rk {
            return Err(CryptoError::SameRootKey);
        }
        if self.signers.len() >= MAX_EPOCHS || self.epoch_keys.len() >= MAX_EPOCHS {
            return Err(CryptoError::TooLarge {
                what: "the number of key epochs",
                len: self.epoch_keys.len() + 1,
                max: MAX_EPOCHS,
            });
        }
        for device_id in revoke {
            if self.device(device_id).is_none() {
                return Err(CryptoError::UnknownDevice);
            }
        }
        let epoch = self
            .key_epoch
            .checked_add(1)
            .ok_or(CryptoError::EpochOverflow)?;
        // Everything fallible is done; now change state.
        for record in &mut self.devices {
            if revoke.contains(&record.keys.device_id) && record.revoked_at_ms.is_none() {
                record.revoked_at_ms = Some(now_ms);
            }
        }
        let new_public = new_rk.bundle_signing_public();
        let endorsement = current_rk
            .derived()
            .signing
            .sign(&SignerLink::endorsed_bytes(epoch, &new_public))
            .to_bytes();
        self.signers.push(SignerLink {
            since_epoch: epoch,
            public: new_public,
            endorsement: Some(endorsement),
        });
        self.epoch_keys.insert(EpochKey::generate(epoch, random));
        self.key_epoch = epoch;
        self.password_wrap = WrappedKey::wrap(
            new_kek.expose_secret(),
            new_rk.expose_secret(),
            KeyPurpose::RootKeyForPassword,
            random,
        );
        self.bump_version()
    }

    fn bump_version(&mut self) -> Result<(), CryptoError> {
        self.version = self
            .version
            .checked_add(1)
            .ok_or(CryptoError::Malformed("version overflow"))?;
        Ok(())
    }

    /// Refuses a root key that is not the current signer's (e.g. the pre-rotation one).
    fn check_root_key(&self, rk: &RootKey) -> Result<(), CryptoError> {
        match self.signers.last() {
            Some(link) if link.public == rk.bundle_signing_public() => Ok(()),
            _ => Err(CryptoError::WrongRootKey),
        }
    }

    /// Seals and signs the bundle under `rk` (the current root key): fresh wraps for the recovery
    /// key and every current device, the stored password wrap, every epoch key wrapped under
    /// `rk`, and the inner part encrypted and the whole signed.
    pub fn seal(&self, rk: &RootKey, random: &dyn Random) -> Result<KeyBundle, CryptoError> {
        self.check_root_key(rk)?;
        let derived = rk.derived();

        let inner_plain = self.encode_inner(&derived.epoch_wrap, random)?;
        let padded = Zeroizing::new(padding::pad(&inner_plain).ok_or(CryptoError::TooLarge {
            what: "the key bundle",
            len: inner_plain.len(),
            max: MAX_BUNDLE_BYTES,
        })?);
        let nonce = random_array::<NONCE_LEN>(random);
        let inner_ciphertext = aead::seal(
            &derived.seal,
            &nonce,
            &inner_associated_data(self.version, self.key_epoch),
            &padded,
        );

        let mut blob = Vec::with_capacity(inner_ciphertext.len() + 1024);
        blob.push(BUNDLE_FORMAT);
        blob.extend_from_slice(&self.version.to_be_bytes());
        blob.extend_from_slice(&self.key_epoch.to_be_bytes());
        blob.extend_from_slice(&self.password_wrap.to_bytes());
        let recovery_wrap = SealedKey::seal(
            &self.recovery_public,
            rk.expose_secret(),
            KeyPurpose::RootKeyForRecovery,
            random,
        )?;
        blob.extend_from_slice(&recovery_wrap.to_bytes());
        let mut active: Vec<&DeviceRecord> =
            self.devices.iter().filter(|d| !d.is_revoked()).collect();
        active.sort_by_key(|d| d.keys.device_id);
        put_count(&mut blob, active.len())?;
        for device in active {
            let id = device.keys.device_id;
            let wrap = SealedKey::seal(
                &device.keys.agreement,
                rk.expose_secret(),
                KeyPurpose::RootKeyForDevice(id),
                random,
            )?;
            blob.extend_from_slice(&id.0);
            blob.extend_from_slice(&wrap.to_bytes());
        }
        let inner_len = NONCE_LEN + inner_ciphertext.len();
        blob.extend_from_slice(
            &u32::try_from(inner_len)
                .map_err(|_| too_large(inner_len))?
                .to_be_bytes(),
        );
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&inner_ciphertext);
        let signature = derived.signing.sign(&signed_message(&blob));
        blob.extend_from_slice(&signature.to_bytes());
        if blob.len() > MAX_BUNDLE_BYTES {
            return Err(too_large(blob.len()));
        }
        Ok(KeyBundle {
            version: self.version,
            key_epoch: self.key_epoch,
            blob: Blob(blob),
        })
    }

    /// The inner plaintext. It holds the account constants in the clear, so it is built in a
    /// zeroising buffer sized up front: a growing `Vec` would leave copies in freed memory.
    fn encode_inner(
        &self,
        epoch_wrap_key: &[u8; 32],
        random: &dyn Random,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let capacity = 1
            + 8
            + 4
            + 3 * 32
            + 2
            + self.epoch_keys.len() * (4 + WRAPPED_KEY_LEN)
            + 2
            + self.devices.len() * (16 + 32 + 32 + 8 + 1 + 8 + 1 + MAX_DEVICE_NAME_BYTES)
            + 2
            + self.signers.len() * (4 + 32 + 1 + SIGNATURE_LEN);
        let mut out = Zeroizing::new(Vec::with_capacity(capacity));
        out.push(INNER_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.key_epoch.to_be_bytes());
        out.extend_from_slice(self.constants.id_key());
        out.extend_from_slice(self.constants.singleton_key());
        out.extend_from_slice(&self.recovery_public);
        put_count(&mut out, self.epoch_keys.len())?;
        for key in self.epoch_keys.iter() {
            let wrapped = WrappedKey::wrap(
                epoch_wrap_key,
                key.expose_secret(),
                KeyPurpose::EpochKey(key.epoch()),
                random,
            );
            out.extend_from_slice(&key.epoch().to_be_bytes());
            out.extend_from_slice(&wrapped.to_bytes());
        }
        put_count(&mut out, self.devices.len())?;
        for device in &self.devices {
            out.extend_from_slice(&device.keys.device_id.0);
            out.extend_from_slice(&device.keys.agreement);
            out.extend_from_slice(&device.keys.signing);
            out.extend_from_slice(&device.added_at_ms.to_be_bytes());
            match device.revoked_at_ms {
                Some(at) => {
                    out.push(1);
                    out.extend_from_slice(&at.to_be_bytes());
                }
                None => out.push(0),
            }
            let name_len = u8::try_from(device.name.len())
                .ok()
                .filter(|&len| usize::from(len) <= MAX_DEVICE_NAME_BYTES)
                .ok_or(CryptoError::TooLarge {
                    what: "a device name",
                    len: device.name.len(),
                    max: MAX_DEVICE_NAME_BYTES,
                })?;
            out.push(name_len);
            out.extend_from_slice(device.name.as_bytes());
        }
        put_count(&mut out, self.signers.len())?;
        for link in &self.signers {
            out.extend_from_slice(&link.since_epoch.to_be_bytes());
            out.extend_from_slice(&link.public);
            match &link.endorsement {
                Some(signature) => {
                    out.push(1);
                    out.extend_from_slice(signature);
                }
                None => out.push(0),
            }
        }
        Ok(out)
    }

    /// Opens a bundle with the password's KEK (login on a new device, or after a reset).
    pub fn open_with_password(
        bundle: &KeyBundle,
        kek: &Kek,
        min_version: u64,
    ) -> Result<(RootKey, Self), CryptoError> {
        open(bundle, min_version, |outer| {
            outer
                .password_wrap
                .unwrap_key(kek.expose_secret(), KeyPurpose::RootKeyForPassword)
        })
    }

    /// Opens a bundle with the recovery phrase's keys (`POST /v1/recovery`).
    pub fn open_with_recovery(
        bundle: &KeyBundle,
        recovery: &RecoveryKeys,
        min_version: u64,
    ) -> Result<(RootKey, Self), CryptoError> {
        let (rk, contents) = open(bundle, min_version, |outer| {
            outer
                .recovery_wrap
                .open(recovery.secret(), KeyPurpose::RootKeyForRecovery)
        })?;
        if contents.recovery_public != recovery.public_key() {
            return Err(CryptoError::Malformed(
                "the recovery key is not the listed one",
            ));
        }
        Ok((rk, contents))
    }

    /// Opens a bundle with this device's keys. `trusted_rk` is the root key this device holds
    /// (from linking, login or its last open): the bundle's signer must be it or descend from it
    /// by endorsements, so a server that knows this device's public key cannot slip it a root key
    /// of its own making.
    pub fn open_with_device(
        bundle: &KeyBundle,
        device: &DeviceKeys,
        trusted_rk: &RootKey,
        min_version: u64,
    ) -> Result<(RootKey, Self), CryptoError> {
        let device_id = device.device_id();
        let (rk, contents) = open(bundle, min_version, |outer| {
            let wrap = outer
                .device_wraps
                .iter()
                .find(|(id, _)| *id == device_id)
                .map(|(_, wrap)| wrap)
                .ok_or(CryptoError::NoWrapForDevice)?;
            wrap.open(
                device.agreement_secret(),
                KeyPurpose::RootKeyForDevice(device_id),
            )
        })?;
        let trusted = trusted_rk.bundle_signing_public();
        if !contents.signers.iter().any(|link| link.public == trusted) {
            return Err(CryptoError::UntrustedRootKey);
        }
        match contents.device(&device_id) {
            Some(record) if record.keys == device.public_keys() && !record.is_revoked() => {}
            _ => return Err(CryptoError::Malformed("this device's listed keys differ")),
        }
        Ok((rk, contents))
    }
}

fn too_large(len: usize) -> CryptoError {
    CryptoError::TooLarge {
        what: "the key bundle",
        len,
        max: MAX_BUNDLE_BYTES,
    }
}

fn signed_message(unsigned_blob: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len() + unsigned_blob.len());
    message.extend_from_slice(SIGNATURE_DOMAIN);
    message.extend_from_slice(unsigned_blob);
    message
}

fn inner_associated_data(version: u64, key_epoch: u32) -> Vec<u8> {
    let mut out = INNER_DOMAIN.to_vec();
    out.push(BUNDLE_FORMAT);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&key_epoch.to_be_bytes());
    out
}

/// The parsed clear layer of a blob.
struct OuterBundle<'a> {
    version: u64,
    key_epoch: u32,
    password_wrap: WrappedKey,
    recovery_wrap: SealedKey,
    device_wraps: Vec<(DeviceId, SealedKey)>,
    inner_nonce: [u8; NONCE_LEN],
    inner_ciphertext: &'a [u8],
    /// Every byte the signature covers (all but the signature).
    unsigned: &'a [u8],
    signature: [u8; SIGNATURE_LEN],
}

fn parse_outer(blob: &[u8]) -> Result<OuterBundle<'_>, CryptoError> {
    if blob.len() > MAX_BUNDLE_BYTES {
        return Err(too_large(blob.len()));
    }
    let split = blob
        .len()
        .checked_sub(SIGNATURE_LEN)
        .ok_or(CryptoError::Malformed("truncated"))?;
    let (unsigned, signature) = blob.split_at(split);
    let signature: [u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| CryptoError::Malformed("truncated"))?;
    let mut reader = Reader::new(unsigned);
    let format = reader.u8()?;
    if format != BUNDLE_FORMAT {
        return Err(CryptoError::UnknownFormat(format));
    }
    let version = reader.u64()?;
    let key_epoch = reader.u32()?;
    let password_wrap = WrappedKey::from_bytes(reader.array::<WRAPPED_KEY_LEN>()?);
    let recovery_wrap = SealedKey::from_bytes(reader.array::<SEALED_KEY_LEN>()?);
    let wrap_count = reader.count(MAX_ACTIVE_DEVICES, 16 + SEALED_KEY_LEN)?;
    let mut device_wraps: Vec<(DeviceId, SealedKey)> = Vec::with_capacity(wrap_count);
    for _ in 0..wrap_count {
        let id = Bytes(reader.array::<16>()?);
        if device_wraps.last().is_some_and(|(last, _)| *last >= id) {
            return Err(CryptoError::Malformed("device wraps out of order"));
        }
        device_wraps.push((id, SealedKey::from_bytes(reader.array::<SEALED_KEY_LEN>()?)));
    }
    let inner_len = usize::try_from(reader.u32()?)
        .map_err(|_| CryptoError::Malformed("inner part too long"))?;
    if inner_len < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("inner part too short"));
    }
    let inner = reader.bytes(inner_len)?;
    reader.finish()?;
    let (inner_nonce, inner_ciphertext) = inner
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(CryptoError::Malformed("truncated"))?;
    debug_assert_eq!(unsigned.len() + SIGNATURE_LEN, blob.len());
    Ok(OuterBundle {
        version,
        key_epoch,
        password_wrap,
        recovery_wrap,
        device_wraps,
        inner_nonce: *inner_nonce,
        inner_ciphertext,
        unsigned,
        signature,
    })
}

/// The shared path of every `open_with_*`: parse, unwrap RK with the caller's key, verify the
/// signature, decrypt and parse the inner part, and check that every copy of version and epoch
/// agrees and that the bundle is consistent.
fn open(
    bundle: &KeyBundle,
    min_version: u64,
    unwrap_root: impl FnOnce(&OuterBundle<'_>) -> Result<Zeroizing<[u8; 32]>, CryptoError>,
) -> Result<(RootKey, BundleContents), CryptoError> {
    if bundle.version < min_version {
        return Err(CryptoError::Rollback {
            found: bundle.version,
            min_version,
        });
    }
    let outer = parse_outer(&bundle.blob.0)?;
    if outer.version != bundle.version || outer.key_epoch != bundle.key_epoch {
        return Err(CryptoError::BundleMismatch);
    }
    let rk = RootKey::from_bytes(&*unwrap_root(&outer)?);
    let derived = rk.derived();

    // The signature is checked before anything inside is trusted. A wrap that opens under a
    // wrong key (AEAD is not key-committing) yields an RK whose signing key cannot verify it.
    let verifying = derived.signing.verifying_key();
    verifying
        .verify_strict(
            &signed_message(outer.unsigned),
            &Signature::from_bytes(&outer.signature),
        )
        .map_err(|_| CryptoError::BadSignature)?;

    let padded = aead::open(
        &derived.seal,
        &outer.inner_nonce,
        &inner_associated_data(outer.version, outer.key_epoch),
        outer.inner_ciphertext,
    )
    .ok_or(CryptoError::Decrypt)?;
    let inner = padding::unpad(&padded).ok_or(CryptoError::Malformed("inner padding"))?;
    let contents = decode_inner(inner, &derived.epoch_wrap, outer.password_wrap.clone())?;

    if contents.version != outer.version || contents.key_epoch != outer.key_epoch {
        return Err(CryptoError::BundleMismatch);
    }
    verify_signer_chain(&contents.signers, &verifying.to_bytes(), contents.key_epoch)?;
    let active: BTreeSet<DeviceId> = contents
        .devices
        .iter()
        .filter(|d| !d.is_revoked())
        .map(|d| d.keys.device_id)
        .collect();
    let wrapped: BTreeSet<DeviceId> = outer.device_wraps.iter().map(|(id, _)| *id).collect();
    if active != wrapped {
        return Err(CryptoError::Malformed(
            "device wraps do not match the device list",
        ));
    }
    Ok((rk, contents))
}

/// The chain starts unendorsed, each later link is endorsed by the one before, epochs rise, the
/// last signer is the key that signed this bundle, and it took over no later than `key_epoch`.
fn verify_signer_chain(
    signers: &[SignerLink],
    bundle_signer: &[u8; 32],
    key_epoch: u32,
) -> Result<(), CryptoError> {
    let (first, rest) = signers
        .split_first()
        .ok_or(CryptoError::Malformed("no signer"))?;
    if first.endorsement.is_some() {
        return Err(CryptoError::Malformed("the first signer is endorsed"));
    }
    let mut previous = first;
    for link in rest {
        let endorsement = link
            .endorsement
            .ok_or(CryptoError::Malformed("an unendorsed signer"))?;
        if link.since_epoch <= previous.since_epoch {
            return Err(CryptoError::Malformed("signer epochs out of order"));
        }
        VerifyingKey::from_bytes(&previous.public)
            .and_then(|key| {
                key.verify_strict(
                    &SignerLink::endorsed_bytes(link.since_epoch, &link.public),
                    &Signature::from_bytes(&endorsement),
                )
            })
            .map_err(|_| CryptoError::BadSignature)?;
        previous = link;
    }
    if previous.public != *bundle_signer || previous.since_epoch > key_epoch {
        return Err(CryptoError::BadSignature);
    }
    Ok(())
}

fn decode_inner(
    bytes: &[u8],
    epoch_wrap_key: &[u8; 32],
    password_wrap: WrappedKey,
) -> Result<BundleContents, CryptoError> {
    let mut reader = Reader::new(bytes);
    let format = reader.u8()?;
    if format != INNER_FORMAT {
        return Err(CryptoError::UnknownFormat(format));
    }
    let version = reader.u64()?;
    let key_epoch = reader.u32()?;
    let id_key = Zeroizing::new(reader.array::<32>()?);
    let singleton_key = Zeroizing::new(reader.array::<32>()?);
    let constants = AccountConstants::from_bytes(&id_key, &singleton_key);
    let recovery_public = reader.array::<32>()?;

    let epoch_count = reader.count(MAX_EPOCHS, 4 + WRAPPED_KEY_LEN)?;
    let mut epoch_keys = EpochKeyring::new();
    let mut last_epoch = None;
    for _ in 0..epoch_count {
        let epoch = reader.u32()?;
        if last_epoch.is_some_and(|last| last >= epoch) || epoch > key_epoch {
            return Err(CryptoError::Malformed("epoch keys out of order"));
        }
        last_epoch = Some(epoch);
        let key = WrappedKey::from_bytes(reader.array::<WRAPPED_KEY_LEN>()?)
            .unwrap_key(epoch_wrap_key, KeyPurpose::EpochKey(epoch))?;
        epoch_keys.insert(EpochKey::from_bytes(epoch, &key));
    }
    if epoch_keys.get(key_epoch).is_none() {
        return Err(CryptoError::Malformed("no key for the current epoch"));
    }

    let device_count = reader.count(MAX_LISTED_DEVICES, 16 + 32 + 32 + 8 + 1 + 1)?;
    let mut devices: Vec<DeviceRecord> = Vec::with_capacity(device_count);
    for _ in 0..device_count {
        let keys = DevicePublicKeys {
            device_id: Bytes(reader.array::<16>()?),
            agreement: reader.array::<32>()?,
            signing: reader.array::<32>()?,
        };
        keys.validate()
            .map_err(|_| CryptoError::Malformed("a device's signing key is invalid"))?;
        if devices.iter().any(|d| d.keys.device_id == keys.device_id) {
            return Err(CryptoError::Malformed("a device is listed twice"));
        }
        let added_at_ms = reader.i64()?;
        let revoked_at_ms = match reader.u8()? {
            0 => None,
            1 => Some(reader.i64()?),
            _ => return Err(CryptoError::Malformed("bad revoked flag")),
        };
        let name_len = usize::from(reader.u8()?);
        if name_len > MAX_DEVICE_NAME_BYTES {
            return Err(CryptoError::Malformed("device name too long"));
        }
        let name = std::str::from_utf8(reader.bytes(name_len)?)
            .map_err(|_| CryptoError::Malformed("device name is not UTF-8"))?
            .to_owned();
        devices.push(DeviceRecord {
            keys,
            name,
            added_at_ms,
            revoked_at_ms,
        });
    }
    if devices.iter().filter(|d| !d.is_revoked()).count() > MAX_ACTIVE_DEVICES {
        return Err(CryptoError::Malformed("too many current devices"));
    }

    let signer_count = reader.count(MAX_EPOCHS, 4 + 32 + 1)?;
    let mut signers = Vec::with_capacity(signer_count);
    for _ in 0..signer_count {
        let since_epoch = reader.u32()?;
        let public = reader.array::<32>()?;
        let endorsement = match reader.u8()? {
            0 => None,
            1 => Some(reader.array::<64>()?),
            _ => return Err(CryptoError::Malformed("bad endorsement flag")),
        };
        signers.push(SignerLink {
            since_epoch,
            public,
            endorsement,
        });
    }
    reader.finish()?;
    Ok(BundleContents {
        version,
        key_epoch,
        constants,
        recovery_public,
        epoch_keys,
        devices,
        signers,
        password_wrap,
    })
}

#[cfg(test)]
mod tests;
