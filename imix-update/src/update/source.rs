//! The ports the update service works through, and their default adapters: manifests and
//! artifacts over HTTP ([`HttpSource`]), the newest accepted version in the store's platform
//! settings ([`SettingsAcceptedVersions`]).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use imix_core::{
    model::{SettingsDoc, SettingsScope},
    store::SettingsRepository,
    Error as CoreError,
};
use url::Url;

use super::{
    manifest::{MANIFEST_FILE, SIGNATURE_FILE},
    Result, UpdateError,
};

/// The largest manifest (or signature) read: manifests are a few kilobytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// A manifest as fetched, not yet trusted.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes of `manifest.json`.
    pub bytes: Vec<u8>,
    /// The contents of `manifest.json.sig`; `None` when the server has none (404).
    pub signature: Option<Vec<u8>>,
    /// The manifest's URL, against which relative artifact URLs are resolved.
    pub url: Url,
}

/// Where releases come from.
#[async_trait]
pub trait ReleaseSource: Send + Sync {
    /// Fetches the manifest and its signature.
    async fn fetch_manifest(&self) -> Result<FetchedManifest>;
    /// Streams the artifact at `url` (absolute).
    async fn download(&self, url: &Url) -> Result<BoxStream<'static, Result<Bytes>>>;
}

/// The newest version this server ever accepted, kept across restarts (and rollbacks).
#[async_trait]
pub trait AcceptedVersions: Send + Sync {
    /// The newest version accepted so far, if any.
    async fn newest(&self) -> Result<Option<semver::Version>>;
    /// Records that `version` was accepted (keeps the newer of it and the stored one).
    async fn record(&self, version: &semver::Version) -> Result<()>;
}

/// The data side of restoring a backup of another version (see
/// [`super::Updates::install_from_backup`]): the backups service, in the server.
#[async_trait]
pub trait RestoreData: Send + Sync {
    /// Takes the pre-restore backup of the current data; answers its id.
    async fn backup_first(&mut self) -> Result<String>;
    /// Writes the durable marker that has the next start restore the backup before serving.
    fn restore_at_next_start(&mut self) -> Result<()>;
    /// Undoes [`RestoreData::restore_at_next_start`]: the executable was not replaced.
    fn cancel(&mut self);
}

/// The pre-update backup: made before the executable is replaced, put back on rollback.
#[async_trait]
pub trait DataSnapshots: Send + Sync {
    /// Makes a backup of all data (kind `pre-update`) and returns its id.
    async fn snapshot(&self) -> Result<String>;
    /// Replaces all data with backup `id`.
    async fn restore(&self, id: &str) -> Result<()>;
}

/// Restarts the process (into whatever executable is at its path now).
pub trait Restarter: Send + Sync {
    /// Asks for a restart once in-flight work is finished (a graceful stop, then the
    /// configured mechanism: exit code for the supervisor, or re-exec).
    fn restart(&self);
    /// Restarts now, from any thread, without waiting for anything (the probation
    /// watchdog, when the new version is not healthy in time and may be hung).
    fn restart_now(&self);
}

/// Manifests and artifacts from a static web server at a base URL.
#[derive(Debug, Clone)]
pub struct HttpSource {
    client: reqwest::Client,
    base: Url,
}

impl HttpSource {
    /// A source for the update server at `base` (`UPDATE_SERVER_URL`): it serves
    /// `manifest.json` and `manifest.json.sig` under it.
    pub fn new(base: Url) -> Self {
        let mut base = base;
        // `https://h/updates` and `https://h/updates/` both mean the directory.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("imix/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { client, base }
    }

    fn url_of(&self, file: &str) -> Result<Url> {
        self.base
            .join(file)
            .map_err(|e| UpdateError::ManifestInvalid {
                field: "url".into(),
                problem: e.to_string(),
            })
    }

