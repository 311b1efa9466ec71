use proptest::prelude::*;

use super::*;
use crate::crypto::envelope::{PrivateHeader, open_private, seal_private};
use crate::crypto::recovery::RecoveryPhrase;
use crate::env::SeededRandom;
use haven_protocol::{HexId, Kind, SpaceId};

const NOW: i64 = 1_750_000_000_000;

fn new_kek(random: &dyn Random) -> Kek {
    Kek::from_bytes(&random_array::<32>(random))
}

/// A new account with one device ("phone"), as registration makes it.
struct Account {
    random: SeededRandom,
    rk: RootKey,
    kek: Kek,
    recovery: RecoveryKeys,
    phone: DeviceKeys,
    contents: BundleContents,
}

impl Account {
    fn new(seed: u64) -> Self {
        let random = SeededRandom::new(seed);
        let rk = RootKey::generate(&random);
        let kek = new_kek(&random);
        let recovery = RecoveryKeys::derive(&RecoveryPhrase::generate(&random));
        let phone = DeviceKeys::generate(&random);
        let contents = BundleContents::create(
            &rk,
            &kek,
            &recovery.public_key(),
            &phone.public_keys(),
            "phone",
            NOW,
            &random,
        )
        .unwrap();
        Self {
            random,
            rk,
            kek,
            recovery,
            phone,
            contents,
        }
    }

    fn seal(&self) -> KeyBundle {
        self.contents.seal(&self.rk, &self.random).unwrap()
    }

    /// Adds a second device ("laptop") and returns its keys.
    fn add_laptop(&mut self) -> DeviceKeys {
        let laptop = DeviceKeys::generate(&self.random);
        self.contents
            .add_device(&laptop.public_keys(), "laptop", NOW + 1)
            .unwrap();
        laptop
    }
}

/// Compares everything observable of two opened bundles.
fn assert_same_contents(a: &BundleContents, b: &BundleContents) {
    assert_eq!(a.version(), b.version());
    assert_eq!(a.key_epoch(), b.key_epoch());
    assert_eq!(a.constants(), b.constants());
    assert_eq!(a.epoch_keys(), b.epoch_keys());
    assert_eq!(a.devices(), b.devices());
    assert_eq!(a.recovery_public_key(), b.recovery_public_key());
    assert_eq!(a.signers, b.signers);
    assert_eq!(a.password_wrap, b.password_wrap);
}

#[test]
fn new_bundle_opens_by_password_recovery_and_device() {
    let account = Account::new(100);
    let bundle = account.seal();
    assert_eq!((bundle.version, bundle.key_epoch), (1, 1));
    assert_eq!(bundle.blob.0[0], BUNDLE_FORMAT);

    let (rk, by_password) = BundleContents::open_with_password(&bundle, &account.kek, 1).unwrap();
    assert_eq!(rk, account.rk);
    assert_same_contents(&by_password, &account.contents);

    let (rk, by_recovery) =
        BundleContents::open_with_recovery(&bundle, &account.recovery, 0).unwrap();
    assert_eq!(rk, account.rk);
    assert_same_contents(&by_recovery, &account.contents);

    let (rk, by_device) =
        BundleContents::open_with_device(&bundle, &account.phone, &account.rk, 1).unwrap();
    assert_eq!(rk, account.rk);
    assert_same_contents(&by_device, &account.contents);

    let device = &by_device.devices()[0];
    assert_eq!(device.name, "phone");
    assert_eq!(device.keys, account.phone.public_keys());
    assert_eq!(device.added_at_ms, NOW);
    assert!(!device.is_revoked());
    assert_eq!(by_device.current_epoch_key().unwrap().epoch(), 1);
}

