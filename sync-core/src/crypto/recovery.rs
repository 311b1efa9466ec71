//! The recovery phrase: 24 BIP39 English words (256 bits of entropy), shown once at sign-up and
//! checked by asking for a few words back. Its entropy derives, by HKDF, an X25519 key pair (RK
//! is sealed to its public half in the bundle) and `recovery_auth` (the server's proof for
//! `/v1/recovery`). Devices keep only the public key.
//!
//! Only the entropy is kept, in a zeroising buffer; words are made from it when asked for.
//! `Debug` never prints words. (The bip39 crate's own temporaries — a bit array and a stack
//! copy of the entropy during parsing — are outside our control; its `Mnemonic` zeroises.)

use std::fmt;

use bip39::{Language, Mnemonic};
use subtle::ConstantTimeEq as _;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize as _, ZeroizeOnDrop, Zeroizing};

use super::hkdf_expand;
use super::keys::RecoveryAuth;
use crate::env::Random;

/// Words in a recovery phrase.
pub const PHRASE_WORDS: usize = 24;
const ENTROPY_LEN: usize = 32;
/// BIP39 English words are unique in their first four letters, so a word may be typed that short.
const MIN_PREFIX_LEN: usize = 4;

const INFO_RECOVERY_X25519: &[u8] = b"haven/v1/recovery/x25519";
const INFO_RECOVERY_AUTH: &[u8] = b"haven/v1/recovery/auth";

/// Why a typed phrase is refused. Positions count from 1, as the UI shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhraseError {
    #[error("A recovery phrase has 24 words; this has {found}.")]
    WrongWordCount { found: usize },
    #[error("Word {position} is not a recovery-phrase word. Check its spelling.")]
    UnknownWord { position: usize },
    #[error("These words are not a valid recovery phrase: a word is wrong or two are swapped.")]
    BadChecksum,
}

/// A 24-word recovery phrase.
#[derive(Clone)]
pub struct RecoveryPhrase {
    entropy: Zeroizing<[u8; ENTROPY_LEN]>,
}

impl ZeroizeOnDrop for RecoveryPhrase {}

impl RecoveryPhrase {
    /// A new phrase from 256 bits of the injected random source.
    pub fn generate(random: &dyn Random) -> Self {
        let mut entropy = Zeroizing::new([0u8; ENTROPY_LEN]);
        random.fill(entropy.as_mut());
        Self { entropy }
    }

    /// Parses a typed phrase. Forgiving about form: any case; words separated by whitespace,
    /// punctuation or digits (so "1. abandon 2. ability …" pastes fine); each word either whole
    /// or cut to its first four letters or more. Strict about content: exactly 24 words, every
    /// one in the BIP39 English list, and the checksum must hold.
    pub fn parse(text: &str) -> Result<Self, PhraseError> {
        let lowered = Zeroizing::new(text.to_lowercase());
        let words: Vec<&str> = lowered
            .split(|c: char| c.is_whitespace() || c.is_ascii_punctuation() || c.is_ascii_digit())
            .filter(|word| !word.is_empty())
            .collect();
        if words.len() != PHRASE_WORDS {
            return Err(PhraseError::WrongWordCount { found: words.len() });
        }
        let mut canonical = Zeroizing::new(String::with_capacity(PHRASE_WORDS * 9));
        for (index, word) in words.iter().enumerate() {
            let full = lookup_word(word).ok_or(PhraseError::UnknownWord {
                position: index + 1,
            })?;
            if index > 0 {
                canonical.push(' ');
            }
            canonical.push_str(full);
        }
        let mnemonic =
            Mnemonic::parse_in_normalized(Language::English, &canonical).map_err(|error| {
                match error {
                    bip39::Error::BadWordCount(found) => PhraseError::WrongWordCount { found },
                    bip39::Error::UnknownWord(index) => PhraseError::UnknownWord {
                        position: index + 1,
                    },
                    _ => PhraseError::BadChecksum,
                }
            })?;
        let (mut bytes, len) = mnemonic.to_entropy_array();
        let result = if len == ENTROPY_LEN {
            let mut entropy = Zeroizing::new([0u8; ENTROPY_LEN]);
            entropy.copy_from_slice(&bytes[..ENTROPY_LEN]);
            Ok(Self { entropy })
        } else {
            Err(PhraseError::WrongWordCount { found: words.len() })
        };
        bytes.zeroize();
        result
    }

