//! The update policy, as a pure function of the fetched bytes, the key and what the server
//! knows: which version runs, the newest ever accepted, its target, the time.

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::{
    manifest::{claimed_version, signature_is_valid, Artifact, ReleaseManifest},
    Result, UpdateError,
};

/// What a manifest is checked against.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    /// The key releases are signed with (`IMIX_UPDATE_PUBLIC_KEY`).
    pub key: &'a VerifyingKey,
    /// The running version.
    pub running: &'a semver::Version,
    /// The newest version this server ever accepted (from the store).
    pub accepted: Option<&'a semver::Version>,
    /// This server's target triple.
    pub target: &'a str,
    /// Now.
    pub now: DateTime<Utc>,
}

/// A manifest that passed every check, with the artifact for this target.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRelease {
    /// The manifest.
    pub manifest: ReleaseManifest,
    /// The artifact for this server's target.
    pub artifact: Artifact,
    /// The SHA-256 of the manifest's bytes (hex), for the log and the audit trail.
    pub manifest_sha256: String,
}

/// Checks a fetched manifest, in this order: signature present, signature valid (over the
/// exact bytes, with the version bound in), manifest well-formed, not expired, an artifact
/// for this target, newer than the running version, not older than the newest accepted,
/// and the running version at least `min_version`. The first failing check is the error.
pub fn verify_release(
    manifest_bytes: &[u8],
    signature: Option<&[u8]>,
    policy: &Policy<'_>,
) -> Result<VerifiedRelease> {
    let signature = signature.ok_or(UpdateError::SignatureMissing)?;
    let claimed = claimed_version(manifest_bytes).map_err(|e| UpdateError::ManifestInvalid {
        field: "version".into(),
        problem: e.to_string(),
    })?;
    if !signature_is_valid(policy.key, &claimed, manifest_bytes, signature) {
        return Err(UpdateError::SignatureInvalid);
    }
    let manifest: ReleaseManifest =
        serde_json::from_slice(manifest_bytes).map_err(|e| UpdateError::ManifestInvalid {
            field: "manifest".into(),
            problem: e.to_string(),
        })?;
    if manifest.expires_at <= policy.now {
        return Err(UpdateError::Expired {
            expires_at: manifest.expires_at,
        });
    }
    let artifact = manifest
        .artifacts
        .get(policy.target)
        .cloned()
        .ok_or_else(|| UpdateError::NoArtifact {
            target: policy.target.to_owned(),
        })?;
    if artifact.sha256.len() != 64 || hex::decode(&artifact.sha256).is_err() {
        return Err(UpdateError::ManifestInvalid {
            field: format!("artifacts.{}.sha256", policy.target),
            problem: "is not a hex SHA-256".into(),
        });
    }
    if manifest.version <= *policy.running {
        return Err(UpdateError::NotNewer {
            version: manifest.version,
            running: policy.running.clone(),
        });
    }
    if let Some(accepted) = policy.accepted {
        if manifest.version < *accepted {
            return Err(UpdateError::OlderThanAccepted {
                version: manifest.version,
                accepted: accepted.clone(),
            });
        }
    }
    if *policy.running < manifest.min_version {
        return Err(UpdateError::BelowMinVersion {
            version: manifest.version.clone(),
            min_version: manifest.min_version,
            running: policy.running.clone(),
        });
    }
    Ok(VerifiedRelease {
        manifest,
        artifact,
        manifest_sha256: hex::encode(Sha256::digest(manifest_bytes)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::update::manifest::{generate_signing_key, sign};

    fn manifest(version: &str, min: &str, expires_in_hours: i64, target: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "version": version,
            "released_at": Utc::now(),
            "notes": {"en": "Fixes."},
            "artifacts": {target: {"url": "imix", "size": 3, "sha256": "ab".repeat(32)}},
            "min_version": min,
            "expires_at": Utc::now() + chrono::Duration::hours(expires_in_hours),
        }))
        .unwrap()
    }

    #[test]
    fn each_refusal_has_its_own_reason() {
        let key = generate_signing_key();
        let public = key.verifying_key();
        let running = semver::Version::new(1, 0, 0);
        let accepted = semver::Version::new(1, 5, 0);
        let policy = Policy {
            key: &public,
            running: &running,
            accepted: Some(&accepted),
            target: "x86_64-unknown-linux-gnu",
            now: Utc::now(),
        };
        let check = |bytes: &[u8], signed: Option<&str>| {
            let version = claimed_version(bytes).unwrap();
            let sig = sign(&key, signed.unwrap_or(&version), bytes);
            verify_release(bytes, Some(sig.as_bytes()), &policy)
        };
        let good = manifest("2.0.0", "0.9.0", 24, "x86_64-unknown-linux-gnu");
        let ok = check(&good, None).unwrap();
        assert_eq!(ok.manifest.version, semver::Version::new(2, 0, 0));
        assert!(matches!(
            verify_release(&good, None, &policy),
            Err(UpdateError::SignatureMissing)
        ));
        assert!(matches!(
            check(&good, Some("2.0.1")),
            Err(UpdateError::SignatureInvalid)
        ));
        assert!(matches!(
            check(
                &manifest("2.0.0", "0.9.0", -1, "x86_64-unknown-linux-gnu"),
                None
            ),
            Err(UpdateError::Expired { .. })
        ));
        assert!(matches!(
            check(
                &manifest("2.0.0", "0.9.0", 24, "aarch64-apple-darwin"),
                None
            ),
            Err(UpdateError::NoArtifact { .. })
        ));
        assert!(matches!(
            check(
                &manifest("1.0.0", "0.9.0", 24, "x86_64-unknown-linux-gnu"),
                None
            ),
            Err(UpdateError::NotNewer { .. })
        ));
        assert!(matches!(
            check(
                &manifest("1.2.0", "0.9.0", 24, "x86_64-unknown-linux-gnu"),
                None
            ),
            Err(UpdateError::OlderThanAccepted { .. })
        ));
        assert!(matches!(
            check(
                &manifest("2.0.0", "1.1.0", 24, "x86_64-unknown-linux-gnu"),
                None
            ),
            Err(UpdateError::BelowMinVersion { .. })
        ));
        // The newest accepted version itself may be installed again (after a rollback).
        assert!(check(
            &manifest("1.5.0", "0.9.0", 24, "x86_64-unknown-linux-gnu"),
            None
        )
        .is_ok());
    }
}
