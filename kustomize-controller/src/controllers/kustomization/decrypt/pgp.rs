//! OpenPGP secret keys for SOPS `pgp` recipients: read from `.asc` Secret entries (what Flux imports into its
//! GnuPG keyring with `gpg --batch --import`) and used to open the armored PGP message that holds the data key.
//!
//! As with Flux, a key protected by a passphrase is accepted at import (gpg imports it as it is) but cannot
//! decrypt: Flux's keyring has no passphrase to unlock it with. Riptide says so in the decryption error.
//!
//! Messages name keys by fingerprint only; never key material, never a decrypted data key.

use std::io::Read as _;

use pgp::composed::{DecryptionOptions, Esk, Message, PublicOrSecret, SignedSecretKey, TheRing};
use pgp::packet::PublicKeyEncryptedSessionKey;
use pgp::types::KeyDetails;

/// The armor header every OpenPGP block starts with.
const ARMOR_BEGIN: &str = "-----BEGIN PGP ";
/// The blocks a key entry may hold.
const PRIVATE_KEY_BLOCK: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----";
const PUBLIC_KEY_BLOCK: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
/// More than a data key: anything longer is not one.
const MAX_DATA_KEY_READ: u64 = 64;

/// A transferable OpenPGP secret key and the Secret entry it came from.
#[derive(Clone)]
pub(super) struct PgpKey {
    pub(super) entry: String,
    pub(super) key: SignedSecretKey,
}

impl PgpKey {
    /// The primary key's fingerprint, upper-case hex (as `sops.pgp[].fp` and `gpg --list-keys` show it).
    pub(super) fn fingerprint(&self) -> String {
        format!("{:X}", self.key.primary_key.fingerprint())
    }

    /// Whether no part of the key (primary or subkey) has unprotected secret material.
    pub(super) fn locked(&self) -> bool {
        self.key.primary_key.secret_params().is_encrypted()
            && self
                .key
                .secret_subkeys
                .iter()
                .all(|s| s.key.secret_params().is_encrypted())
    }

    /// `(a usable part matches, a passphrase-protected part matches)` for the message's recipients.
    fn matches(&self, pkesks: &[&PublicKeyEncryptedSessionKey]) -> (bool, bool) {
        let primary = &self.key.primary_key;
        let parts = std::iter::once((
            recipient_of(pkesks, primary.public_key()),
            primary.secret_params().is_encrypted(),
        ))
        .chain(self.key.secret_subkeys.iter().map(|s| {
            (
                recipient_of(pkesks, s.key.public_key()),
                s.key.secret_params().is_encrypted(),
            )
        }));
        let (mut usable, mut locked) = (false, false);
        for (hit, encrypted) in parts {
            usable |= hit && !encrypted;
            locked |= hit && encrypted;
        }
        (usable, locked)
    }
}

/// Whether one of the message's session keys was encrypted to `key` (or to an anonymous recipient).
fn recipient_of(pkesks: &[&PublicKeyEncryptedSessionKey], key: &impl KeyDetails) -> bool {
    pkesks.iter().any(|p| p.match_identity(key))
}

/// The secret keys in a Secret entry: one or more ASCII-armored blocks (each with one or more keys), or binary
/// OpenPGP data. Public keys are accepted and left out (gpg imports them too; they decrypt nothing). Fails when
/// the entry holds no OpenPGP key data at all or a block does not parse. The reason never quotes the input.
pub(super) fn parse_secret_keys(data: &[u8]) -> Result<Vec<SignedSecretKey>, String> {
    let text = String::from_utf8_lossy(data);
    let starts: Vec<usize> = text.match_indices(ARMOR_BEGIN).map(|(i, _)| i).collect();
    if starts.is_empty() {
        return parse_binary(data);
    }
    let mut keys = Vec::new();
    let mut found = 0;
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        let block = &text[start..end];
        let n = n + 1;
        if !block.starts_with(PRIVATE_KEY_BLOCK) && !block.starts_with(PUBLIC_KEY_BLOCK) {
            // Named from a fixed list: the message never quotes the entry.
            let rest = &block[ARMOR_BEGIN.len()..];
            let kind = [
                ("MESSAGE-----", "a PGP message"),
                ("SIGNATURE-----", "a PGP signature"),
                ("SIGNED MESSAGE-----", "a PGP signed message"),
            ]
            .into_iter()
            .find(|(header, _)| rest.starts_with(header))
            .map_or("an unknown PGP block", |(_, kind)| kind);
            return Err(format!("armored block {n} is {kind}, not a key block"));
        }
        let malformed = || format!("armored block {n} is not valid OpenPGP key data");
        let (parsed, _) =
            PublicOrSecret::from_armor_many(block.as_bytes()).map_err(|_| malformed())?;
        for item in parsed {
            found += 1;
            if let PublicOrSecret::Secret(key) = item.map_err(|_| malformed())? {
                keys.push(key);
            }
        }
    }
    if found == 0 {
        return Err("no valid OpenPGP data found".into());
    }
    Ok(keys)
}