#[cfg(feature = "insecure-fast-kdf")]
#[test]
fn registration_and_login_from_a_password() {
    use crate::crypto::password::{derive_password_keys, new_kdf_params};
    let random = SeededRandom::new(101);
    let kdf = haven_protocol::api::KdfParams {
        m_kib: 8,
        t: 1,
        ..new_kdf_params(&random)
    };
    let at_registration = derive_password_keys("a long and private passphrase", &kdf).unwrap();
    let rk = RootKey::generate(&random);
    let phone = DeviceKeys::generate(&random);
    let recovery = RecoveryKeys::derive(&RecoveryPhrase::generate(&random));
    let bundle = BundleContents::create(
        &rk,
        &at_registration.kek,
        &recovery.public_key(),
        &phone.public_keys(),
        "phone",
        NOW,
        &random,
    )
    .unwrap()
    .seal(&rk, &random)
    .unwrap();
    let at_login = derive_password_keys("a long and private passphrase", &kdf).unwrap();
    let (opened, _) = BundleContents::open_with_password(&bundle, &at_login.kek, 0).unwrap();
    assert_eq!(opened, rk);
    let wrong = derive_password_keys("a long and private passphrasE", &kdf).unwrap();
    assert_eq!(
        BundleContents::open_with_password(&bundle, &wrong.kek, 0).unwrap_err(),
        CryptoError::UnwrapFailed
    );
}

#[test]
fn wrong_password_phrase_or_device_fails() {
    let account = Account::new(102);
    let bundle = account.seal();
    let random = SeededRandom::new(1102);

    assert_eq!(
        BundleContents::open_with_password(&bundle, &new_kek(&random), 0).unwrap_err(),
        CryptoError::UnwrapFailed
    );
    let other_phrase = RecoveryKeys::derive(&RecoveryPhrase::generate(&random));
    assert_eq!(
        BundleContents::open_with_recovery(&bundle, &other_phrase, 0).unwrap_err(),
        CryptoError::UnwrapFailed
    );
    let stranger = DeviceKeys::generate(&random);
    assert_eq!(
        BundleContents::open_with_device(&bundle, &stranger, &account.rk, 0).unwrap_err(),
        CryptoError::NoWrapForDevice
    );
    // Same device id, different X25519 key.
    let mut secret = *account.phone.to_secret_bytes();
    secret[20] ^= 1;
    let impostor = DeviceKeys::from_secret_bytes(&secret);
    assert_eq!(
        BundleContents::open_with_device(&bundle, &impostor, &account.rk, 0).unwrap_err(),
        CryptoError::UnwrapFailed
    );
}

#[test]
fn every_flipped_bit_truncation_or_extension_is_refused() {
    let account = Account::new(103);
    let bundle = account.seal();
    let blob = &bundle.blob.0;
    for index in 0..blob.len() {
        for bit in [0x01u8, 0x80] {
            let mut tampered = bundle.clone();
            tampered.blob.0[index] ^= bit;
            assert!(
                BundleContents::open_with_password(&tampered, &account.kek, 0).is_err(),
                "byte {index} bit {bit:#x}"
            );
        }
    }
    // Through the device path too, on a sample of bytes (each open costs a key agreement).
    for index in (0..blob.len()).step_by(7) {
        let mut tampered = bundle.clone();
        tampered.blob.0[index] ^= 0x10;
        assert!(
            BundleContents::open_with_device(&tampered, &account.phone, &account.rk, 0).is_err(),
            "byte {index}"
        );
        assert!(
            BundleContents::open_with_recovery(&tampered, &account.recovery, 0).is_err(),
            "byte {index}"
        );
    }
    for len in 0..blob.len() {
        let mut truncated = bundle.clone();
        truncated.blob.0.truncate(len);
        assert!(BundleContents::open_with_password(&truncated, &account.kek, 0).is_err());
    }
    let mut extended = bundle.clone();
    extended.blob.0.push(0);
    assert!(BundleContents::open_with_password(&extended, &account.kek, 0).is_err());
    let mut unknown = bundle;
    unknown.blob.0[0] = 2;
    assert_eq!(
        BundleContents::open_with_password(&unknown, &account.kek, 0).unwrap_err(),
        CryptoError::UnknownFormat(2)
    );
}