    /// The 24 words, in order, for showing once. The buffer zeroises on drop.
    pub fn words(&self) -> Zeroizing<Vec<String>> {
        let indices = self.word_indices();
        Zeroizing::new(
            indices
                .iter()
                .map(|&index| word_at(index).to_owned())
                .collect(),
        )
    }

    /// The phrase as one line of space-separated words.
    pub fn to_phrase_string(&self) -> Zeroizing<String> {
        Zeroizing::new(self.words().join(" "))
    }

    /// `n` distinct word positions (0-based, ascending; show them as position + 1) to ask back
    /// at registration, drawn without bias from the injected random source. `n` is capped at 24.
    pub fn challenge(random: &dyn Random, n: usize) -> Vec<usize> {
        let wanted = n.min(PHRASE_WORDS);
        let mut chosen = [false; PHRASE_WORDS];
        let mut count = 0;
        let mut byte = [0u8; 1];
        while count < wanted {
            random.fill(&mut byte);
            // Rejection sampling: 240 = 10 × 24, so every position is equally likely.
            if byte[0] >= 240 {
                continue;
            }
            let position = usize::from(byte[0]) % PHRASE_WORDS;
            if !chosen[position] {
                chosen[position] = true;
                count += 1;
            }
        }
        (0..PHRASE_WORDS).filter(|&i| chosen[i]).collect()
    }

    /// Whether `answers[k]` is the word at position `indices[k]` (0-based) for every k. Answers
    /// are normalised like [`RecoveryPhrase::parse`] (case, surrounding space, 4-letter prefixes).
    /// False for mismatched lengths, no questions, or an out-of-range position. Compares in
    /// constant time over the questions asked.
    pub fn check_words(&self, indices: &[usize], answers: &[&str]) -> bool {
        if indices.is_empty() || indices.len() != answers.len() {
            return false;
        }
        let expected = self.word_indices();
        let mut all_match = subtle::Choice::from(1u8);
        for (&position, answer) in indices.iter().zip(answers) {
            let Some(&want) = expected.get(position) else {
                return false;
            };
            let lowered = Zeroizing::new(answer.trim().to_lowercase());
            let given = lookup_word(&lowered)
                .and_then(|word| Language::English.find_word(word))
                .unwrap_or(u16::MAX);
            all_match &= want.ct_eq(&given);
        }
        all_match.into()
    }

    /// The 11-bit word indices of the phrase.
    fn word_indices(&self) -> Zeroizing<[u16; PHRASE_WORDS]> {
        let mut out = Zeroizing::new([0u16; PHRASE_WORDS]);
        // 32 bytes of entropy always make a valid 24-word mnemonic; on the impossible error
        // every index stays 0 rather than panicking.
        if let Ok(mnemonic) = Mnemonic::from_entropy_in(Language::English, self.entropy.as_ref()) {
            for (slot, index) in out.iter_mut().zip(mnemonic.word_indices()) {
                // Indices are below 2048.
                *slot = u16::try_from(index).unwrap_or(u16::MAX);
            }
        }
        out
    }
}

impl fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryPhrase(redacted)")
    }
}

impl PartialEq for RecoveryPhrase {
    fn eq(&self, other: &Self) -> bool {
        self.entropy.as_ref().ct_eq(other.entropy.as_ref()).into()
    }
}

impl Eq for RecoveryPhrase {}

