//! `spec.verify`: signatures of the HEAD commit and/or the tag, checked against the public keys of a Secret.
//! SSH signatures (`SSHSIG`, namespace `git`) are checked against OpenSSH public keys, PGP signatures against
//! ASCII-armored OpenPGP public keys (a signature by a bound, signing-capable subkey counts for its primary key).
//!
//! PGP signatures are judged as Flux judges them: `fluxcd/pkg/git` (`signature.VerifyPGPSignature`) hands them to
//! ProtonMail go-crypto's `openpgp.CheckArmoredDetachedSignature` with a nil config (`openpgp/read.go`,
//! `checkMessageSignatureDetails`; `openpgp/keys.go`, `KeysByIdUsage`; go-crypto v1.4.1, the version Flux's
//! source-controller builds with). Everything is judged at
//! the time of verification ("now", in whole seconds), **not** at the signature's creation time, so a signature
//! made while its key was valid is rejected once the key has expired. A signature (of type binary or text) is
//! accepted when:
//! - the key that made it may sign: the key flags of its self-signature include signing. For the primary key that
//!   is the latest self-certification of the primary user ID (the user ID with the fewest revocations, then the one
//!   marked primary, then the most recently certified; for a v6 key the latest direct-key signature); for a subkey,
//!   its latest binding signature (which, for a signing subkey, carries a valid cross-signature);
//! - none of the signatures involved (the signature itself, that primary self-signature, and for a subkey its
//!   binding signature and cross-signature) carries a critical notation (go-crypto knows none);
//! - neither the primary key, nor its primary user ID, nor the signing subkey is revoked (a revocation counts when
//!   it is not expired, and always when it says the key was compromised);
//! - the primary key has not expired: created no later than now, and now not past its creation time plus the
//!   key-expiration subpacket of the primary self-signature; likewise the subkey, by its binding signature;
//! - none of the signatures involved has expired: created no later than now, and now not past its creation time
//!   plus its signature-expiration subpacket.
//!
//! go-crypto says only "key expired", "signature expired" or "key revoked" (and Flux reports every failure as "no
//! matching key"); the errors here say which key or signature failed. Certifications of user IDs by other keys are ignored, as go-crypto ignores them.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{RevocationCode, Signature, SignatureType, SubpacketData};
use pgp::types::{Duration as PgpDuration, KeyDetails, KeyVersion, Tag};
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The namespace git signs with.
pub const GIT_NAMESPACE: &str = "git";

/// A signature could not be verified.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The Secret holds no usable public key.
    #[error("no public keys found in secret '{0}'")]
    NoKeys(String),
    /// The object carries no signature.
    #[error("unable to verify {what} '{id}': no signature")]
    Unsigned {
        /// `commit` or `tag`.
        what: &'static str,
        /// The commit SHA or tag name.
        id: String,
    },
    /// A Secret entry holds an armored PGP public key block that does not parse.
    #[error("unable to read PGP public keys from '{file}' in secret '{secret}': {reason}")]
    InvalidPgpKey {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The data key, e.g. `author.asc`.
        file: String,
        /// What the parser said.
        reason: String,
    },
    /// No key verifies the signature.
    #[error("signature verification of {what} '{id}' failed: {reason}")]
    Invalid {
        /// `commit` or `tag`.
        what: &'static str,
        /// The commit SHA or tag name.
        id: String,
        /// Why.
        reason: String,
    },
    /// Tag verification without a tag reference.
    #[error("cannot verify tag object's signature if a tag reference is not specified")]
    NoTagReference,
    /// The tag is lightweight: nothing to verify.
    #[error("unable to verify tag '{0}': not an annotated tag")]
    LightweightTag(String),
    /// The repository could not be read.
    #[error("{0}")]
    Git(String),
}

impl VerifyError {
    /// Flux's reason for the `SourceVerified` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Unsigned { what: "tag", .. }
            | VerifyError::Invalid { what: "tag", .. }
            | VerifyError::LightweightTag(_) => "InvalidTagSignature",
            VerifyError::Unsigned { .. } | VerifyError::Invalid { .. } => "InvalidCommitSignature",
            _ => common::api::meta::reasons::VERIFICATION_ERROR,
        }
    }
}

fn git_err(e: git2::Error) -> VerifyError {
    VerifyError::Git(e.message().to_string())
}

const PGP_KEY_HEADER: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const PGP_SIGNATURE_HEADER: &str = "-----BEGIN PGP SIGNATURE-----";
const SSH_SIGNATURE_HEADER: &str = "-----BEGIN SSH SIGNATURE-----";

/// An OpenPGP public key (a primary key with its subkeys) and the Secret entry it came from.
#[derive(Debug, Clone)]
pub struct PgpKey {
    /// The Secret data key, e.g. `author.asc`.
    pub file: String,
    /// The transferable public key.
    pub key: SignedPublicKey,
}

