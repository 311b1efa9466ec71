//! The password: Argon2id into a master key, HKDF into `auth_secret` and the KEK; and the
//! strength floor a new password must clear.
//!
//! The password is used as the UTF-8 bytes the user typed, unchanged: no trimming (a trailing
//! space is the user's choice) and no Unicode normalisation (that needs Unicode tables; both
//! mobile platforms' keyboards emit NFC). Hosts must not alter it either.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use haven_protocol::Bytes;
use haven_protocol::api::KdfParams;
use zeroize::Zeroizing;

use super::keys::{AuthSecret, Kek};
use super::{CryptoError, hkdf_expand};
use crate::env::{Random, random_array};

/// HKDF info strings: the two branches from the master key. Knowing `auth_secret` (the server
/// does, at login) tells nothing about the KEK.
const INFO_AUTH_SECRET: &[u8] = b"haven/v1/password/auth-secret";
const INFO_KEK: &[u8] = b"haven/v1/password/kek";

/// What a password yields. Both halves zeroise on drop.
pub struct PasswordKeys {
    /// Sent to the server as the login proof.
    pub auth_secret: AuthSecret,
    /// Wraps RK in the bundle. Never stored.
    pub kek: Kek,
}

impl fmt::Debug for PasswordKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordKeys(redacted)")
    }
}

/// Fresh recommended parameters (DESIGN.md §4 minimums) with a new random 16-byte salt, for a
/// new account or a password change. With the test feature `insecure-fast-kdf` (debug builds
/// only), the cheapest allowed parameters instead, so end-to-end suites can register hundreds of
/// accounts.
pub fn new_kdf_params(random: &dyn Random) -> KdfParams {
    let salt = Bytes(random_array::<16>(random));
    #[cfg(feature = "insecure-fast-kdf")]
    {
        KdfParams {
            salt,
            m_kib: 8,
            t: 1,
            p: 1,
        }
    }
    #[cfg(not(feature = "insecure-fast-kdf"))]
    {
        KdfParams::recommended(salt)
    }
}

/// Whether this build accepts `kdf`: [`KdfParams::is_acceptable`], or — only with the test
/// feature `insecure-fast-kdf` — anything from m = 8 KiB, t = 1 up to the same maximums.
/// Parameters come from the server's prelogin answer, so a hostile server must not be able to
/// weaken them (or make a phone allocate gigabytes).
pub fn kdf_params_allowed(kdf: &KdfParams) -> bool {
    if kdf.is_acceptable() {
        return true;
    }
    #[cfg(feature = "insecure-fast-kdf")]
    {
        (8..=KdfParams::MAX_M_KIB).contains(&kdf.m_kib)
            && (1..=KdfParams::MAX_T).contains(&kdf.t)
            && kdf.p == 1
    }
    #[cfg(not(feature = "insecure-fast-kdf"))]
    false
}

/// Argon2id(password, salt, m, t, p) → 32-byte master key → HKDF-SHA256 into `auth_secret`
/// and `kek`. The master key lives in a zeroising buffer and is wiped as soon as both are
/// derived. Costs what the parameters say (≈ 64 MiB and a few hundred ms on a phone).
pub fn derive_password_keys(password: &str, kdf: &KdfParams) -> Result<PasswordKeys, CryptoError> {
    let master = password_master_key(password, kdf)?;
    let mut auth_secret = AuthSecret::zeroed();
    hkdf_expand(master.as_ref(), INFO_AUTH_SECRET, auth_secret.bytes_mut());
    let mut kek = Kek::zeroed();
    hkdf_expand(master.as_ref(), INFO_KEK, kek.bytes_mut());
    drop(master);
    Ok(PasswordKeys { auth_secret, kek })
}

/// Argon2id(password, salt, m, t, p) → a 32-byte master key in a zeroising buffer, after
/// refusing parameters [`kdf_params_allowed`] does not allow. Every password-derived key (the
/// account's, a backup's) branches from this by HKDF under its own info string.
pub(crate) fn password_master_key(
    password: &str,
    kdf: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    if !kdf_params_allowed(kdf) {
        return Err(CryptoError::UnacceptableKdfParams {
            m_kib: kdf.m_kib,
            t: kdf.t,
            p: kdf.p,
        });
    }
    let params = Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
        .map_err(|error| CryptoError::Kdf(error.to_string()))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut master = Zeroizing::new([0u8; 32]);
    argon2
        .hash_password_into(password.as_bytes(), kdf.salt.as_bytes(), master.as_mut())
        .map_err(|error| CryptoError::Kdf(error.to_string()))?;
    Ok(master)
}