#[test]
fn version_rollback_and_outer_mismatch_are_refused() {
    let mut account = Account::new(104);
    let first = account.seal();
    account.add_laptop();
    let second = account.seal();
    assert_eq!(second.version, 2);
    let (_, opened) = BundleContents::open_with_password(&second, &account.kek, 2).unwrap();
    assert_eq!(opened.version(), 2);
    // This device has accepted version 2; the server replays version 1.
    assert_eq!(
        BundleContents::open_with_password(&first, &account.kek, 2).unwrap_err(),
        CryptoError::Rollback {
            found: 1,
            min_version: 2
        }
    );
    assert!(matches!(
        BundleContents::open_with_device(&first, &account.phone, &account.rk, 2),
        Err(CryptoError::Rollback { .. })
    ));
    // The server relabels the old blob as version 2 (or changes the epoch): the signed copy differs.
    for relabelled in [
        KeyBundle {
            version: 2,
            ..first
        },
        KeyBundle {
            key_epoch: 2,
            ..second
        },
    ] {
        assert_eq!(
            BundleContents::open_with_password(&relabelled, &account.kek, 0).unwrap_err(),
            CryptoError::BundleMismatch
        );
    }
}

#[test]
fn add_device_lets_the_new_device_open() {
    let mut account = Account::new(105);
    let laptop = account.add_laptop();
    assert_eq!(account.contents.version(), 2);
    assert_eq!(
        account
            .contents
            .add_device(&laptop.public_keys(), "again", NOW),
        Err(CryptoError::DuplicateDevice)
    );
    let too_long = "x".repeat(MAX_DEVICE_NAME_BYTES + 1);
    let tablet = DeviceKeys::generate(&account.random);
    assert!(matches!(
        account
            .contents
            .add_device(&tablet.public_keys(), &too_long, NOW),
        Err(CryptoError::TooLarge { .. })
    ));
    let bundle = account.seal();
    let (rk, contents) =
        BundleContents::open_with_device(&bundle, &laptop, &account.rk, 2).unwrap();
    assert_eq!(rk, account.rk);
    assert_eq!(contents.devices().len(), 2);
    assert_eq!(contents.device(&laptop.device_id()).unwrap().name, "laptop");
}