/// The exact word, or the only word that starts with `typed` when it has at least 4 letters.
fn lookup_word(typed: &str) -> Option<&'static str> {
    let language = Language::English;
    if let Some(index) = language.find_word(typed) {
        return Some(word_at(index));
    }
    if typed.chars().count() < MIN_PREFIX_LEN {
        return None;
    }
    match language.words_by_prefix(typed) {
        [only] => Some(only),
        _ => None,
    }
}

fn word_at(index: u16) -> &'static str {
    Language::English
        .word_list()
        .get(usize::from(index))
        .copied()
        .unwrap_or("")
}

/// The keys a recovery phrase derives.
pub struct RecoveryKeys {
    /// Zeroised on drop by x25519-dalek.
    secret: StaticSecret,
    public: [u8; 32],
    auth: RecoveryAuth,
}

impl ZeroizeOnDrop for RecoveryKeys {}

impl RecoveryKeys {
    /// entropy → HKDF-SHA256 ("haven/v1/recovery/x25519") → X25519 static secret, and
    /// entropy → HKDF-SHA256 ("haven/v1/recovery/auth") → `recovery_auth`.
    pub fn derive(phrase: &RecoveryPhrase) -> Self {
        let mut secret_bytes = Zeroizing::new([0u8; 32]);
        hkdf_expand(
            phrase.entropy.as_ref(),
            INFO_RECOVERY_X25519,
            secret_bytes.as_mut(),
        );
        let secret = StaticSecret::from(*secret_bytes);
        let public = PublicKey::from(&secret).to_bytes();
        let mut auth = RecoveryAuth::zeroed();
        hkdf_expand(
            phrase.entropy.as_ref(),
            INFO_RECOVERY_AUTH,
            auth.bytes_mut(),
        );
        Self {
            secret,
            public,
            auth,
        }
    }