/// Minimum length, in characters (Unicode scalar values).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// A password of digits only must be at least this long: dates, phone numbers and PINs are the
/// first things guessed.
pub const MIN_DIGIT_ONLY_CHARS: usize = 16;
/// At least this many different characters.
const MIN_DISTINCT_CHARS: usize = 5;
/// A common word plus fewer than this many extra characters is still the common word.
const MIN_EXTRA_CHARS: usize = 6;
/// Past this length the pattern checks are skipped: such a password is long enough, and the
/// checks are quadratic.
const MAX_CHECKED_CHARS: usize = 128;

/// Why a new password is refused. `Display` is a sentence for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error(
        "Use at least {MIN_PASSWORD_CHARS} characters. A few unrelated words make a strong, memorable password."
    )]
    TooShort,
    #[error(
        "A password of numbers only is easy to guess (dates, phone numbers). Add words, or use at least {MIN_DIGIT_ONLY_CHARS} digits."
    )]
    DigitsOnly,
    #[error("Use more different characters; repeated ones are easy to guess.")]
    TooFewDistinct,
    #[error("Sequences like “abcdef”, “123456” or keyboard rows are easy to guess.")]
    Sequence,
    #[error("A repeated pattern is easy to guess.")]
    RepeatedPattern,
    #[error(
        "This is one of the most common passwords (or close to one). Choose something only you would think of."
    )]
    Common,
}

/// The strength floor for a new password (login accepts whatever was set before).
///
/// Why these rules: the server holds the bundle wrapped under the password's KEK, so it — or
/// whoever steals its database — can guess passwords offline at Argon2id's cost. The floor
/// follows NIST SP 800-63B: a minimum length, no repetitive or sequential strings, and a
/// blocklist of the most common passwords; and no composition rules ("one symbol, one capital"),
/// which push people to predictable variations. The blocklist is a short embedded list of the
/// most-used base words (a few hundred bytes), checked as a substring after undoing common
/// character substitutions ("p4ssw0rd"), instead of a multi-megabyte dictionary such as zxcvbn's:
/// the binary ships on phones, and the list catches the guesses an attacker tries first. It is a
/// floor, not a meter; the UI should still suggest passphrases of several unrelated words.
///
/// The rules, in order:
/// 1. at least 10 characters;
/// 2. digits only: at least 16;
/// 3. at least 5 different characters;
/// 4. not a run of a sequence or keyboard row ("abcdefghij", "0987654321", "qwertyuiop");
/// 5. not a block repeated ("passpasspass", "1234512345");
/// 6. not a common password plus fewer than 6 other characters ("password2024!", "iloveyou123").
pub fn check_password_strength(password: &str) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if password.chars().all(|c| c.is_ascii_digit()) && chars < MIN_DIGIT_ONLY_CHARS {
        return Err(WeakPassword::DigitsOnly);
    }
    let lower = Zeroizing::new(password.to_lowercase());
    let mut distinct: Vec<char> = lower.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let distinct_count = distinct.len();
    distinct.iter_mut().for_each(|c| *c = '\0');
    if distinct_count < MIN_DISTINCT_CHARS {
        return Err(WeakPassword::TooFewDistinct);
    }
    if chars > MAX_CHECKED_CHARS {
        return Ok(());
    }
    if is_sequence(&lower) {
        return Err(WeakPassword::Sequence);
    }
    if is_repeated_block(&lower) {
        return Err(WeakPassword::RepeatedPattern);
    }
    let unleeted = Zeroizing::new(undo_substitutions(&lower));
    if is_common(&lower, chars) || is_common(&unleeted, chars) {
        return Err(WeakPassword::Common);
    }
    Ok(())
}

/// Alphabets and keyboard rows people walk along. A password that is a run of one of these
/// (forwards or backwards, wrapping around) is a sequence.
const WALKS: &[&str] = &[
    "abcdefghijklmnopqrstuvwxyz",
    "1234567890",
    "0123456789",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertzuiop",
    "azertyuiop",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "qazwsxedcrfvtgbyhnujmikolp",
    "!@#$%^&*()",
];

fn is_sequence(lower: &str) -> bool {
    let length = lower.chars().count();
    WALKS.iter().any(|walk| {
        // Enough repetitions that any run of `length` characters appears, wrapping included.
        let repeats = length / walk.len() + 2;
        let forwards = walk.repeat(repeats);
        let backwards: String = forwards.chars().rev().collect();
        forwards.contains(lower) || backwards.contains(lower)
    })
}

/// True when the password is one block repeated (the last repetition may be cut short), with
/// the block at most half the length.
fn is_repeated_block(lower: &str) -> bool {
    let chars: Vec<char> = lower.chars().collect();
    (1..=chars.len() / 2).any(|block| {
        chars
            .iter()
            .enumerate()
            .skip(block)
            .all(|(index, c)| chars[index - block] == *c)
    })
}

