//! Device linking without the password (DESIGN.md §4, issue 7).
//!
//! 1. The new device opens a mailbox on the server and shows an **invitation code** (for a QR or
//!    to copy): the mailbox id and its full public keys (device id, X25519, Ed25519).
//! 2. The existing device reads the code and shows a **verification code** computed over the
//!    mailbox id and both public keys; the new device shows the same code computed over what it
//!    put in the invitation. The person compares them: a code swapped on its way (someone else's
//!    keys) gives another verification code, and the existing device sends nothing.
//! 3. After that confirmation the existing device adds the new one to the key bundle and drops a
//!    **grant** into the mailbox: the root key, a one-time enrolment token and the username,
//!    encrypted under a one-time key sealed to the new device's X25519 key and bound to the
//!    mailbox. The server, which carries it, cannot read or alter it.
//!
//! The new device then starts its session with the token and opens the bundle with its own key,
//! trusting only bundles signed by the root key it received.

use haven_protocol::HexId;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::CryptoError;
use super::aead::{self, NONCE_LEN, TAG_LEN};
use super::keys::{DeviceKeys, DevicePublicKeys, RootKey};
use super::wrap::{KeyPurpose, SEALED_KEY_LEN, SealedKey};
use crate::env::{Random, random_array};

/// The prefix of an invitation code, with its format version.
const CODE_PREFIX: &str = "haven-link-1:";
/// mailbox ‖ device id ‖ X25519 ‖ Ed25519.
const INVITATION_LEN: usize = 16 + 16 + 32 + 32;
/// Digits of the verification code (about 30 bits).
const VERIFICATION_DIGITS: u32 = 9;
/// Format byte of a grant's plaintext.
const GRANT_FORMAT: u8 = 1;
/// Grants are small; anything larger is refused before decryption.
pub const MAX_GRANT_BYTES: usize = 1024;
const GRANT_DOMAIN: &[u8] = b"haven/v1/link-grant\0";

/// What the new device shows: where to send the grant and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInvitation {
    pub mailbox: HexId,
    pub device: DevicePublicKeys,
}

impl LinkInvitation {
    /// The code to show (as text or a QR code).
    pub fn to_code(&self) -> String {
        use base64::Engine as _;
        let mut bytes = Vec::with_capacity(INVITATION_LEN);
        bytes.extend_from_slice(&self.mailbox.0);
        bytes.extend_from_slice(&self.device.device_id.0);
        bytes.extend_from_slice(&self.device.agreement);
        bytes.extend_from_slice(&self.device.signing);
        format!(
            "{CODE_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// Reads a code (surrounding whitespace allowed) and checks the keys in it.
    pub fn parse(code: &str) -> Result<Self, CryptoError> {
        use base64::Engine as _;
        let body = code
            .trim()
            .strip_prefix(CODE_PREFIX)
            .ok_or(CryptoError::Link(
                "this is not a Haven link code (it starts with haven-link-1:)",
            ))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Link("the link code is damaged"))?;
        let bytes: [u8; INVITATION_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::Link("the link code has the wrong length"))?;
        let (mailbox, rest) = bytes.split_at(16);
        let (device_id, rest) = rest.split_at(16);
        let (agreement, signing) = rest.split_at(32);
        let invitation = Self {
            mailbox: HexId(to_array(mailbox)),
            device: DevicePublicKeys {
                device_id: haven_protocol::Bytes(to_array::<16>(device_id)),
                agreement: to_array(agreement),
                signing: to_array(signing),
            },
        };
        invitation.device.validate()?;
        Ok(invitation)
    }

    /// The code both devices show, over the mailbox and the new device's keys, as
    /// `123-456-789`.
    pub fn verification_code(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"haven/v1/link-verification\0");
        hash.update(self.mailbox.0);
        hash.update(self.device.device_id.0);
        hash.update(self.device.agreement);
        hash.update(self.device.signing);
        let digest = hash.finalize();
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        let number = u64::from_be_bytes(head) % 10u64.pow(VERIFICATION_DIGITS);
        let digits = format!("{number:09}");
        format!("{}-{}-{}", &digits[..3], &digits[3..6], &digits[6..])
    }