#[test]
fn rotation_revokes_a_device_and_keeps_history_readable() {
    let mut account = Account::new(106);
    let laptop = account.add_laptop();
    let space = SpaceId::Private(HexId([4; 16]));
    let before = account.seal();

    // An envelope sealed under epoch 1, before the revocation.
    let old_envelope = seal_private(
        account.contents.current_epoch_key().unwrap(),
        &space,
        PrivateHeader {
            id: Bytes([1; 32]),
            doc: Bytes([2; 16]),
            kind: Kind::Change,
            device: account.phone.device_id(),
            ctr: 1,
            covers: None,
            upto_seq: None,
        },
        b"written before the laptop was lost",
        &account.random,
    )
    .unwrap();

    // The laptop is lost; the phone revokes it and sets a new password.
    let new_rk = RootKey::generate(&account.random);
    let new_kek = new_kek(&account.random);
    account
        .contents
        .rotate(
            &account.rk,
            &new_rk,
            &new_kek,
            &[laptop.device_id()],
            NOW + 5,
            &account.random,
        )
        .unwrap();
    assert_eq!(account.contents.version(), before.version + 1);
    assert_eq!(account.contents.key_epoch(), 2);
    // Sealing under the old root key is refused.
    assert_eq!(
        account
            .contents
            .seal(&account.rk, &account.random)
            .unwrap_err(),
        CryptoError::WrongRootKey
    );
    let after = account.contents.seal(&new_rk, &account.random).unwrap();
    assert_eq!((after.version, after.key_epoch), (3, 2));

    // The phone, which trusted the old root key, follows the endorsed rotation.
    let (rk, by_phone) =
        BundleContents::open_with_device(&after, &account.phone, &account.rk, 3).unwrap();
    assert_eq!(rk, new_rk);
    assert_eq!(by_phone.epoch_keys().len(), 2);
    assert_ne!(
        by_phone.epoch_keys().get(1).unwrap(),
        by_phone.epoch_keys().get(2).unwrap()
    );
    let record = by_phone.device(&laptop.device_id()).unwrap();
    assert_eq!(record.revoked_at_ms, Some(NOW + 5));
    // Old envelopes still open with the keys of the new bundle.
    assert_eq!(
        &open_private(by_phone.epoch_keys(), &space, &old_envelope).unwrap()[..],
        b"written before the laptop was lost"
    );
    // It also opens with the new root key as the trusted one.
    assert!(BundleContents::open_with_device(&after, &account.phone, &new_rk, 3).is_ok());

    // The revoked laptop cannot open the new bundle, with any of what it held.
    assert_eq!(
        BundleContents::open_with_device(&after, &laptop, &account.rk, 0).unwrap_err(),
        CryptoError::NoWrapForDevice
    );
    assert_eq!(
        BundleContents::open_with_password(&after, &account.kek, 0).unwrap_err(),
        CryptoError::UnwrapFailed
    );
    // The new password and the recovery phrase open it.
    let (rk, _) = BundleContents::open_with_password(&after, &new_kek, 0).unwrap();
    assert_eq!(rk, new_rk);
    let (rk, by_recovery) =
        BundleContents::open_with_recovery(&after, &account.recovery, 0).unwrap();
    assert_eq!(rk, new_rk);
    assert_same_contents(&by_recovery, &by_phone);

    // A second rotation: the chain of endorsements reaches back to the first root key.
    let newest_rk = RootKey::generate(&account.random);
    account
        .contents
        .rotate(&new_rk, &newest_rk, &new_kek, &[], NOW + 6, &account.random)
        .unwrap();
    let third = account.contents.seal(&newest_rk, &account.random).unwrap();
    let (rk, contents) =
        BundleContents::open_with_device(&third, &account.phone, &account.rk, 3).unwrap();
    assert_eq!(rk, newest_rk);
    assert_eq!(contents.epoch_keys().len(), 3);
    assert_eq!(
        &open_private(contents.epoch_keys(), &space, &old_envelope).unwrap()[..],
        b"written before the laptop was lost"
    );
}

#[test]
fn rotation_guards() {
    let mut account = Account::new(107);
    let other = RootKey::generate(&account.random);
    let kek = new_kek(&account.random);
    assert_eq!(
        account
            .contents
            .rotate(&other, &other, &kek, &[], NOW, &account.random),
        Err(CryptoError::WrongRootKey)
    );
    let rk = account.rk.clone();
    assert_eq!(
        account
            .contents
            .rotate(&rk, &rk, &kek, &[], NOW, &account.random),
        Err(CryptoError::SameRootKey)
    );
    assert_eq!(
        account
            .contents
            .rotate(&rk, &other, &kek, &[Bytes([9; 16])], NOW, &account.random),
        Err(CryptoError::UnknownDevice)
    );
    // Nothing changed on failure.
    assert_eq!(
        (account.contents.version(), account.contents.key_epoch()),
        (1, 1)
    );
}

#[test]
fn a_root_key_not_descended_from_the_trusted_one_is_refused() {
    // The server knows the phone's public key and seals a root key of its own making to it,
    // in a bundle signed by that root key.
    let account = Account::new(108);
    let random = SeededRandom::new(1108);
    let forged_rk = RootKey::generate(&random);
    let forged = BundleContents::create(
        &forged_rk,
        &new_kek(&random),
        &account.recovery.public_key(),
        &account.phone.public_keys(),
        "phone",
        NOW,
        &random,
    )
    .unwrap();
    let mut forged = forged;
    forged.version = 7;
    let forged_bundle = forged.seal(&forged_rk, &random).unwrap();
    assert_eq!(
        BundleContents::open_with_device(&forged_bundle, &account.phone, &account.rk, 1)
            .unwrap_err(),
        CryptoError::UntrustedRootKey
    );
    // A forged "rotation" endorsed by a key the phone does not trust fails the same way.
    let mut chained = forged;
    let next = RootKey::generate(&random);
    chained
        .rotate(&forged_rk, &next, &new_kek(&random), &[], NOW, &random)
        .unwrap();
    let chained_bundle = chained.seal(&next, &random).unwrap();
    assert_eq!(
        BundleContents::open_with_device(&chained_bundle, &account.phone, &account.rk, 1)
            .unwrap_err(),
        CryptoError::UntrustedRootKey
    );
}

