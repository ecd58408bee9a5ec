//! `imix-release`: the publisher's side of imix updates. Generates a signing key pair,
//! builds and signs a manifest from artifact files, and verifies a manifest as a server
//! would. See `docs/updates.md`.
#![forbid(unsafe_code)]

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
    process::ExitCode,
};

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use imix_update::update::{
    manifest::{
        self, generate_signing_key, public_key_from_base64, public_key_to_base64,
        signing_key_from_base64, signing_key_to_base64, Artifact, ReleaseManifest, ReleaseNotes,
        MANIFEST_FILE, SIGNATURE_FILE,
    },
    verify::{verify_release, Policy},
};
use sha2::{Digest, Sha256};

/// Publishes imix releases: keys, signed manifests, verification.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once; the size difference between subcommands does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Generates a key pair: `<out>.key` (secret, mode 0600) and `<out>.pub` (the value of
    /// IMIX_UPDATE_PUBLIC_KEY).
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, default_value = "imix-release")]
        out: PathBuf,
    },
    /// Builds `manifest.json` from artifact files (size and SHA-256 computed) and signs it
    /// into `manifest.json.sig`, both in `--out`.
    Sign {
        /// The secret key file (`keygen`'s `.key`).
        #[arg(long)]
        key: PathBuf,
        /// The release's version (semver); it must be what the artifacts print for
        /// `--version`.
        #[arg(long)]
        version: semver::Version,
        /// The lowest version this release may be installed over.
        #[arg(long)]
        min_version: semver::Version,
        /// Release notes in English (a Markdown file).
        #[arg(long)]
        notes_en: PathBuf,
        /// Release notes in French (a Markdown file).
        #[arg(long)]
        notes_fr: Option<PathBuf>,
        /// Release notes in Arabic (a Markdown file).
        #[arg(long)]
        notes_ar: Option<PathBuf>,
        /// An artifact: `<target triple>=<file>`; repeat for each target. Its URL in the
        /// manifest is the file name (relative to the manifest) unless `--url-base` is set.
        #[arg(long = "artifact", required = true)]
        artifacts: Vec<String>,
        /// Absolute base URL for the artifacts (default: beside the manifest).
        #[arg(long)]
        url_base: Option<url::Url>,
        /// How many days the manifest is valid (re-sign before it expires).
        #[arg(long, default_value_t = 30)]
        expires_in_days: i64,
        /// Release date (RFC 3339; default now).
        #[arg(long)]
        released_at: Option<DateTime<Utc>>,
        /// The directory to write `manifest.json` and `manifest.json.sig` to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Verifies a manifest and its signature as a server would (signature, expiry, and,
    /// when given, target and running version), and artifacts beside it if present.
    Verify {
        /// The public key: base64, or a `.pub` file.
        #[arg(long)]
        public_key: String,
        /// The manifest (its signature is read from `<manifest>.sig`).
        #[arg(long, default_value = MANIFEST_FILE)]
        manifest: PathBuf,
        /// The target to check for (default: this machine's).
        #[arg(long, default_value = imix_update::update::TARGET)]
        target: String,
        /// Check as a server running this version would (default: the manifest's own
        /// `min_version`, so only the signature, expiry and target are checked).
        #[arg(long)]
        running: Option<semver::Version>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Keygen { out } => keygen(&out),
        Command::Sign {
            key,
            version,
            min_version,
            notes_en,
            notes_fr,
            notes_ar,
            artifacts,
            url_base,
            expires_in_days,
            released_at,
            out,
        } => sign(SignArgs {
            key,
            version,
            min_version,
            notes: [Some(notes_en), notes_fr, notes_ar],
            artifacts,
            url_base,
            expires_in_days,
            released_at,
            out,
        }),
        Command::Verify {
            public_key,
            manifest,
            target,
            running,
        } => verify(&public_key, &manifest, &target, running.as_ref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imix-release: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(out: &Path) -> Result<(), String> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let key = generate_signing_key();
    let secret_path = with_suffix(out, "key");
    let public_path = with_suffix(out, "pub");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .map_err(|e| format!("cannot create {}: {e}", secret_path.display()))?;
    writeln!(file, "{}", signing_key_to_base64(&key))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", secret_path.display()))?;
    let public = public_key_to_base64(&key.verifying_key());
    std::fs::write(&public_path, format!("{public}\n"))
        .map_err(|e| format!("cannot write {}: {e}", public_path.display()))?;
    println!("secret key: {} (keep it offline)", secret_path.display());
    println!("public key: {}", public_path.display());
    println!("IMIX_UPDATE_PUBLIC_KEY={public}");
    Ok(())
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

struct SignArgs {
    key: PathBuf,
    version: semver::Version,
    min_version: semver::Version,
    notes: [Option<PathBuf>; 3],
    artifacts: Vec<String>,
    url_base: Option<url::Url>,
    expires_in_days: i64,
    released_at: Option<DateTime<Utc>>,
    out: PathBuf,
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Size and hex SHA-256 of a file, read in chunks.
fn digest_file(path: &Path) -> Result<(u64, String), String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn sign(args: SignArgs) -> Result<(), String> {
    let key = signing_key_from_base64(&read_text(&args.key)?)
        .map_err(|e| format!("{}: {e}", args.key.display()))?;
    if args.expires_in_days < 1 {
        return Err("--expires-in-days must be at least 1".into());
    }
    let [en, fr, ar] = args.notes;
    let notes = ReleaseNotes {
        en: en
            .as_deref()
            .map(read_text)
            .transpose()?
            .unwrap_or_default(),
        fr: fr.as_deref().map(read_text).transpose()?,
        ar: ar.as_deref().map(read_text).transpose()?,
    };
    let mut artifacts = BTreeMap::new();
    for spec in &args.artifacts {
        let (target, file) = spec
            .split_once('=')
            .ok_or_else(|| format!("--artifact `{spec}` is not <target>=<file>"))?;
        let path = PathBuf::from(file);
        let (size, sha256) = digest_file(&path)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{file} has no file name"))?;
        let url = match &args.url_base {
            Some(base) => base
                .join(name)
                .map_err(|e| format!("--url-base: {e}"))?
                .to_string(),
            None => name.to_owned(),
        };
        artifacts.insert(target.to_owned(), Artifact { url, size, sha256 });
    }
    let released_at = args.released_at.unwrap_or_else(Utc::now);
    let manifest = ReleaseManifest {
        version: args.version,
        released_at,
        notes,
        artifacts,
        min_version: args.min_version,
        expires_at: Utc::now() + chrono::Duration::days(args.expires_in_days),
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    let signature = manifest::sign(&key, &manifest.version.to_string(), &bytes);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let manifest_path = args.out.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", manifest_path.display()))?;
    let sig_path = args.out.join(SIGNATURE_FILE);
    std::fs::write(&sig_path, signature)
        .map_err(|e| format!("cannot write {}: {e}", sig_path.display()))?;
    println!(
        "signed version {} ({} artifacts, expires {}): {} and {}",
        manifest.version,
        manifest.artifacts.len(),
        manifest.expires_at.to_rfc3339(),
        manifest_path.display(),
        sig_path.display()
    );
    Ok(())
}

fn verify(
    public_key: &str,
    manifest_path: &Path,
    target: &str,
    running: Option<&semver::Version>,
) -> Result<(), String> {
    let key_text = if Path::new(public_key).is_file() {
        read_text(Path::new(public_key))?
    } else {
        public_key.to_owned()
    };
    let key = public_key_from_base64(&key_text).map_err(|e| format!("the public key {e}"))?;
    let bytes = std::fs::read(manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let sig_path = with_suffix(manifest_path, "sig");
    let signature = match std::fs::read(&sig_path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", sig_path.display())),
    };
    // Without --running, check as a server at the lowest version the release allows.
    let lowest = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| {
            m.get("min_version")?
                .as_str()?
                .parse::<semver::Version>()
                .ok()
        })
        .unwrap_or_else(|| semver::Version::new(0, 0, 0));
    let release = verify_release(
        &bytes,
        signature.as_deref(),
        &Policy {
            key: &key,
            running: running.unwrap_or(&lowest),
            accepted: None,
            target,
            now: Utc::now(),
        },
    )
    .map_err(|e| e.to_string())?;
    println!(
        "valid: version {} for {target}, expires {}",
        release.manifest.version,
        release.manifest.expires_at.to_rfc3339()
    );
    // Artifacts given by file name are checked when they sit beside the manifest.
    let dir = manifest_path.parent().unwrap_or(Path::new("."));
    for (triple, artifact) in &release.manifest.artifacts {
        let local = dir.join(&artifact.url);
        if artifact.url.contains("://") || !local.is_file() {
            println!(
                "  {triple}: {} (not checked: not beside the manifest)",
                artifact.url
            );
            continue;
        }
        let (size, sha256) = digest_file(&local)?;
        if size != artifact.size || sha256 != artifact.sha256 {
            return Err(format!(
                "{triple}: {} does not match the manifest (size {size}, sha256 {sha256})",
                local.display()
            ));
        }
        println!("  {triple}: {} matches", artifact.url);
    }
    Ok(())
}