impl PgpKey {
    /// The 16 hex digit ID of the primary key, as Flux reports it (`KeyIdString`).
    pub fn id(&self) -> String {
        hex::encode_upper(self.key.primary_key.legacy_key_id())
    }
}

/// The public keys of a verification Secret.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// OpenSSH public keys (`.sshpub` entries; every line of every value that parses as one).
    pub ssh: Vec<PublicKey>,
    /// OpenPGP public keys (`.asc` entries; every armored public key block of every value).
    pub pgp: Vec<PgpKey>,
}

impl Keys {
    /// Whether no key at all was found.
    pub fn is_empty(&self) -> bool {
        self.ssh.is_empty() && self.pgp.is_empty()
    }
}

/// The public keys of a verification Secret: OpenSSH keys one a line, and ASCII-armored OpenPGP key blocks
/// (several blocks in one value, several keys in one block). A key block that does not parse is an error naming
/// its entry.
pub fn load_keys(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Keys, VerifyError> {
    let mut keys = Keys::default();
    for (file, value) in data {
        let Ok(text) = std::str::from_utf8(value) else {
            continue;
        };
        keys.ssh.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| PublicKey::from_openssh(l).ok()),
        );
        let pgp = parse_pgp_keys(text).map_err(|reason| VerifyError::InvalidPgpKey {
            secret: secret.to_string(),
            file: file.clone(),
            reason,
        })?;
        keys.pgp.extend(pgp.into_iter().map(|key| PgpKey {
            file: file.clone(),
            key,
        }));
    }
    if keys.is_empty() {
        return Err(VerifyError::NoKeys(secret.to_string()));
    }
    Ok(keys)
}

/// Every public key of every armored public key block in `text`.
fn parse_pgp_keys(text: &str) -> Result<Vec<SignedPublicKey>, String> {
    let mut keys = Vec::new();
    let starts: Vec<usize> = text.match_indices(PGP_KEY_HEADER).map(|(i, _)| i).collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        let (parsed, _) = SignedPublicKey::from_armor_many(&text.as_bytes()[start..end])
            .map_err(|e| format!("key block {}: {e}", n + 1))?;
        let before = keys.len();
        for key in parsed {
            keys.push(key.map_err(|e| format!("key block {}: {e}", n + 1))?);
        }
        if keys.len() == before {
            return Err(format!("key block {}: no public key", n + 1));
        }
    }
    Ok(keys)
}

/// Verifies an armored signature (PGP or SSH, told apart by the armor header) over `signed` at `now`; returns the
/// key that made it: the SHA256 fingerprint of an SSH key, the 16 hex digit ID of a PGP primary key.
pub fn verify_signature(
    what: &'static str,
    id: &str,
    signature: &str,
    signed: &[u8],
    keys: &Keys,
    now: jiff::Timestamp,
) -> Result<String, VerifyError> {
    let invalid = |reason: String| VerifyError::Invalid {
        what,
        id: id.to_string(),
        reason,
    };
    if signature.contains(PGP_SIGNATURE_HEADER) {
        return verify_pgp(signature, signed, &keys.pgp, now.as_second()).map_err(invalid);
    }
    let sig = SshSig::from_pem(signature.trim()).map_err(|e| invalid(e.to_string()))?;
    if sig.namespace() != GIT_NAMESPACE {
        return Err(invalid(format!(
            "unexpected namespace '{}'",
            sig.namespace()
        )));
    }
    for key in &keys.ssh {
        if key.key_data() == sig.public_key() && key.verify(GIT_NAMESPACE, signed, &sig).is_ok() {
            return Ok(key.fingerprint(HashAlg::Sha256).to_string());
        }
    }
    Err(invalid("no matching key found".to_string()))
}

/// Verifies an armored detached PGP signature at `now` (seconds since the epoch); returns the ID of the primary
/// key whose (sub)key made it. When a key made it but may not vouch for it (see the module docs), the signature is
/// rejected with the first such reason; when no key made it, no key matched.
fn verify_pgp(signature: &str, signed: &[u8], keys: &[PgpKey], now: i64) -> Result<String, String> {
    let (sig, _) = DetachedSignature::from_string(signature.trim())
        .map_err(|e| format!("unable to read PGP signature: {e}"))?;
    if !matches!(
        sig.signature.typ(),
        Some(SignatureType::Binary | SignatureType::Text)
    ) {
        return Err("unsupported PGP signature type".to_string());
    }
    if keys.is_empty() {
        return Err("no PGP public keys found in secret".to_string());
    }
    let mut rejected = None;
    for key in keys {
        let Some(signer) = PgpSigner::find(&key.key, &sig, signed) else {
            continue;
        };
        match signer.check(&sig.signature, now) {
            Ok(()) => return Ok(key.id()),
            Err(reason) => {
                rejected.get_or_insert(reason);
            }
        }
    }
    Err(rejected.unwrap_or_else(|| "no matching key found".to_string()))
}