    /// GETs `url` whole, up to [`MAX_MANIFEST_BYTES`]; `None` on 404.
    async fn get_small(&self, url: &Url) -> Result<Option<Vec<u8>>> {
        let unreachable = |source| UpdateError::Unreachable {
            url: url.to_string(),
            source,
        };
        let resp = self
            .client
            .get(url.clone())
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .map_err(unreachable)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(UpdateError::HttpStatus {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        let mut chunks = resp.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            body.extend_from_slice(&chunk.map_err(unreachable)?);
            if body.len() > MAX_MANIFEST_BYTES {
                return Err(UpdateError::ManifestInvalid {
                    field: "manifest".into(),
                    problem: format!("{url} is larger than {MAX_MANIFEST_BYTES} bytes"),
                });
            }
        }
        Ok(Some(body))
    }
}

#[async_trait]
impl ReleaseSource for HttpSource {
    async fn fetch_manifest(&self) -> Result<FetchedManifest> {
        let url = self.url_of(MANIFEST_FILE)?;
        let bytes = self
            .get_small(&url)
            .await?
            .ok_or_else(|| UpdateError::HttpStatus {
                url: url.to_string(),
                status: 404,
            })?;
        let signature = self.get_small(&self.url_of(SIGNATURE_FILE)?).await?;
        Ok(FetchedManifest {
            bytes,
            signature,
            url,
        })
    }

    async fn download(&self, url: &Url) -> Result<BoxStream<'static, Result<Bytes>>> {
        let resp = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|source| UpdateError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(UpdateError::HttpStatus {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let shown = url.to_string();
        Ok(resp
            .bytes_stream()
            .map(move |chunk| {
                chunk.map_err(|source| UpdateError::Unreachable {
                    url: shown.clone(),
                    source,
                })
            })
            .boxed())
    }
}

/// Resolves an artifact's URL against the manifest's; only http(s) is fetched.
pub fn artifact_url(manifest_url: &Url, artifact_url: &str, target: &str) -> Result<Url> {
    let url = manifest_url
        .join(artifact_url)
        .map_err(|e| UpdateError::ManifestInvalid {
            field: format!("artifacts.{target}.url"),
            problem: e.to_string(),
        })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UpdateError::ManifestInvalid {
            field: format!("artifacts.{target}.url"),
            problem: "must be an http:// or https:// URL (or relative to the manifest)".into(),
        });
    }
    Ok(url)
}

/// The settings key (platform scope) the newest accepted version is kept under.
pub const ACCEPTED_SETTINGS_KEY: &str = "update";

/// [`AcceptedVersions`] in the store's platform settings (`update` document:
/// `{"newest_accepted": "1.4.0"}`), through the settings port every capability uses.
#[derive(Clone)]
pub struct SettingsAcceptedVersions {
    settings: Arc<dyn SettingsRepository>,
}

impl SettingsAcceptedVersions {
    /// Over the store's settings repository.
    pub fn new(settings: Arc<dyn SettingsRepository>) -> Self {
        Self { settings }
    }
}

fn stored_version(doc: &SettingsDoc) -> Option<semver::Version> {
    doc.value
        .get("newest_accepted")
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
}

#[async_trait]
impl AcceptedVersions for SettingsAcceptedVersions {
    async fn newest(&self) -> Result<Option<semver::Version>> {
        Ok(self
            .settings
            .get(SettingsScope::Platform, ACCEPTED_SETTINGS_KEY)
            .await?
            .as_ref()
            .and_then(stored_version))
    }

    async fn record(&self, version: &semver::Version) -> Result<()> {
        let value = serde_json::json!({ "newest_accepted": version.to_string() });
        // Another writer may race us: a few attempts, each re-reading the stored version.
        for _ in 0..5 {
            let written = match self
                .settings
                .get(SettingsScope::Platform, ACCEPTED_SETTINGS_KEY)
                .await?
            {
                None => self
                    .settings
                    .insert(&SettingsDoc::new(
                        SettingsScope::Platform,
                        ACCEPTED_SETTINGS_KEY,
                        value.clone(),
                    ))
                    .await
                    .map(drop),
                Some(doc) if stored_version(&doc).is_some_and(|v| v >= *version) => return Ok(()),
                Some(mut doc) => {
                    doc.value = value.clone();
                    doc.updated_at = imix_core::now();
                    self.settings.update(&doc).await.map(drop)
                }
            };
            match written {
                Ok(()) => return Ok(()),
                Err(CoreError::Duplicate { .. } | CoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::VersionConflict {
            entity: "settings",
            id: ACCEPTED_SETTINGS_KEY.to_owned(),
            expected: 0,
        }
        .into())
    }
}
