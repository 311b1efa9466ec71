use super::*;
use crate::crypto::new_kdf_params;
use crate::env::SeededRandom;

const PASSPHRASE: &str = "a long walk by the river at dusk";

fn entry(id: u8, text: &[u8]) -> BackupEntry {
    BackupEntry {
        id: DocId::from([id; 16]),
        created_at: 1_795_867_200_000 + i64::from(id),
        automerge: Zeroizing::new(text.to_vec()),
    }
}

fn sample() -> BackupContents {
    BackupContents {
        made_at: 1_795_867_260_000,
        entries: vec![entry(1, b"first document"), entry(2, &[7; 3000])],
        deletions: vec![(DocId::from([9; 16]), 1_795_867_230_000)],
    }
}

fn sealed(contents: &BackupContents) -> Vec<u8> {
    let random = SeededRandom::new(7);
    seal_backup(contents, PASSPHRASE, &new_kdf_params(&random), &random).unwrap()
}

#[test]
fn a_backup_opens_with_its_passphrase_only() {
    let contents = sample();
    let file = sealed(&contents);
    assert_eq!(file[..8], *b"HAVENBAK");
    assert_eq!(file[8..10], [0, 1]);
    assert_eq!(open_backup(&file, PASSPHRASE).unwrap(), contents);
    assert_eq!(
        open_backup(&file, "a long walk by the river at dawn"),
        Err(BackupError::WrongPassphrase)
    );
    // The plaintext is padded: the length is a bucket, not the journal's.
    let sealed_len = file.len() - BACKUP_HEADER_LEN - TAG_LEN;
    assert!(padding::is_padded_len(sealed_len), "{sealed_len}");
    // Debug never shows a document.
    assert!(!format!("{contents:?}").contains("first document"));
}

#[test]
fn an_empty_journal_round_trips() {
    let empty = BackupContents::default();
    assert_eq!(open_backup(&sealed(&empty), PASSPHRASE).unwrap(), empty);
}

#[test]
fn wrong_magic_version_and_weak_parameters_are_refused_before_any_derivation() {
    let file = sealed(&sample());
    let mut magic = file.clone();
    magic[0] = b'h';
    assert_eq!(
        open_backup(&magic, PASSPHRASE),
        Err(BackupError::NotABackup)
    );
    assert_eq!(open_backup(b"", PASSPHRASE), Err(BackupError::NotABackup));
    assert_eq!(
        open_backup(b"HAVEN", PASSPHRASE),
        Err(BackupError::NotABackup)
    );
    let mut version = file.clone();
    version[8..10].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(
        open_backup(&version, PASSPHRASE),
        Err(BackupError::UnsupportedVersion { found: 2 })
    );
    // Memory below even the test floor, one pass fewer than allowed, two lanes.
    for (offset, value) in [(10, 4u32), (14, 0), (18, 2)] {
        let mut weak = file.clone();
        weak[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
        assert!(
            matches!(
                open_backup(&weak, PASSPHRASE),
                Err(BackupError::UnacceptableKdf { .. })
            ),
            "offset {offset}"
        );
    }
    // A memory cost past the ceiling (a phone must not be told to allocate gigabytes).
    let mut huge = file;
    huge[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        BackupHeader::parse(&huge),
        Err(BackupError::UnacceptableKdf { .. })
    ));
    // Below the production minimum: refused unless this is a fast-KDF test build.
    let random = SeededRandom::new(1);
    let cheap = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
        salt: Bytes([1; 16]),
    };
    let result = seal_backup(&sample(), PASSPHRASE, &cheap, &random);
    assert_eq!(result.is_ok(), cfg!(feature = "insecure-fast-kdf"));
}

#[test]
fn absurd_and_inconsistent_lengths_are_refused() {
    let file = sealed(&sample());
    let set_len = |len: u64| {
        let mut out = file.clone();
        out[62..70].copy_from_slice(&len.to_be_bytes());
        out
    };
    assert_eq!(
        BackupHeader::parse(&set_len(u64::MAX)),
        Err(BackupError::TooLarge {
            len: u64::MAX,
            max: MAX_BACKUP_BYTES
        })
    );
    let real = (file.len() - BACKUP_HEADER_LEN) as u64;
    assert_eq!(
        BackupHeader::parse(&set_len(real + 1)),
        Err(BackupError::Truncated)
    );
    assert!(matches!(
        BackupHeader::parse(&set_len(real - 1)),
        Err(BackupError::Malformed(_))
    ));
    let mut longer = file.clone();
    longer.push(0);
    assert!(matches!(
        open_backup(&longer, PASSPHRASE),
        Err(BackupError::Malformed(_))
    ));
    // Cut short anywhere: refused, never a panic.
    for len in [
        8,
        9,
        10,
        30,
        BACKUP_HEADER_LEN - 1,
        BACKUP_HEADER_LEN,
        file.len() - 1,
    ] {
        let error = open_backup(&file[..len], PASSPHRASE).unwrap_err();
        assert!(
            matches!(error, BackupError::Truncated | BackupError::Malformed(_)),
            "{len}: {error:?}"
        );
    }
}