/// The (sub)key of a transferable public key that made a signature, with the self-signatures that vouch for it.
struct PgpSigner<'a> {
    key: &'a SignedPublicKey,
    /// The primary key's self-signature: the latest self-certification of its primary user ID (v4 keys), or its
    /// latest direct-key signature (v6 keys).
    self_signature: &'a Signature,
    /// The certification revocations of the primary user ID.
    user_revocations: Vec<&'a Signature>,
    /// The subkey that made the signature, if it was not the primary key, with its latest binding signature.
    subkey: Option<(&'a SignedPublicSubKey, &'a Signature)>,
}

impl<'a> PgpSigner<'a> {
    /// The primary key or subkey of `key` that made `sig` over `signed`. A key whose self-signatures or revocations
    /// do not verify signs nothing, and neither does a subkey whose bindings do not verify.
    fn find(key: &'a SignedPublicKey, sig: &DetachedSignature, signed: &[u8]) -> Option<Self> {
        let (self_signature, user_revocations) = primary_self_signature(key)?;
        if key
            .details
            .revocation_signatures
            .iter()
            .any(|r| r.verify_key(&key.primary_key).is_err())
        {
            return None;
        }
        let signer = |subkey| PgpSigner {
            key,
            self_signature,
            user_revocations: user_revocations.clone(),
            subkey,
        };
        if sig.verify(&key.primary_key, signed).is_ok() {
            return Some(signer(None));
        }
        key.public_subkeys.iter().find_map(|sub| {
            if sub.verify_bindings(&key.primary_key).is_err()
                || sig.verify(&sub.key, signed).is_err()
            {
                return None;
            }
            let binding = latest(
                sub.signatures
                    .iter()
                    .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
            )?;
            Some(signer(Some((sub, binding))))
        })
    }

    /// Whether the signer may vouch for `sig` at `now`, checked in go-crypto's order: signing key flag, critical
    /// notations, revocation, key expiry, then the expiry of every signature involved.
    fn check(&self, sig: &Signature, now: i64) -> Result<(), String> {
        let id = hex::encode_upper(self.key.primary_key.legacy_key_id());
        let subkey = self
            .subkey
            .map(|(sub, binding)| (sub, binding, hex::encode_upper(sub.key.legacy_key_id())));
        let signing_key = match &subkey {
            None => format!("key '{id}'"),
            Some((_, _, sub)) => format!("subkey '{sub}' of key '{id}'"),
        };

        let flags = subkey.as_ref().map_or(self.self_signature, |(_, b, _)| b);
        if !flags.key_flags().sign() {
            return Err(format!("{signing_key} is not a signing key"));
        }

        let mut involved = vec![
            ("signature".to_string(), sig),
            (format!("self-signature of key '{id}'"), self.self_signature),
        ];
        if let Some((_, binding, sub)) = &subkey {
            involved.push((format!("binding signature of subkey '{sub}'"), binding));
            if let Some(back) = binding.embedded_signature() {
                involved.push((format!("cross-signature of subkey '{sub}'"), back));
            }
        }
        for (what, s) in &involved {
            if let Some(name) = critical_notation(s) {
                return Err(format!("{what} has an unknown critical notation '{name}'"));
            }
        }

        if revoked(&self.key.details.revocation_signatures, now)
            || revoked(self.user_revocations.iter().copied(), now)
        {
            return Err(format!("key '{id}' is revoked"));
        }
        if let Some((sub, _, _)) = &subkey {
            let revocations = sub
                .signatures
                .iter()
                .filter(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
            if revoked(revocations, now) {
                return Err(format!("{signing_key} is revoked"));
            }
        }

        validity(
            self.key.primary_key.created_at().as_secs().into(),
            self.self_signature.key_expiration_time(),
            now,
        )
        .map_err(|v| format!("key '{id}' {v}"))?;
        if let Some((sub, binding, _)) = &subkey {
            validity(
                sub.key.created_at().as_secs().into(),
                binding.key_expiration_time(),
                now,
            )
            .map_err(|v| format!("{signing_key} {v}"))?;
        }
        for (what, s) in &involved {
            validity(created(s), s.signature_expiration_time(), now)
                .map_err(|v| format!("{what} {v}"))?;
        }
        Ok(())
    }
}

/// The self-signature that holds a primary key's flags and expiry, as go-crypto picks it, and the revocations of the
/// primary user ID. A v6 key: its latest direct-key signature. A v4 key: the latest self-certification of its
/// primary user ID, the one with the fewest revocations, then marked primary, then the most recently certified.
/// `None` when there is none, or when a self-signature does not verify (go-crypto then drops the whole key).
/// Certifications by other keys are ignored.
fn primary_self_signature(key: &SignedPublicKey) -> Option<(&Signature, Vec<&Signature>)> {
    let primary = &key.primary_key;
    if primary.version() == KeyVersion::V6 {
        let direct = latest(
            key.details
                .direct_signatures
                .iter()
                .filter(|s| s.typ() == Some(SignatureType::Key) && issued_by(s, primary)),
        )?;
        direct.verify_key(primary).ok()?;
        return Some((direct, Vec::new()));
    }
    let mut primary_user: Option<(&Signature, Vec<&Signature>)> = None;
    for user in &key.details.users {
        let mut certifications = Vec::new();
        let mut revocations = Vec::new();
        for sig in user.signatures.iter().filter(|s| issued_by(s, primary)) {
            sig.verify_certification(primary, Tag::UserId, &user.id)
                .ok()?;
            if sig.typ() == Some(SignatureType::CertRevocation) {
                revocations.push(sig);
            } else {
                certifications.push(sig);
            }
        }
        let Some(certification) = latest(certifications) else {
            continue;
        };
        let preferred = match &primary_user {
            None => true,
            Some((best, best_revocations)) => {
                (
                    std::cmp::Reverse(revocations.len()),
                    certification.is_primary(),
                    created(certification),
                ) > (
                    std::cmp::Reverse(best_revocations.len()),
                    best.is_primary(),
                    created(best),
                )
            }
        };
        if preferred {
            primary_user = Some((certification, revocations));
        }
    }
    primary_user
}

/// Whether `key` issued `sig`, as go-crypto decides it: by the issuer fingerprint if there is one, else by the
/// issuer key ID.
fn issued_by(sig: &Signature, key: &impl KeyDetails) -> bool {
    let fingerprints = sig.issuer_fingerprint();
    if !fingerprints.is_empty() {
        return fingerprints.iter().any(|f| **f == key.fingerprint());
    }
    sig.issuer_key_id()
        .iter()
        .any(|k| **k == key.legacy_key_id())
}

/// The most recently created of `sigs` (the first of equals).
fn latest<'a>(sigs: impl IntoIterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.into_iter().fold(None, |best, sig| match best {
        Some(b) if created(sig) <= created(b) => Some(b),
        _ => Some(sig),
    })
}

