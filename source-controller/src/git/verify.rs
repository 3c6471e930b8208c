//! `spec.verify`: signatures of the HEAD commit and/or the tag, checked against the public keys of a Secret.
//! SSH signatures (`SSHSIG`, namespace `git`) are checked against OpenSSH public keys, PGP signatures against
//! ASCII-armored OpenPGP public keys (a signature by a bound, signing-capable subkey counts for its primary key).

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::SignatureType;
use pgp::types::KeyDetails;
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

/// Verifies an armored signature (PGP or SSH, told apart by the armor header) over `signed`; returns the key
/// that made it: the SHA256 fingerprint of an SSH key, the 16 hex digit ID of a PGP primary key.
pub fn verify_signature(
    what: &'static str,
    id: &str,
    signature: &str,
    signed: &[u8],
    keys: &Keys,
) -> Result<String, VerifyError> {
    let invalid = |reason: String| VerifyError::Invalid {
        what,
        id: id.to_string(),
        reason,
    };
    if signature.contains(PGP_SIGNATURE_HEADER) {
        return verify_pgp(signature, signed, &keys.pgp).map_err(invalid);
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

/// Verifies an armored detached PGP signature; returns the ID of the primary key whose (sub)key made it.
fn verify_pgp(signature: &str, signed: &[u8], keys: &[PgpKey]) -> Result<String, String> {
    let (sig, _) = DetachedSignature::from_string(signature.trim())
        .map_err(|e| format!("unable to read PGP signature: {e}"))?;
    if keys.is_empty() {
        return Err("no PGP public keys found in secret".to_string());
    }
    keys.iter()
        .find(|k| pgp_signed_by(&k.key, &sig, signed))
        .map(PgpKey::id)
        .ok_or_else(|| "no matching key found".to_string())
}

/// Whether `key`'s primary key, or one of its bound, unrevoked, signing-capable subkeys, made `sig` over `signed`.
fn pgp_signed_by(key: &SignedPublicKey, sig: &DetachedSignature, signed: &[u8]) -> bool {
    // A primary key with a broken self-signature, or a valid revocation, signs nothing.
    if key.details.verify_bindings(&key.primary_key).is_err()
        || !key.details.revocation_signatures.is_empty()
    {
        return false;
    }
    if sig.verify(&key.primary_key, signed).is_ok() {
        return true;
    }
    key.public_subkeys.iter().any(|sub| {
        let revoked = sub
            .signatures
            .iter()
            .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
        let signs = sub
            .signatures
            .iter()
            .any(|s| s.typ() == Some(SignatureType::SubkeyBinding) && s.key_flags().sign());
        signs
            && !revoked
            && sub.verify_bindings(&key.primary_key).is_ok()
            && sig.verify(&sub.key, signed).is_ok()
    })
}

/// Verifies the commit's signature; returns the key fingerprint.
pub fn verify_commit(repo: &Repository, sha: &str, keys: &Keys) -> Result<String, VerifyError> {
    let oid = Oid::from_str(sha).map_err(git_err)?;
    let (signature, signed) =
        repo.extract_signature(&oid, None)
            .map_err(|_| VerifyError::Unsigned {
                what: "commit",
                id: sha.to_string(),
            })?;
    let signature = String::from_utf8_lossy(&signature).to_string();
    verify_signature("commit", sha, &signature, &signed, keys)
}

/// Verifies an annotated tag's signature; returns the key fingerprint.
pub fn verify_tag(repo: &Repository, tag: &str, keys: &Keys) -> Result<String, VerifyError> {
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
            verify_signature("commit", "abc", BY_SUBKEY, PAYLOAD, &keys).unwrap(),
            "240681296104829A"
        );
        assert_eq!(
            verify_signature("commit", "abc", BY_RSA, PAYLOAD, &keys).unwrap(),
            "9A1C01379EAFBC0C"
        );
    }

    #[test]
    fn pgp_signature_rejected_for_other_keys_or_data() {
        let keys = load_keys("ns/keys", &secret(&[("team.asc", TWO_KEYS)])).unwrap();
        let err = verify_signature("commit", "abc", BY_STRANGER, PAYLOAD, &keys).unwrap_err();
        assert_eq!(err.reason(), "InvalidCommitSignature");
        assert_eq!(
            err.to_string(),
            "signature verification of commit 'abc' failed: no matching key found"
        );
        let mut tampered = PAYLOAD.to_vec();
        tampered.push(b'x');
        assert!(verify_signature("tag", "v1", BY_RSA, &tampered, &keys).is_err());

        let ssh_only = load_keys(
            "ns/keys",
            &secret(&[("a.sshpub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAU7FtJ7b1UOwzv72URoLXNYBhnwVCu9bhlxS+7DT0MW a@b")]),
        )
        .unwrap();
        let err = verify_signature("tag", "v1", BY_RSA, PAYLOAD, &ssh_only).unwrap_err();
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
}