/// Undoes the substitutions people make to dictionary words.
fn undo_substitutions(lower: &str) -> String {
    lower
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' | '!' => 'i',
            '3' => 'e',
            '4' | '@' => 'a',
            '5' | '$' => 's',
            '7' => 't',
            '8' => 'b',
            other => other,
        })
        .collect()
}

fn is_common(candidate: &str, total_chars: usize) -> bool {
    COMMON_PASSWORDS.iter().any(|word| {
        candidate.contains(word) && total_chars < word.chars().count() + MIN_EXTRA_CHARS
    })
}

/// The most common base passwords (from public breach-frequency lists: SecLists' top passwords,
/// NordPass and NCSC lists), lowercased, plus words an attacker would try first for this app.
/// Entries shorter than 5 characters are left out: with a 10-character minimum and 6 extra
/// characters required they could never match.
#[rustfmt::skip]
const COMMON_PASSWORDS: &[&str] = &[
    "password", "passw0rd", "qwerty", "qwertz", "azerty", "asdfgh", "zxcvbn", "iloveyou",
    "princess", "sunshine", "football", "baseball", "basketball", "soccer", "hockey", "monkey",
    "letmein", "dragon", "master", "welcome", "shadow", "superman", "batman", "spiderman",
    "michael", "jessica", "jennifer", "ashley", "charlie", "daniel", "thomas", "hunter",
    "trustno1", "whatever", "freedom", "starwars", "pokemon", "minecraft", "fortnite", "roblox",
    "computer", "internet", "summer", "winter", "spring", "autumn", "flower", "butterfly",
    "chocolate", "cookie", "cheese", "pepper", "ginger", "orange", "banana", "lovely", "loveyou",
    "mylove", "babygirl", "angel1", "secret", "qazwsx", "1q2w3e4r", "1qaz2wsx", "zaq12wsx",
    "abc123", "admin1", "administrator", "changeme", "default", "helloworld", "hello1", "access",
    "testing", "blink182", "liverpool", "chelsea", "arsenal", "barcelona", "realmadrid",
    "jordan23", "passwort", "motdepasse", "contrasena", "senha123", "123456", "1234567",
    "12345678", "123456789", "654321", "111111", "000000", "123123", "121212", "987654321",
    "iloveu", "forever", "friends", "family", "blessed", "jesus1", "mustang", "shopping", "purple",
    "yellow", "silver", "diamond", "tigger", "buster", "matrix", "samsung", "iphone",
    "google", "facebook", "instagram", "tiktok", "youtube",
    // Words an attacker would try first against this app's users.
    "haven1", "havenapp", "journal", "mydiary", "diary1", "private", "safeplace", "safespace",
    "survivor", "metoo", "rainn", "healing", "strong", "courage",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededRandom;

    #[cfg(feature = "insecure-fast-kdf")]
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn fast_params(salt: u8) -> KdfParams {
        KdfParams {
            salt: Bytes([salt; 16]),
            m_kib: 8,
            t: 1,
            p: 1,
        }
    }

    #[test]
    fn weak_params_are_refused() {
        let salt = Bytes([1; 16]);
        let recommended = KdfParams::recommended(salt);
        assert!(kdf_params_allowed(&recommended));
        let below_any = [
            KdfParams {
                m_kib: 4,
                ..recommended
            },
            KdfParams {
                t: 0,
                ..recommended
            },
            KdfParams {
                p: 2,
                ..recommended
            },
            KdfParams {
                m_kib: KdfParams::MAX_M_KIB + 1,
                ..recommended
            },
            KdfParams {
                t: KdfParams::MAX_T + 1,
                ..recommended
            },
        ];
        for params in below_any {
            assert!(
                matches!(
                    derive_password_keys("correct horse battery", &params),
                    Err(CryptoError::UnacceptableKdfParams { .. })
                ),
                "{params:?}"
            );
        }
        // Below the production minimum: refused unless the test feature is on.
        let cheap = fast_params(1);
        assert_eq!(
            kdf_params_allowed(&cheap),
            cfg!(feature = "insecure-fast-kdf")
        );
        let half_memory = KdfParams {
            m_kib: KdfParams::MIN_M_KIB / 2,
            ..recommended
        };
        assert_eq!(
            kdf_params_allowed(&half_memory),
            cfg!(feature = "insecure-fast-kdf")
        );
    }

    #[test]
    fn new_params_are_recommended_with_a_fresh_salt() {
        let random = SeededRandom::new(20);
        let (first, second) = (new_kdf_params(&random), new_kdf_params(&random));
        if cfg!(feature = "insecure-fast-kdf") {
            assert_eq!((first.m_kib, first.t, first.p), (8, 1, 1));
        } else {
            assert!(first.is_acceptable());
            assert_eq!((first.m_kib, first.t, first.p), (64 * 1024, 3, 1));
        }
        assert!(kdf_params_allowed(&first));
        assert_ne!(first.salt, second.salt);
    }

    #[cfg(feature = "insecure-fast-kdf")]
    #[test]
    fn derivation_is_pinned() {
        let keys = derive_password_keys("correct horse battery staple", &fast_params(9)).unwrap();
        // Pinned outputs: any change to Argon2id use, HKDF info strings or the split is caught.
        // Computed independently with Python `cryptography` 48 (OpenSSL Argon2id, m = 8 KiB,
        // t = 1, p = 1, 32 bytes; then HKDF-SHA256 with an empty salt).
        assert_eq!(
            hex(keys.auth_secret.expose_secret()),
            "926ed6427c285e40a77f1242bab803850a53f91aed8c9cfc6dc15576c7f7b156"
        );
        assert_eq!(
            hex(keys.kek.expose_secret()),
            "36fb3a91582f594a4c16636c73acb817eefb330e80955f2cd6af4855a55d8e28"
        );
        assert_ne!(keys.auth_secret.expose_secret(), keys.kek.expose_secret());
        assert_eq!(format!("{keys:?}"), "PasswordKeys(redacted)");
    }

    #[cfg(feature = "insecure-fast-kdf")]
    #[test]
    fn keys_depend_on_password_salt_and_params() {
        let base = derive_password_keys("correct horse battery staple", &fast_params(9)).unwrap();
        let again = derive_password_keys("correct horse battery staple", &fast_params(9)).unwrap();
        assert_eq!(base.kek, again.kek);
        assert_eq!(base.auth_secret, again.auth_secret);
        let variants = [
            derive_password_keys("correct horse battery staplE", &fast_params(9)).unwrap(),
            derive_password_keys("correct horse battery staple", &fast_params(10)).unwrap(),
            derive_password_keys(
                "correct horse battery staple",
                &KdfParams {
                    m_kib: 16,
                    ..fast_params(9)
                },
            )
            .unwrap(),
            derive_password_keys(
                "correct horse battery staple",
                &KdfParams {
                    t: 2,
                    ..fast_params(9)
                },
            )
            .unwrap(),
        ];
        for variant in &variants {
            assert_ne!(variant.kek, base.kek);
            assert_ne!(variant.auth_secret, base.auth_secret);
        }
    }

    /// The one test at the real minimum (64 MiB, t = 3): about a quarter of a second with the
    /// optimised argon2 of the dev profile, and 64 MiB of memory. Kept to prove the production
    /// path works end to end.
    #[test]
    fn derivation_at_the_production_minimum() {
        let params = KdfParams::recommended(Bytes([3; 16]));
        let keys = derive_password_keys("correct horse battery staple", &params).unwrap();
        assert_ne!(keys.kek.expose_secret(), &[0; 32]);
        assert_ne!(keys.auth_secret.expose_secret(), keys.kek.expose_secret());
    }

    #[test]
    fn strength_floor() {
        let weak = [
            ("", WeakPassword::TooShort),
            ("Tr0ub4dor", WeakPassword::TooShort),
            ("0712199834", WeakPassword::DigitsOnly),
            ("123456789012345", WeakPassword::DigitsOnly),
            ("aaaaaaaaaa", WeakPassword::TooFewDistinct),
            ("abababababab", WeakPassword::TooFewDistinct),
            ("AAAAbbbbCCCC", WeakPassword::TooFewDistinct),
            ("abcdefghij", WeakPassword::Sequence),
            ("ZYXWVUTSRQ", WeakPassword::Sequence),
            ("qwertyuiop", WeakPassword::Sequence),
            ("poiuytrewq", WeakPassword::Sequence),
            ("1qaz2wsx3edc", WeakPassword::Sequence),
            ("uvwxyzabcdef", WeakPassword::Sequence),
            ("tulip-tulip-", WeakPassword::RepeatedPattern),
            ("passpasspass", WeakPassword::TooFewDistinct),
            ("abcdeabcde", WeakPassword::RepeatedPattern),
            ("password2024!", WeakPassword::Common),
            ("P4ssw0rd!!", WeakPassword::Common),
            ("iloveyou123", WeakPassword::Common),
            ("MyPassword1", WeakPassword::Common),
            ("Sunshine22!", WeakPassword::Common),
            ("survivor2024", WeakPassword::Common),
        ];
        for (password, expected) in weak {
            assert_eq!(
                check_password_strength(password),
                Err(expected),
                "{password}"
            );
        }
        for strong in [
            "correct horse battery staple",
            "8302917465102938", // 16 digits: allowed, if not great
            "my cat eats tulips",
            "sunshine on the river",
            "Zq7!mR2@pLx9",
            "jardín de invierno",
            "пароль-для-дневника",
        ] {
            assert_eq!(check_password_strength(strong), Ok(()), "{strong}");
        }
        // Every reason is a sentence for the UI.
        assert!(WeakPassword::TooShort.to_string().contains("10 characters"));
    }
}