/// When `sig` was made, in seconds since the epoch (0 if it does not say).
fn created(sig: &Signature) -> i64 {
    sig.created().map_or(0, |t| t.as_secs().into())
}

/// The name of the first critical notation in `sig`'s hashed area: go-crypto knows none, so it rejects them all.
fn critical_notation(sig: &Signature) -> Option<String> {
    sig.config()?
        .hashed_subpackets()
        .find_map(|p| match &p.data {
            SubpacketData::Notation(n) if p.is_critical => {
                Some(String::from_utf8_lossy(&n.name).into_owned())
            }
            _ => None,
        })
}

/// Whether one of `revocations` counts at `now`: always one saying the key was compromised, else one that is valid
/// at `now`.
fn revoked<'a>(revocations: impl IntoIterator<Item = &'a Signature>, now: i64) -> bool {
    revocations.into_iter().any(|r| {
        r.revocation_reason_code() == Some(&RevocationCode::KeyCompromised)
            || validity(created(r), r.signature_expiration_time(), now).is_ok()
    })
}

/// Why a key or signature is not valid at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalid {
    /// Created after that time.
    NotYet,
    /// Its lifetime ended before that time.
    Expired,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Invalid::NotYet => "is not valid yet",
            Invalid::Expired => "expired",
        })
    }
}

/// Whether something created at `created` with `lifetime` (none or zero: forever) is valid at `now`, all in whole
/// seconds: not created after `now`, and `now` not past `created + lifetime`.
fn validity(created: i64, lifetime: Option<PgpDuration>, now: i64) -> Result<(), Invalid> {
    if created > now {
        return Err(Invalid::NotYet);
    }
    match lifetime.map(|l| i64::from(l.as_secs())) {
        Some(secs) if secs != 0 && now > created + secs => Err(Invalid::Expired),
        _ => Ok(()),
    }
}

/// Verifies the commit's signature at `now`; returns the key fingerprint.
pub fn verify_commit(
    repo: &Repository,
    sha: &str,
    keys: &Keys,
    now: jiff::Timestamp,
) -> Result<String, VerifyError> {
    let oid = Oid::from_str(sha).map_err(git_err)?;
    let (signature, signed) =
        repo.extract_signature(&oid, None)
            .map_err(|_| VerifyError::Unsigned {
                what: "commit",
                id: sha.to_string(),
            })?;
    let signature = String::from_utf8_lossy(&signature).to_string();
    verify_signature("commit", sha, &signature, &signed, keys, now)
}