#[test]
fn hostile_counts_in_an_authentic_payload_allocate_nothing() {
    let mut payload = 0i64.to_be_bytes().to_vec();
    payload.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode_contents(&payload),
        Err(BackupError::Malformed("too many entries"))
    );
    let mut payload = 0i64.to_be_bytes().to_vec();
    payload.extend_from_slice(&50_000u32.to_be_bytes());
    assert_eq!(
        decode_contents(&payload),
        Err(BackupError::Malformed("truncated payload"))
    );
    let mut payload = 0i64.to_be_bytes().to_vec();
    payload.extend_from_slice(&1u32.to_be_bytes());
    payload.extend_from_slice(&[1; 24]);
    payload.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode_contents(&payload),
        Err(BackupError::Malformed("an entry is too large"))
    );
}

/// Every byte of the header and a spread of the ciphertext, flipped one at a time: each is
/// refused with a typed error, never opened. (Flipping bit 0 keeps every Argon2id parameter
/// either refused or cheap.)
#[cfg(feature = "insecure-fast-kdf")]
#[test]
fn every_flipped_byte_is_refused() {
    let file = sealed(&sample());
    let ciphertext = (BACKUP_HEADER_LEN..file.len())
        .step_by(97)
        .chain([file.len() - 1]);
    for at in (0..BACKUP_HEADER_LEN).chain(ciphertext) {
        let mut tampered = file.clone();
        tampered[at] ^= 0x01;
        let error = open_backup(&tampered, PASSPHRASE).unwrap_err();
        let expected = match at {
            0..8 => matches!(error, BackupError::NotABackup),
            8..10 => matches!(error, BackupError::UnsupportedVersion { .. }),
            10..22 => matches!(
                error,
                BackupError::UnacceptableKdf { .. } | BackupError::WrongPassphrase
            ),
            62..70 => matches!(
                error,
                BackupError::Truncated | BackupError::Malformed(_) | BackupError::TooLarge { .. }
            ),
            _ => error == BackupError::WrongPassphrase,
        };
        assert!(expected, "byte {at}: {error:?}");
    }
}

/// Random journals round-trip, and a random byte changed anywhere never opens. Runs 32 seeded
/// cases (override with `PROPTEST_RNG_SEED` / `PROPTEST_CASES`); a failure prints the seed and
/// the minimal case.
#[cfg(feature = "insecure-fast-kdf")]
#[test]
fn random_journals_round_trip_and_any_change_is_refused() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestError, TestRunner};

    let defaults = Config::default();
    let seed = match defaults.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => 0xbac0_0b5e,
    };
    let config = Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            defaults.cases
        } else {
            32
        },
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..defaults
    };
    let entries = proptest::collection::vec(
        (
            any::<[u8; 16]>(),
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..2000),
        ),
        0..6,
    );
    let deletions = proptest::collection::vec((any::<[u8; 16]>(), any::<i64>()), 0..4);
    let strategy = (any::<i64>(), entries, deletions, any::<u64>(), any::<u8>());
    let mut runner = TestRunner::new(config);
    let result = runner.run(
        &strategy,
        |(made_at, entries, deletions, position, flip)| {
            let contents = BackupContents {
                made_at,
                entries: entries
                    .into_iter()
                    .map(|(id, created_at, bytes)| BackupEntry {
                        id: DocId::from(id),
                        created_at,
                        automerge: Zeroizing::new(bytes),
                    })
                    .collect(),
                deletions: deletions
                    .into_iter()
                    .map(|(id, at)| (DocId::from(id), at))
                    .collect(),
            };
            let file = sealed(&contents);
            prop_assert_eq!(open_backup(&file, PASSPHRASE).unwrap(), contents);
            let mut tampered = file;
            let at = (position % tampered.len() as u64) as usize;
            // Bit 0 of the Argon2id parameters only: other bits there may ask for gigabytes.
            tampered[at] ^= if (10..22).contains(&at) {
                1
            } else {
                flip.max(1)
            };
            prop_assert!(open_backup(&tampered, PASSPHRASE).is_err());
            Ok(())
        },
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => {
            panic!("seed {seed:#x}: {reason}\nminimal failing case: {case:?}")
        }
        Err(error) => panic!("seed {seed:#x}: {error}"),
    }
}
