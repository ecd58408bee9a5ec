//! The publisher CLI, `imix-release`, as a publisher runs it: keygen, sign a manifest from
//! artifact files, verify it; a tampered manifest or artifact and another key are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command};

fn release(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imix-release"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn keygen_sign_and_verify_and_every_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, text) = release(d, &["keygen", "--out", "k"]);
    assert!(ok, "{text}");
    assert!(text.contains("IMIX_UPDATE_PUBLIC_KEY="), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(d.join("k.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // keygen never overwrites a secret key.
    assert!(!release(d, &["keygen", "--out", "k"]).0);

    std::fs::create_dir_all(d.join("www")).unwrap();
    std::fs::write(d.join("www/imix-server-x86_64"), b"binary bytes").unwrap();
    std::fs::write(d.join("en.md"), "## Faster").unwrap();
    std::fs::write(d.join("fr.md"), "## Plus rapide").unwrap();
    let (ok, text) = release(
        d,
        &[
            "sign",
            "--key",
            "k.key",
            "--version",
            "1.4.0",
            "--min-version",
            "1.2.0",
            "--notes-en",
            "en.md",
            "--notes-fr",
            "fr.md",
            "--artifact",
            "x86_64-unknown-linux-gnu=www/imix-server-x86_64",
            "--out",
            "www",
        ],
    );
    assert!(ok, "{text}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("www/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["version"], "1.4.0");
    assert_eq!(manifest["notes"]["fr"], "## Plus rapide");
    let artifact = &manifest["artifacts"]["x86_64-unknown-linux-gnu"];
    assert_eq!(artifact["url"], "imix-server-x86_64");
    assert_eq!(artifact["size"], 12);
    assert_eq!(
        artifact["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"binary bytes"))
    );

    let verify = |key: &str| {
        release(
            d,
            &[
                "verify",
                "--public-key",
                key,
                "--manifest",
                "www/manifest.json",
                "--target",
                "x86_64-unknown-linux-gnu",
            ],
        )
    };
    let (ok, text) = verify("k.pub");
    assert!(ok, "{text}");
    assert!(
        text.contains("valid: version 1.4.0") && text.contains("matches"),
        "{text}"
    );
    // The key given inline works too; another key does not.
    let public = std::fs::read_to_string(d.join("k.pub")).unwrap();
    assert!(verify(public.trim()).0);
    release(d, &["keygen", "--out", "other"]);
    let (ok, text) = verify("other.pub");
    assert!(!ok && text.contains("signature"), "{text}");

    // A tampered artifact.
    std::fs::write(d.join("www/imix-server-x86_64"), b"binary bytez").unwrap();
    let (ok, text) = verify("k.pub");
    assert!(!ok && text.contains("does not match"), "{text}");
    std::fs::write(d.join("www/imix-server-x86_64"), b"binary bytes").unwrap();
    // A tampered manifest.
    let text = std::fs::read_to_string(d.join("www/manifest.json")).unwrap();
    std::fs::write(
        d.join("www/manifest.json"),
        text.replace("Plus rapide", "Plus lent"),
    )
    .unwrap();
    let (ok, text) = verify("k.pub");
    assert!(!ok && text.contains("signature"), "{text}");
    // No signature at all.
    std::fs::remove_file(d.join("www/manifest.json.sig")).unwrap();
    let (ok, text) = verify("k.pub");
    assert!(!ok && text.contains("not signed"), "{text}");
}