fn parse_binary(data: &[u8]) -> Result<Vec<SignedSecretKey>, String> {
    let none = || "no valid OpenPGP data found".to_string();
    let parsed = PublicOrSecret::from_bytes_many(data).map_err(|_| none())?;
    let mut keys = Vec::new();
    let mut found = 0;
    for item in parsed {
        found += 1;
        if let PublicOrSecret::Secret(key) = item.map_err(|_| none())? {
            keys.push(key);
        }
    }
    if found == 0 {
        return Err(none());
    }
    Ok(keys)
}

/// What opening one `sops.pgp[]` entry came to.
pub(super) enum Opened {
    /// The data key.
    Key([u8; 32]),
    /// It could not be opened; each note says why in words fit for a status message.
    Not(Vec<String>),
}

/// Opens the armored message `enc` (the data key encrypted for PGP recipient `fp`) with the first of `keys`
/// holding the secret (sub)key it was encrypted to. Like `gpg -d`, the recipient is found from the message's
/// key IDs, not from `fp`.
pub(super) fn open(keys: &[PgpKey], fp: &str, enc: &str) -> Opened {
    let not = |note: String| Opened::Not(vec![note]);
    let Ok((message, _)) = Message::from_string(enc.trim()) else {
        return not(format!(
            "the data key for PGP recipient {fp} is not an armored OpenPGP message"
        ));
    };
    let Message::Encrypted { esk, .. } = &message else {
        return not(format!(
            "the data key for PGP recipient {fp} is not an encrypted OpenPGP message"
        ));
    };
    let pkesks: Vec<&PublicKeyEncryptedSessionKey> = esk
        .iter()
        .filter_map(|e| match e {
            Esk::PublicKeyEncryptedSessionKey(p) => Some(p),
            Esk::SymKeyEncryptedSessionKey(_) => None,
        })
        .collect();
    let mut notes = Vec::new();
    let mut usable = Vec::new();
    for key in keys {
        match key.matches(&pkesks) {
            (true, _) => usable.push(&key.key),
            (false, true) => notes.push(format!(
                "PGP key {} (from '{}') holds the secret key for recipient {fp} but is protected by a passphrase, which cannot be used (export it without one)",
                key.fingerprint(),
                key.entry
            )),
            (false, false) => {}
        }
    }
    if usable.is_empty() {
        return Opened::Not(notes);
    }
    let failed = |notes: &mut Vec<String>| {
        notes.push(format!(
            "the data key for PGP recipient {fp} could not be decrypted with the matching secret key"
        ));
        Opened::Not(std::mem::take(notes))
    };
    let ring = TheRing {
        secret_keys: usable,
        // GnuPG 2.3+ encrypts with its OCB packet when the key advertises it.
        decrypt_options: DecryptionOptions::new().enable_gnupg_aead(),
        ..TheRing::default()
    };
    let Ok((message, _)) = message.decrypt_the_ring(ring, true) else {
        return failed(&mut notes);
    };
    // gpg compresses before it encrypts (unless told not to).
    let message = if message.is_compressed() {
        match message.decompress() {
            Ok(m) => m,
            Err(_) => return failed(&mut notes),
        }
    } else {
        message
    };
    let mut plain = Vec::new();
    // Reading to the end checks the integrity (MDC or AEAD tag).
    if message
        .take(MAX_DATA_KEY_READ)
        .read_to_end(&mut plain)
        .is_err()
    {
        return failed(&mut notes);
    }
    match <[u8; 32]>::try_from(plain.as_slice()) {
        Ok(key) => Opened::Key(key),
        Err(_) => not(format!(
            "the message for PGP recipient {fp} does not hold a 32-byte data key"
        )),
    }
}