    /// The recovery public key that devices keep, to re-seal RK after a rotation.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The server's recovery proof.
    pub fn recovery_auth(&self) -> &RecoveryAuth {
        &self.auth
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

impl fmt::Debug for RecoveryKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryKeys").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededRandom;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The BIP39 test vector for 32 bytes of 0x00: "abandon" ×23 then "art".
    const ZERO_PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon \
        abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
        abandon abandon abandon abandon art";

    #[test]
    fn generate_parse_round_trip_gives_the_same_keys() {
        let random = SeededRandom::new(30);
        let phrase = RecoveryPhrase::generate(&random);
        let words = phrase.words();
        assert_eq!(words.len(), PHRASE_WORDS);
        let parsed = RecoveryPhrase::parse(&phrase.to_phrase_string()).unwrap();
        assert_eq!(parsed, phrase);
        let (first, second) = (RecoveryKeys::derive(&phrase), RecoveryKeys::derive(&parsed));
        assert_eq!(first.public_key(), second.public_key());
        assert_eq!(first.recovery_auth(), second.recovery_auth());
        assert_ne!(
            RecoveryKeys::derive(&RecoveryPhrase::generate(&random)).public_key(),
            first.public_key()
        );
    }

    #[test]
    fn parse_is_forgiving_about_form() {
        let expected = RecoveryPhrase::parse(ZERO_PHRASE).unwrap();
        assert_eq!(expected.words()[23], "art");
        let shouting = ZERO_PHRASE.to_uppercase();
        let numbered: String = ZERO_PHRASE
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| format!("{}. {w},\n", i + 1))
            .collect();
        let abbreviated = ZERO_PHRASE.replace("abandon", "aban");
        for text in [
            shouting,
            numbered,
            abbreviated,
            format!("  {ZERO_PHRASE}\t\n"),
        ] {
            assert_eq!(RecoveryPhrase::parse(&text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_phrases_get_clear_errors() {
        let words: Vec<&str> = ZERO_PHRASE.split_whitespace().collect();
        let short = words[..23].join(" ");
        assert_eq!(
            RecoveryPhrase::parse(&short),
            Err(PhraseError::WrongWordCount { found: 23 })
        );
        assert_eq!(
            RecoveryPhrase::parse(""),
            Err(PhraseError::WrongWordCount { found: 0 })
        );
        let mut misspelt = words.clone();
        misspelt[6] = "abandonn";
        assert_eq!(
            RecoveryPhrase::parse(&misspelt.join(" ")),
            Err(PhraseError::UnknownWord { position: 7 })
        );
        // A 3-letter prefix is ambiguous or too short.
        let mut prefix = words.clone();
        prefix[0] = "aba";
        assert_eq!(
            RecoveryPhrase::parse(&prefix.join(" ")),
            Err(PhraseError::UnknownWord { position: 1 })
        );
        let mut checksum = words.clone();
        checksum[23] = "abandon";
        assert_eq!(
            RecoveryPhrase::parse(&checksum.join(" ")),
            Err(PhraseError::BadChecksum)
        );
        // A 12-word phrase (valid BIP39, but not ours) is refused by count.
        let twelve = format!("{} about", ["abandon"; 11].join(" "));
        assert_eq!(
            RecoveryPhrase::parse(&twelve),
            Err(PhraseError::WrongWordCount { found: 12 })
        );
        assert!(
            PhraseError::UnknownWord { position: 7 }
                .to_string()
                .contains("Word 7")
        );
    }

    #[test]
    fn challenge_and_check_words() {
        let random = SeededRandom::new(31);
        let phrase = RecoveryPhrase::generate(&random);
        let words = phrase.words();
        let positions = RecoveryPhrase::challenge(&random, 3);
        assert_eq!(positions.len(), 3);
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(positions.iter().all(|&p| p < PHRASE_WORDS));
        let answers: Vec<&str> = positions.iter().map(|&p| words[p].as_str()).collect();
        assert!(phrase.check_words(&positions, &answers));
        let shouted: Vec<String> = answers
            .iter()
            .map(|a| format!(" {} ", a.to_uppercase()))
            .collect();
        let shouted: Vec<&str> = shouted.iter().map(String::as_str).collect();
        assert!(phrase.check_words(&positions, &shouted));

        let mut wrong = answers.clone();
        wrong[1] = if words[positions[1]] == "zoo" {
            "abandon"
        } else {
            "zoo"
        };
        assert!(!phrase.check_words(&positions, &wrong));
        assert!(!phrase.check_words(&positions, &answers[..2]));
        assert!(!phrase.check_words(&[], &[]));
        assert!(!phrase.check_words(&[24], &[words[0].as_str()]));
        assert!(!phrase.check_words(&[positions[0]], &["not-a-word"]));

        assert_eq!(RecoveryPhrase::challenge(&random, 100).len(), PHRASE_WORDS);
        assert!(RecoveryPhrase::challenge(&random, 0).is_empty());
    }

    #[test]
    fn derivation_is_pinned_and_debug_is_redacted() {
        let phrase = RecoveryPhrase::parse(ZERO_PHRASE).unwrap();
        let keys = RecoveryKeys::derive(&phrase);
        // Cross-checked with Python `cryptography` 48: HKDF-SHA256 (empty salt) of 32 zero bytes,
        // then the X25519 public key of the derived secret.
        assert_eq!(
            hex(&keys.public_key()),
            "926f897e61e74a5dc562f2bafa4a351beebd347d11508bc1d6e26300537e531c"
        );
        assert_eq!(
            hex(keys.recovery_auth().expose_secret()),
            "259ffee4ae605aa665115f734ab48151e2cca104e1674c4abc1a81fc525c918a"
        );
        let debug = format!("{phrase:?} {keys:?}");
        assert!(!debug.contains("abandon"), "{debug}");
        assert!(!debug.contains(&hex(&keys.recovery_auth().expose_secret()[..4])));
        assert_eq!(debug, "RecoveryPhrase(redacted) RecoveryKeys { .. }");
    }
}