/// Verifies an annotated tag's signature at `now`; returns the key fingerprint.
pub fn verify_tag(
    repo: &Repository,
    tag: &str,
    keys: &Keys,
    now: jiff::Timestamp,
) -> Result<String, VerifyError> {
    let reference = repo
        .find_reference(&format!("refs/tags/{tag}"))
        .map_err(git_err)?;
    let oid = reference
        .target()
        .ok_or_else(|| VerifyError::LightweightTag(tag.to_string()))?;
    let odb = repo.odb().map_err(git_err)?;
    let object = odb.read(oid).map_err(git_err)?;
    if object.kind() != ObjectType::Tag {
        return Err(VerifyError::LightweightTag(tag.to_string()));
    }
    let data = object.data();
    let Some(start) = tag_signature_start(data) else {
        return Err(VerifyError::Unsigned {
            what: "tag",
            id: tag.to_string(),
        });
    };
    let (signed, signature) = data.split_at(start);
    verify_signature(
        "tag",
        tag,
        &String::from_utf8_lossy(signature),
        signed,
        keys,
        now,
    )
}

/// Where the signature appended to a tag object's message starts: the first line that is a PGP or SSH signature
/// armor header. Everything before it is the signed payload.
fn tag_signature_start(data: &[u8]) -> Option<usize> {
    let mut offset = 0;
    for line in data.split_inclusive(|&b| b == b'\n') {
        let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
        if trimmed == PGP_SIGNATURE_HEADER.as_bytes() || trimmed == SSH_SIGNATURE_HEADER.as_bytes()
        {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_secret_values() {
        let data = BTreeMap::from([(
            "author.sshpub".to_string(),
            b"# a comment\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAU7FtJ7b1UOwzv72URoLXNYBhnwVCu9bhlxS+7DT0MW a@b\n".to_vec(),
        )]);
        assert_eq!(load_keys("ns/keys", &data).unwrap().ssh.len(), 1);
        assert_eq!(
            load_keys("ns/keys", &BTreeMap::new()).unwrap_err(),
            VerifyError::NoKeys("ns/keys".into())
        );
    }

    const TWO_KEYS: &str = include_str!("../../testdata/pgp/two-keys.asc");
    const STRANGER: &str = include_str!("../../testdata/pgp/stranger.asc");
    const PAYLOAD: &[u8] = include_bytes!("../../testdata/pgp/payload");
    /// Made by the ed25519 signing subkey of `Sub Signer` (primary key 240681296104829A, certify only).
    const BY_SUBKEY: &str = include_str!("../../testdata/pgp/payload.subkey.sig");
    /// Made by `Rsa Signer` (9A1C01379EAFBC0C, an RSA primary key that signs).
    const BY_RSA: &str = include_str!("../../testdata/pgp/payload.rsa.sig");
    const BY_STRANGER: &str = include_str!("../../testdata/pgp/payload.stranger.sig");

    fn secret(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn pgp_keys_from_one_or_several_blocks() {
        let keys = load_keys("ns/keys", &secret(&[("team.asc", TWO_KEYS)])).unwrap();
        let ids: Vec<String> = keys.pgp.iter().map(PgpKey::id).collect();
        assert_eq!(ids, ["240681296104829A", "9A1C01379EAFBC0C"]);
        assert_eq!(keys.pgp[0].file, "team.asc");
        assert!(keys.ssh.is_empty());

        let both = format!("{STRANGER}\n{TWO_KEYS}");
        let keys = load_keys("ns/keys", &secret(&[("all.asc", &both)])).unwrap();
        assert_eq!(keys.pgp.len(), 3);
    }

    #[test]
    fn broken_pgp_key_block_names_its_entry() {
        let broken = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n";
        let err = load_keys(
            "ns/keys",
            &secret(&[("good.asc", TWO_KEYS), ("bad.asc", broken)]),
        )
        .unwrap_err();
        assert!(
            matches!(&err, VerifyError::InvalidPgpKey { file, secret, .. } if file == "bad.asc" && secret == "ns/keys"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("unable to read PGP public keys from 'bad.asc' in secret 'ns/keys': "),
            "{err}"
        );
    }

    #[test]
    fn pgp_signature_by_primary_key_or_signing_subkey() {
        let keys = load_keys("ns/keys", &secret(&[("team.asc", TWO_KEYS)])).unwrap();
        assert_eq!(
            verify_signature(
                "commit",
                "abc",
                BY_SUBKEY,
                PAYLOAD,
                &keys,
                jiff::Timestamp::now()
            )
            .unwrap(),
            "240681296104829A"
        );
        assert_eq!(
            verify_signature(
                "commit",
                "abc",
                BY_RSA,
                PAYLOAD,
                &keys,
                jiff::Timestamp::now()
            )
            .unwrap(),
            "9A1C01379EAFBC0C"
        );
    }

    #[test]
    fn pgp_signature_rejected_for_other_keys_or_data() {
        let keys = load_keys("ns/keys", &secret(&[("team.asc", TWO_KEYS)])).unwrap();
        let err = verify_signature(
            "commit",
            "abc",
            BY_STRANGER,
            PAYLOAD,
            &keys,
            jiff::Timestamp::now(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidCommitSignature");
        assert_eq!(
            err.to_string(),
            "signature verification of commit 'abc' failed: no matching key found"
        );
        let mut tampered = PAYLOAD.to_vec();
        tampered.push(b'x');
        assert!(
            verify_signature(
                "tag",
                "v1",
                BY_RSA,
                &tampered,
                &keys,
                jiff::Timestamp::now()
            )
            .is_err()
        );

        let ssh_only = load_keys(
            "ns/keys",
            &secret(&[("a.sshpub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAU7FtJ7b1UOwzv72URoLXNYBhnwVCu9bhlxS+7DT0MW a@b")]),
        )
        .unwrap();
        let err = verify_signature(
            "tag",
            "v1",
            BY_RSA,
            PAYLOAD,
            &ssh_only,
            jiff::Timestamp::now(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidTagSignature");
        assert!(err.to_string().contains("no PGP public keys"), "{err}");
    }

    #[test]
    fn garbled_pgp_signature_is_invalid() {
        let keys = load_keys("ns/keys", &secret(&[("team.asc", TWO_KEYS)])).unwrap();
        let err = verify_signature(
            "commit",
            "abc",
            "-----BEGIN PGP SIGNATURE-----\nx\n-----END PGP SIGNATURE-----",
            b"data",
            &keys,
            jiff::Timestamp::now(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidCommitSignature");
        assert!(
            err.to_string().contains("unable to read PGP signature"),
            "{err}"
        );
    }

    #[test]
    fn tag_payload_ends_before_the_signature_line() {
        let tag = b"object 0123\ntype commit\ntag v1\ntagger A <a@b> 1 +0000\n\nmentions -----BEGIN PGP SIGNATURE----- inline\n-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        let start = tag_signature_start(tag).unwrap();
        assert!(tag[..start].ends_with(b"inline\n"));
        assert!(tag[start..].starts_with(b"-----BEGIN PGP SIGNATURE-----\n"));
        assert_eq!(tag_signature_start(b"object 0123\n\nno signature\n"), None);
    }

    /// A throwaway gpg home (short path: gpg-agent's socket lives in it). Every command runs at a faked, frozen
    /// time, so keys and signatures get exactly the timestamps a test asks for.
    struct Gpg {
        home: tempfile::TempDir,
    }

    /// 2020-01-01T00:00:00Z, when the test keys are made.
    const T0: i64 = 1_577_836_800;
    const HOUR: i64 = 3600;
    const DAY: i64 = 24 * HOUR;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(secs).unwrap()
    }

    impl Gpg {
        fn new() -> Gpg {
            let home = tempfile::Builder::new()
                .prefix("gpg")
                .tempdir_in("/tmp")
                .unwrap();
            Gpg { home }
        }

        /// Runs gpg at `secs` (seconds since the epoch) with `stdin`; returns its stdout.
        fn run_at(&self, secs: i64, args: &[&str], stdin: &str) -> String {
            use std::io::Write;
            let time = format!("{}!", at(secs).strftime("%Y%m%dT%H%M%S"));
            let mut child = std::process::Command::new("gpg")
                .args(["--batch", "--no-tty", "--yes", "--passphrase", ""])
                .args(["--pinentry-mode", "loopback", "--faked-system-time", &time])
                .args(args)
                .env("GNUPGHOME", self.home.path())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("gpg (apt-get install gnupg)");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap()
        }

        /// The 16 hex digit IDs of `user`'s primary key and subkeys, primary first.
        fn key_ids(&self, user: &str) -> Vec<String> {
            self.run_at(T0, &["--with-colons", "--list-keys", user], "")
                .lines()
                .filter(|l| l.starts_with("pub:") || l.starts_with("sub:"))
                .filter_map(|l| l.split(':').nth(4).map(str::to_string))
                .collect()
        }

        /// The fingerprint of `user`'s primary key.
        fn fingerprint(&self, user: &str) -> String {
            self.run_at(T0, &["--with-colons", "--list-keys", user], "")
                .lines()
                .find(|l| l.starts_with("fpr:"))
                .and_then(|l| l.split(':').nth(9))
                .unwrap()
                .to_string()
        }

        /// A key for `user` made at `secs` (`usage` e.g. `sign`, `cert`; `expire` e.g. `1d`, `never`); returns its
        /// ID.
        fn generate(&self, secs: i64, user: &str, usage: &str, expire: &str) -> String {
            self.run_at(
                secs,
                &["--quick-gen-key", user, "ed25519", usage, expire],
                "",
            );
            self.key_ids(user).remove(0)
        }

        /// An ed25519 signing subkey of `user` made at `secs`; returns its ID.
        fn add_signing_subkey(&self, secs: i64, user: &str, expire: &str) -> String {
            let fingerprint = self.fingerprint(user);
            self.run_at(
                secs,
                &["--quick-add-key", &fingerprint, "ed25519", "sign", expire],
                "",
            );
            self.key_ids(user).pop().unwrap()
        }

        /// An armored detached signature of [`PAYLOAD`] by `user` made at `secs`, with extra gpg options.
        fn sign(&self, secs: i64, user: &str, options: &[&str]) -> String {
            let mut args = vec!["--local-user", user];
            args.extend_from_slice(options);
            args.extend(["--armor", "--detach-sign"]);
            self.run_at(secs, &args, std::str::from_utf8(PAYLOAD).unwrap())
        }

        /// Edits `user`'s key at `secs` with `--edit-key` commands, one a line.
        fn edit(&self, secs: i64, user: &str, commands: &str) {
            self.run_at(
                secs,
                &["--expert", "--command-fd", "0", "--edit-key", user],
                commands,
            );
        }

        /// The Secret-shaped keys of `users`, exported in one armored block.
        fn keys(&self, users: &[&str]) -> Keys {
            let mut args = vec!["--armor", "--export"];
            args.extend_from_slice(users);
            let block = self.run_at(T0, &args, "");
            load_keys("ns/keys", &secret(&[("keys.asc", &block)])).unwrap()
        }
    }

    impl Drop for Gpg {
        fn drop(&mut self) {
            let _ = std::process::Command::new("gpgconf")
                .args(["--kill", "gpg-agent"])
                .env("GNUPGHOME", self.home.path())
                .status();
        }
    }

    /// Verifies `sig` over [`PAYLOAD`] as a commit's signature at `now`: the key ID, or the reason it was rejected.
    fn verdict(sig: &str, keys: &Keys, now: jiff::Timestamp) -> Result<String, String> {
        verify_signature("commit", "abc", sig, PAYLOAD, keys, now).map_err(|e| {
            assert_eq!(e.reason(), "InvalidCommitSignature", "{e}");
            e.to_string()
                .strip_prefix("signature verification of commit 'abc' failed: ")
                .unwrap_or_else(|| panic!("message shape: {e}"))
                .to_string()
        })
    }

    #[test]
    fn pgp_primary_key_expiry_is_judged_at_verification_time() {
        let gpg = Gpg::new();
        let id = gpg.generate(T0, "Expiring <e@example.com>", "sign,cert", "1d");
        let sig = gpg.sign(T0 + HOUR, "Expiring", &[]);
        let keys = gpg.keys(&["Expiring"]);

        assert_eq!(verdict(&sig, &keys, at(T0 + 2 * HOUR)), Ok(id.clone()));
        // Valid through its last second (go-crypto: expired when now > creation + lifetime).
        assert_eq!(verdict(&sig, &keys, at(T0 + DAY)), Ok(id.clone()));
        let expired = Err(format!("key '{id}' expired"));
        assert_eq!(verdict(&sig, &keys, at(T0 + DAY + 1)), expired);
        // Made while the key was valid, but the key has expired since: rejected, as Flux rejects it.
        assert_eq!(verdict(&sig, &keys, jiff::Timestamp::now()), expired);
        // Not yet made at that time.
        assert_eq!(
            verdict(&sig, &keys, at(T0 + HOUR - 1)),
            Err("signature is not valid yet".to_string())
        );
    }

    #[test]
    fn pgp_signature_made_after_the_key_expired_is_rejected() {
        let gpg = Gpg::new();
        let id = gpg.generate(T0, "Late <late@example.com>", "sign,cert", "never");
        let sig = gpg.sign(T0 + 2 * DAY, "Late", &[]);
        // A newer self-signature (dated T0 + 1h; gpg runs at a faked time) gives the key a lifetime of 1d1h.
        gpg.run_at(
            T0 + HOUR,
            &["--quick-set-expire", &gpg.fingerprint("Late"), "1d"],
            "",
        );
        let keys = gpg.keys(&["Late"]);

        let expired = Err(format!("key '{id}' expired"));
        assert_eq!(verdict(&sig, &keys, at(T0 + 2 * DAY)), expired);
        assert_eq!(verdict(&sig, &keys, jiff::Timestamp::now()), expired);
    }

    #[test]
    fn pgp_signing_subkey_expiry_is_its_binding_signatures() {
        let gpg = Gpg::new();
        let id = gpg.generate(T0, "Sub <sub@example.com>", "cert", "never");
        let sub = gpg.add_signing_subkey(T0, "Sub", "1d");
        let sig = gpg.sign(T0 + HOUR, "Sub", &[]);
        let keys = gpg.keys(&["Sub"]);

        // The primary key's ID is reported for its subkey's signature.
        assert_eq!(verdict(&sig, &keys, at(T0 + 2 * HOUR)), Ok(id.clone()));
        let expired = Err(format!("subkey '{sub}' of key '{id}' expired"));
        assert_eq!(verdict(&sig, &keys, at(T0 + DAY + 1)), expired);
        assert_eq!(verdict(&sig, &keys, jiff::Timestamp::now()), expired);
    }

    #[test]
    fn pgp_signature_expiry() {
        let gpg = Gpg::new();
        let id = gpg.generate(T0, "Brief <brief@example.com>", "sign,cert", "never");
        let sig = gpg.sign(T0 + HOUR, "Brief", &["--default-sig-expire", "1d"]);
        let keys = gpg.keys(&["Brief"]);

        assert_eq!(verdict(&sig, &keys, at(T0 + HOUR + DAY)), Ok(id));
        let expired = Err("signature expired".to_string());
        assert_eq!(verdict(&sig, &keys, at(T0 + HOUR + DAY + 1)), expired);
        assert_eq!(verdict(&sig, &keys, jiff::Timestamp::now()), expired);
    }

    #[test]
    fn pgp_signature_with_a_critical_notation_is_rejected() {
        let gpg = Gpg::new();
        let id = gpg.generate(T0, "Noted <noted@example.com>", "sign,cert", "never");
        let plain = gpg.sign(
            T0 + HOUR,
            "Noted",
            &["--sig-notation", "ticket@example.com=1"],
        );
        let critical = gpg.sign(
            T0 + HOUR,
            "Noted",
            &["--sig-notation", "!ticket@example.com=1"],
        );
        let keys = gpg.keys(&["Noted"]);
        assert_eq!(verdict(&plain, &keys, at(T0 + 2 * HOUR)), Ok(id));
        assert_eq!(
            verdict(&critical, &keys, at(T0 + 2 * HOUR)),
            Err("signature has an unknown critical notation 'ticket@example.com'".to_string())
        );
    }

    #[test]
    fn pgp_key_must_be_flagged_for_signing() {
        let gpg = Gpg::new();
        let id = gpg.generate(T0, "Primary <primary@example.com>", "sign,cert", "never");
        let by_primary = gpg.sign(T0 + HOUR, "Primary", &[]);
        let cert = gpg.generate(T0, "Holder <holder@example.com>", "cert", "never");
        let sub = gpg.add_signing_subkey(T0, "Holder", "never");
        let by_subkey = gpg.sign(T0 + HOUR, "Holder", &[]);
        let before = gpg.keys(&["Primary", "Holder"]);
        assert_eq!(
            verdict(&by_primary, &before, at(T0 + 2 * HOUR)),
            Ok(id.clone())
        );
        assert_eq!(
            verdict(&by_subkey, &before, at(T0 + 2 * HOUR)),
            Ok(cert.clone())
        );

        // Newer self-signatures take the signing flag away: from the primary key (certify only), and from the
        // subkey (authenticate only).
        gpg.edit(T0 + 2 * HOUR, "Primary", "change-usage\nS\nQ\nsave\n");
        gpg.edit(
            T0 + 2 * HOUR,
            "Holder",
            "key 1\nchange-usage\nS\nA\nQ\nsave\n",
        );
        let after = gpg.keys(&["Primary", "Holder"]);
        assert_eq!(
            verdict(&by_primary, &after, at(T0 + 3 * HOUR)),
            Err(format!("key '{id}' is not a signing key"))
        );
        assert_eq!(
            verdict(&by_subkey, &after, at(T0 + 3 * HOUR)),
            Err(format!(
                "subkey '{sub}' of key '{cert}' is not a signing key"
            ))
        );
    }

    #[test]
    fn pgp_revoked_key_is_rejected() {
        let gpg = Gpg::new();
        let id = gpg.generate(T0, "Gone <gone@example.com>", "sign,cert", "never");
        let sig = gpg.sign(T0 + HOUR, "Gone", &[]);
        // gpg stores a revocation certificate for every key it makes, its armor header disarmed with a colon.
        let fingerprint = gpg.fingerprint("Gone");
        let revocation = std::fs::read_to_string(
            gpg.home
                .path()
                .join(format!("openpgp-revocs.d/{fingerprint}.rev")),
        )
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
        gpg.run_at(T0 + 2 * HOUR, &["--import"], &revocation);
        let keys = gpg.keys(&["Gone"]);
        assert_eq!(
            verdict(&sig, &keys, at(T0 + 3 * HOUR)),
            Err(format!("key '{id}' is revoked"))
        );
    }

    #[test]
    fn pgp_certifications_by_other_keys_do_not_break_a_key() {
        let gpg = Gpg::new();
        let id = gpg.generate(T0, "Known <known@example.com>", "sign,cert", "never");
        let friend = gpg.generate(T0, "Friend <friend@example.com>", "sign,cert", "never");
        gpg.run_at(
            T0 + HOUR,
            &[
                "--local-user",
                &friend,
                "--quick-sign-key",
                &gpg.fingerprint("Known"),
            ],
            "",
        );
        let sig = gpg.sign(T0 + HOUR, "Known", &[]);
        // Only Known's key is in the Secret: Friend's certification of its user ID cannot be checked, and is ignored.
        let keys = gpg.keys(&["Known"]);
        assert_eq!(verdict(&sig, &keys, at(T0 + 2 * HOUR)), Ok(id));
    }
}