#[test]
fn rewrap_password_changes_only_the_password_wrap() {
    let mut account = Account::new(109);
    let before = account.seal();
    let new_kek = new_kek(&account.random);
    assert_eq!(
        account.contents.rewrap_password(
            &RootKey::generate(&account.random),
            &new_kek,
            &account.random
        ),
        Err(CryptoError::WrongRootKey)
    );
    account
        .contents
        .rewrap_password(&account.rk, &new_kek, &account.random)
        .unwrap();
    let after = account.seal();
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.key_epoch, before.key_epoch);
    assert_eq!(
        BundleContents::open_with_password(&after, &account.kek, 0).unwrap_err(),
        CryptoError::UnwrapFailed
    );
    let (rk, contents) = BundleContents::open_with_password(&after, &new_kek, 2).unwrap();
    assert_eq!(rk, account.rk);
    let (_, old) = BundleContents::open_with_password(&before, &account.kek, 1).unwrap();
    assert_eq!(contents.epoch_keys(), old.epoch_keys());
    assert_eq!(contents.constants(), old.constants());
    assert_eq!(contents.devices(), old.devices());
    // Devices are unaffected.
    assert!(BundleContents::open_with_device(&after, &account.phone, &account.rk, 2).is_ok());
}

#[test]
fn a_new_recovery_key_replaces_the_old_one() {
    let mut account = Account::new(110);
    let fresh = RecoveryKeys::derive(&RecoveryPhrase::generate(&account.random));
    account
        .contents
        .set_recovery_key(&fresh.public_key())
        .unwrap();
    let bundle = account.seal();
    assert!(BundleContents::open_with_recovery(&bundle, &fresh, 2).is_ok());
    assert_eq!(
        BundleContents::open_with_recovery(&bundle, &account.recovery, 2).unwrap_err(),
        CryptoError::UnwrapFailed
    );
}

#[test]
fn the_largest_bundle_fits_the_protocol_limit() {
    let mut account = Account::new(111);
    let long_name = "é".repeat(MAX_DEVICE_NAME_BYTES / 2);
    let mut rk = account.rk.clone();
    let kek = account.kek.clone();
    let mut added_at = NOW;
    // Fill the list: 64 devices revoked over two rotations, then 64 current ones (the phone
    // and 63 more).
    for batch in [MAX_ACTIVE_DEVICES - 1, 1, MAX_ACTIVE_DEVICES - 1] {
        let mut batch_ids = Vec::new();
        for _ in 0..batch {
            let device = DeviceKeys::generate(&account.random);
            added_at += 1;
            account
                .contents
                .add_device(&device.public_keys(), &long_name, added_at)
                .unwrap();
            batch_ids.push(device.device_id());
        }
        if account.contents.devices().len() < MAX_LISTED_DEVICES {
            let next = RootKey::generate(&account.random);
            account
                .contents
                .rotate(&rk, &next, &kek, &batch_ids, added_at, &account.random)
                .unwrap();
            rk = next;
        }
    }
    assert_eq!(account.contents.devices().len(), MAX_LISTED_DEVICES);
    let extra = DeviceKeys::generate(&account.random);
    assert!(matches!(
        account
            .contents
            .add_device(&extra.public_keys(), "one more", NOW),
        Err(CryptoError::TooLarge { .. })
    ));
    while account.contents.epoch_keys().len() < MAX_EPOCHS {
        let next = RootKey::generate(&account.random);
        account
            .contents
            .rotate(&rk, &next, &kek, &[], NOW, &account.random)
            .unwrap();
        rk = next;
    }
    let bundle = account.contents.seal(&rk, &account.random).unwrap();
    assert!(
        bundle.blob.len() <= MAX_BUNDLE_BYTES,
        "{}",
        bundle.blob.len()
    );
    let (_, opened) = BundleContents::open_with_password(&bundle, &kek, 0).unwrap();
    assert_eq!(opened.epoch_keys().len(), MAX_EPOCHS);
    assert_eq!(opened.devices().len(), MAX_LISTED_DEVICES);
    assert_eq!(
        opened.devices().iter().filter(|d| !d.is_revoked()).count(),
        MAX_ACTIVE_DEVICES
    );
    let next = RootKey::generate(&account.random);
    assert!(matches!(
        account
            .contents
            .rotate(&rk, &next, &kek, &[], NOW, &account.random),
        Err(CryptoError::TooLarge { .. })
    ));
}