    fn associated_data(&self) -> Vec<u8> {
        let mut out = GRANT_DOMAIN.to_vec();
        out.extend_from_slice(&self.mailbox.0);
        out.extend_from_slice(&self.device.device_id.0);
        out
    }
}

/// What the existing device sends: enough for the new one to join the account.
pub struct LinkGrant {
    pub root_key: RootKey,
    pub enrolment_token: Zeroizing<String>,
    pub username: String,
}

impl std::fmt::Debug for LinkGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkGrant(..)")
    }
}

impl LinkGrant {
    /// Encrypts the grant for the invited device: `sealed one-time key ‖ nonce ‖ ciphertext`.
    pub fn seal_for(
        &self,
        invitation: &LinkInvitation,
        random: &dyn Random,
    ) -> Result<Vec<u8>, CryptoError> {
        let token = self.enrolment_token.as_bytes();
        let username = self.username.as_bytes();
        let (Ok(token_len), Ok(username_len)) =
            (u16::try_from(token.len()), u16::try_from(username.len()))
        else {
            return Err(CryptoError::TooLarge {
                what: "a link grant",
                len: token.len() + username.len(),
                max: MAX_GRANT_BYTES,
            });
        };
        let mut plaintext = Zeroizing::new(Vec::new());
        plaintext.push(GRANT_FORMAT);
        plaintext.extend_from_slice(self.root_key.expose_secret());
        plaintext.extend_from_slice(&token_len.to_be_bytes());
        plaintext.extend_from_slice(token);
        plaintext.extend_from_slice(&username_len.to_be_bytes());
        plaintext.extend_from_slice(username);
        let one_time = Zeroizing::new(random_array::<32>(random));
        let sealed = SealedKey::seal(
            &invitation.device.agreement,
            &one_time,
            KeyPurpose::LinkPayload(invitation.mailbox.0),
            random,
        )?;
        let nonce = random_array::<NONCE_LEN>(random);
        let ciphertext = aead::seal(&one_time, &nonce, &invitation.associated_data(), &plaintext);
        let mut out = Vec::with_capacity(SEALED_KEY_LEN + NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&sealed.to_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        if out.len() > MAX_GRANT_BYTES {
            return Err(CryptoError::TooLarge {
                what: "a link grant",
                len: out.len(),
                max: MAX_GRANT_BYTES,
            });
        }
        Ok(out)
    }

    /// Opens a grant with the invited device's keys; anything altered, or sealed to another
    /// device or mailbox, is refused.
    pub fn open(
        bytes: &[u8],
        invitation: &LinkInvitation,
        device: &DeviceKeys,
    ) -> Result<Self, CryptoError> {
        if bytes.len() > MAX_GRANT_BYTES || bytes.len() < SEALED_KEY_LEN + NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Link("a link grant has the wrong size"));
        }
        let (sealed, rest) = bytes.split_at(SEALED_KEY_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let sealed = SealedKey::from_bytes(to_array(sealed));
        let one_time = sealed.open(
            device.agreement_secret(),
            KeyPurpose::LinkPayload(invitation.mailbox.0),
        )?;
        let plaintext = aead::open(
            &one_time,
            &to_array(nonce),
            &invitation.associated_data(),
            ciphertext,
        )
        .ok_or(CryptoError::Decrypt)?;
        let mut reader = Reader(&plaintext);
        if reader.take(1)? != [GRANT_FORMAT] {
            return Err(CryptoError::Link("unknown link grant format"));
        }
        let root_key = RootKey::from_bytes(&to_array(reader.take(32)?));
        let token = reader.take_prefixed()?;
        let username = reader.take_prefixed()?;
        if !reader.0.is_empty() {
            return Err(CryptoError::Link("trailing bytes in a link grant"));
        }
        let text = |bytes: &[u8]| {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| CryptoError::Link("a link grant holds invalid text"))
        };
        Ok(Self {
            root_key,
            enrolment_token: Zeroizing::new(text(token)?),
            username: text(username)?,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CryptoError> {
        if self.0.len() < n {
            return Err(CryptoError::Link("a link grant is cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn take_prefixed(&mut self) -> Result<&'a [u8], CryptoError> {
        let len = u16::from_be_bytes(to_array(self.take(2)?));
        self.take(usize::from(len))
    }
}

/// Copies a slice whose length the caller already checked.
fn to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::OsRandom;

    fn invitation(device: &DeviceKeys) -> LinkInvitation {
        LinkInvitation {
            mailbox: HexId(random_array(&OsRandom)),
            device: device.public_keys(),
        }
    }

    fn grant() -> LinkGrant {
        LinkGrant {
            root_key: RootKey::generate(&OsRandom),
            enrolment_token: Zeroizing::new("token-123".into()),
            username: "mira".into(),
        }
    }

    #[test]
    fn a_code_round_trips_and_both_sides_compute_the_same_verification() {
        let device = DeviceKeys::generate(&OsRandom);
        let invitation = invitation(&device);
        let parsed = LinkInvitation::parse(&format!(" {} \n", invitation.to_code())).unwrap();
        assert_eq!(parsed, invitation);
        assert_eq!(parsed.verification_code(), invitation.verification_code());
        let code = invitation.verification_code();
        assert_eq!(code.len(), 11);
        assert!(code.chars().all(|c| c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn a_swapped_key_or_mailbox_changes_the_verification_code() {
        let device = DeviceKeys::generate(&OsRandom);
        let genuine = invitation(&device);
        let attacker = DeviceKeys::generate(&OsRandom);
        let swapped_keys = LinkInvitation {
            mailbox: genuine.mailbox,
            device: DevicePublicKeys {
                device_id: genuine.device.device_id,
                ..attacker.public_keys()
            },
        };
        let swapped_mailbox = LinkInvitation {
            mailbox: HexId(random_array(&OsRandom)),
            device: genuine.device,
        };
        assert_ne!(
            swapped_keys.verification_code(),
            genuine.verification_code()
        );
        assert_ne!(
            swapped_mailbox.verification_code(),
            genuine.verification_code()
        );
    }

    #[test]
    fn damaged_codes_are_refused() {
        let device = DeviceKeys::generate(&OsRandom);
        let code = invitation(&device).to_code();
        for bad in [
            String::new(),
            "haven-link-1:".into(),
            code.replace("haven-link-1:", "haven-link-2:"),
            code[..code.len() - 4].to_owned(),
            format!("{code}AAAA"),
            code.replace('A', "*"),
        ] {
            if bad != code {
                assert!(LinkInvitation::parse(&bad).is_err(), "{bad}");
            }
        }
    }

    #[test]
    fn a_grant_opens_only_on_the_invited_device_through_its_mailbox() {
        let device = DeviceKeys::generate(&OsRandom);
        let invitation = invitation(&device);
        let grant = grant();
        let sealed = grant.seal_for(&invitation, &OsRandom).unwrap();
        let opened = LinkGrant::open(&sealed, &invitation, &device).unwrap();
        assert_eq!(
            opened.root_key.expose_secret(),
            grant.root_key.expose_secret()
        );
        assert_eq!(*opened.enrolment_token, *grant.enrolment_token);
        assert_eq!(opened.username, grant.username);

        let other = DeviceKeys::generate(&OsRandom);
        assert!(LinkGrant::open(&sealed, &invitation, &other).is_err());
        let moved = LinkInvitation {
            mailbox: HexId(random_array(&OsRandom)),
            ..invitation
        };
        assert!(LinkGrant::open(&sealed, &moved, &device).is_err());
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x20;
            assert!(
                LinkGrant::open(&tampered, &invitation, &device).is_err(),
                "byte {index}"
            );
        }
        assert!(LinkGrant::open(&sealed[..sealed.len() - 1], &invitation, &device).is_err());
        assert!(LinkGrant::open(&[0u8; 2000], &invitation, &device).is_err());
    }
}
