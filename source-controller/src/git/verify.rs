//! `spec.verify`: signatures of the HEAD commit and/or the tag, checked against the public keys of a Secret.
//! SSH signatures (`SSHSIG`, namespace `git`) are verified; PGP signatures are recognised and reported as not
//! supported yet.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};
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
    /// A PGP signature: not supported yet.
    #[error("signature verification of {what} '{id}' failed: PGP signatures are not supported yet")]
    PgpUnsupported {
        /// `commit` or `tag`.
        what: &'static str,
        /// The commit SHA or tag name.
        id: String,
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
            | VerifyError::PgpUnsupported { what: "tag", .. }
            | VerifyError::Invalid { what: "tag", .. }
            | VerifyError::LightweightTag(_) => "InvalidTagSignature",
            VerifyError::Unsigned { .. }
            | VerifyError::PgpUnsupported { .. }
            | VerifyError::Invalid { .. } => "InvalidCommitSignature",
            _ => common::api::meta::reasons::VERIFICATION_ERROR,
        }
    }
}

fn git_err(e: git2::Error) -> VerifyError {
    VerifyError::Git(e.message().to_string())
}

/// The SSH public keys of a verification Secret (every value, one OpenSSH key per line).
pub fn load_keys(
    secret: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<PublicKey>, VerifyError> {
    let keys: Vec<PublicKey> = data
        .values()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| PublicKey::from_openssh(l).ok())
        .collect();
    let has_pgp = data
        .values()
        .any(|v| String::from_utf8_lossy(v).contains("BEGIN PGP PUBLIC KEY BLOCK"));
    if keys.is_empty() && !has_pgp {
        return Err(VerifyError::NoKeys(secret.to_string()));
    }
    Ok(keys)
}

/// Verifies an armored signature over `signed`; returns the SHA256 fingerprint of the key that made it.
pub fn verify_signature(
    what: &'static str,
    id: &str,
    signature: &str,
    signed: &[u8],
    keys: &[PublicKey],
) -> Result<String, VerifyError> {
    let invalid = |reason: String| VerifyError::Invalid {
        what,
        id: id.to_string(),
        reason,
    };
    if signature.contains("BEGIN PGP SIGNATURE") {
        return Err(VerifyError::PgpUnsupported {
            what,
            id: id.to_string(),
        });
    }
    let sig = SshSig::from_pem(signature.trim()).map_err(|e| invalid(e.to_string()))?;
    if sig.namespace() != GIT_NAMESPACE {
        return Err(invalid(format!(
            "unexpected namespace '{}'",
            sig.namespace()
        )));
    }
    for key in keys {
        if key.key_data() == sig.public_key() && key.verify(GIT_NAMESPACE, signed, &sig).is_ok() {
            return Ok(key.fingerprint(HashAlg::Sha256).to_string());
        }
    }
    Err(invalid("no matching key found".to_string()))
}

/// Verifies the commit's signature; returns the key fingerprint.
pub fn verify_commit(
    repo: &Repository,
    sha: &str,
    keys: &[PublicKey],
) -> Result<String, VerifyError> {
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
pub fn verify_tag(repo: &Repository, tag: &str, keys: &[PublicKey]) -> Result<String, VerifyError> {
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
    let text = String::from_utf8_lossy(data);
    let Some(start) = text
        .find("-----BEGIN SSH SIGNATURE-----")
        .or_else(|| text.find("-----BEGIN PGP SIGNATURE-----"))
    else {
        return Err(VerifyError::Unsigned {
            what: "tag",
            id: tag.to_string(),
        });
    };
    verify_signature("tag", tag, &text[start..], &data[..start], keys)
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
        assert_eq!(load_keys("ns/keys", &data).unwrap().len(), 1);
        assert_eq!(
            load_keys("ns/keys", &BTreeMap::new()).unwrap_err(),
            VerifyError::NoKeys("ns/keys".into())
        );
    }

    #[test]
    fn pgp_signatures_are_reported_unsupported() {
        let err = verify_signature(
            "commit",
            "abc",
            "-----BEGIN PGP SIGNATURE-----\nx\n-----END PGP SIGNATURE-----",
            b"data",
            &[],
        )
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidCommitSignature");
        assert!(
            err.to_string()
                .contains("PGP signatures are not supported yet")
        );
    }
}