#[test]
fn inner_decoder_refuses_inconsistent_contents() {
    let account = Account::new(112);
    let derived = account.rk.derived();
    let good = account
        .contents
        .encode_inner(&derived.epoch_wrap, &account.random)
        .unwrap();
    let wrap = account.contents.password_wrap.clone();
    let decoded = decode_inner(&good, &derived.epoch_wrap, wrap.clone()).unwrap();
    assert_same_contents(&decoded, &account.contents);

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        decode_inner(&trailing, &derived.epoch_wrap, wrap.clone()).unwrap_err(),
        CryptoError::Malformed("trailing bytes")
    );
    // The first device's revoked flag sits after its id, keys and added_at.
    let flag_at = 1 + 8 + 4 + 96 + 2 + (4 + WRAPPED_KEY_LEN) + 2 + 16 + 32 + 32 + 8;
    assert_eq!(good[flag_at], 0);
    let mut bad_flag = good.clone();
    bad_flag[flag_at] = 2;
    assert!(decode_inner(&bad_flag, &derived.epoch_wrap, wrap.clone()).is_err());
    // Epoch keys unwrap only under the epoch-wrap key of the right root key.
    let other = RootKey::generate(&account.random).derived();
    assert_eq!(
        decode_inner(&good, &other.epoch_wrap, wrap).unwrap_err(),
        CryptoError::UnwrapFailed
    );
}

#[test]
fn debug_shows_no_secrets() {
    let account = Account::new(113);
    let debug = format!("{:?}", account.contents);
    let key = account.contents.current_epoch_key().unwrap();
    let hex: String = key.expose_secret()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!debug.contains(&hex), "{debug}");
    assert!(
        !debug.contains("phone"),
        "device names stay out of logs: {debug}"
    );
    assert!(debug.contains("version: 1"), "{debug}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn opening_arbitrary_bytes_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..2048),
                                            version in 0u64..4, epoch in 0u32..4) {
        let account = Account::new(114);
        let bundle = KeyBundle { version, key_epoch: epoch, blob: Blob(blob) };
        prop_assert!(BundleContents::open_with_password(&bundle, &account.kek, 0).is_err());
        prop_assert!(
            BundleContents::open_with_device(&bundle, &account.phone, &account.rk, 0).is_err()
        );
    }

    #[test]
    fn random_edits_of_a_real_bundle_never_open(edits in proptest::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let account = Account::new(115);
        let mut bundle = account.seal();
        let original = bundle.blob.0.clone();
        for (index, byte) in edits {
            let at = index.index(bundle.blob.0.len());
            bundle.blob.0[at] = byte;
        }
        prop_assume!(bundle.blob.0 != original);
        prop_assert!(BundleContents::open_with_password(&bundle, &account.kek, 0).is_err());
    }
}
