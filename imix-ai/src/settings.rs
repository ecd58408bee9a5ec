//! AI Assistant settings (the admin guide's Settings > AI Assistant): the settings document
//! `ai` of the platform or of one tenant, validated field by field, API keys sealed with the
//! at-rest cipher, write-only (shown as a hint such as `sk-…abcd`), never logged.
//!
//! # Platform and tenant
//!
//! The platform's settings apply to every tenant; a tenant's own override them:
//!
//! - A provider the tenant configured **with its own API key** is used as the tenant wrote
//!   it (its URL, model, temperature, max tokens; defaults for what it left out).
//! - Otherwise the platform's entry is used, with the tenant's model, temperature and max
//!   tokens when it set them. A tenant cannot set a URL without its own key, so the
//!   platform's key never travels to an address a tenant chose.
//! - The default provider and the fallback order: the tenant's when set, else the
//!   platform's, else ChatGPT then DeepSeek. Providers without a key are skipped.
//! - Assistant instructions and business hours exist on tenants only.
//! - The daily token limit: the tenant's when set, else the platform's (a default for every
//!   tenant); only platform administrators change it.
//!
//! # PUT semantics
//!
//! A PUT replaces the whole document. Inside a provider object, an omitted `api_key` keeps
//! the stored key and an empty one removes it; an omitted provider object removes that
//! provider's settings (key included). Bad input changes nothing: every invalid field is
//! reported at once, named by its path (`providers.chatgpt.temperature`).

use std::{collections::BTreeMap, fmt, sync::Arc};

use imix_core::{
    crypto::Cipher,
    id::TenantId,
    model::{SettingsDoc, SettingsScope},
    store::SettingsRepository,
    Error as CoreError, Timestamp,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{
    chat::ProviderKind,
    hours::{BusinessHours, BusinessHoursSpec},
};

/// The settings document key.
pub const AI_SETTINGS_KEY: &str = "ai";
/// Longest assistant instructions, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 4_000;
/// Highest `max_tokens` accepted.
pub const MAX_TOKENS_LIMIT: u32 = 32_768;
/// Temperature when none is set.
pub const DEFAULT_TEMPERATURE: f32 = 0.7;
/// Max tokens when none is set.
pub const DEFAULT_MAX_TOKENS: u32 = 512;

/// The default API base URL of `kind`: OpenAI's, and the one the admin guide gives for
/// DeepSeek R1.
pub fn default_url(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Chatgpt => "https://api.openai.com/v1",
        ProviderKind::Deepseek => "https://deep.ip.mr/api/v1",
    }
}

/// The default model of `kind`.
pub fn default_model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Chatgpt => "gpt-4o-mini",
        ProviderKind::Deepseek => "deepseek-reasoner",
    }
}

/// One invalid field, named by its path in the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `providers.chatgpt.temperature`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What reading or writing settings can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// One or more fields are invalid; every problem is listed.
    #[error("invalid AI settings: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The store failed, or a sealed key could not be opened.
    #[error(transparent)]
    Store(#[from] CoreError),
}

impl SettingsError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SettingsError::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// One provider's settings as submitted.
#[derive(Clone, Default)]
pub struct ProviderInput {
    /// New API key: `None` keeps the stored one, an empty string removes it.
    pub api_key: Option<SecretString>,
    /// Model name.
    pub model: Option<String>,
    /// Temperature, 0.0–1.0 (wide type so a bad value can be reported).
    pub temperature: Option<f64>,
    /// Max completion tokens, 1–[`MAX_TOKENS_LIMIT`].
    pub max_tokens: Option<i64>,
    /// API base URL, http or https.
    pub url: Option<String>,
}

impl fmt::Debug for ProviderInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderInput")
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("url", &self.url)
            .finish()
    }
}

/// What an administrator submits (`PUT .../settings/ai`).
#[derive(Debug, Clone, Default)]
pub struct AiSettingsInput {
    /// Per provider name (`chatgpt`, `deepseek`); unknown names are refused.
    pub providers: BTreeMap<String, ProviderInput>,
    /// The provider tried first.
    pub default_provider: Option<String>,
    /// The order providers are tried in after the default; each at most once.
    pub fallback_order: Option<Vec<String>>,
    /// Tenant only: business facts, tone, what never to promise.
    pub instructions: Option<String>,
    /// Tenant only: weekly opening hours in the tenant's time zone.
    pub business_hours: Option<BusinessHoursSpec>,
    /// Tokens per UTC day (prompt + completion); `None` keeps the stored value, `Some(0)`
    /// removes the limit. Only platform administrators may change it.
    pub daily_token_limit: Option<i64>,
}

/// A provider's settings as shown: the key only as a hint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderView {
    /// Whether a key is stored.
    pub api_key_set: bool,
    /// The key's first and last characters, e.g. `sk-…abcd`.
    pub api_key_hint: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Temperature.
    pub temperature: Option<f32>,
    /// Max completion tokens.
    pub max_tokens: Option<u32>,
    /// API base URL.
    pub url: Option<String>,
}

/// The settings of one scope as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AiSettingsView {
    /// Whose settings.
    pub scope: SettingsScope,
    /// Per provider.
    pub providers: BTreeMap<ProviderKind, ProviderView>,
    /// The provider tried first.
    pub default_provider: Option<ProviderKind>,
    /// The order providers are tried in.
    pub fallback_order: Vec<ProviderKind>,
    /// Assistant instructions (tenants).
    pub instructions: Option<String>,
    /// Business hours (tenants).
    pub business_hours: Option<BusinessHoursSpec>,
    /// Daily token limit.
    pub daily_token_limit: Option<u64>,
    /// Document version.
    pub version: u64,
    /// Last change.
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredProvider {
    api_key_sealed: Option<String>,
    api_key_hint: Option<String>,
    model: Option<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    url: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredAi {
    #[serde(default)]
    providers: BTreeMap<ProviderKind, StoredProvider>,
    default_provider: Option<ProviderKind>,
    #[serde(default)]
    fallback_order: Vec<ProviderKind>,
    instructions: Option<String>,
    business_hours: Option<BusinessHoursSpec>,
    daily_token_limit: Option<u64>,
}

/// One provider ready to use: key decrypted (in memory only).
#[derive(Clone)]
pub struct EffectiveProvider {
    /// Which provider.
    pub kind: ProviderKind,
    /// The API key.
    pub api_key: SecretString,
    /// API base URL.
    pub base_url: String,
    /// Model.
    pub model: String,
    /// Temperature.
    pub temperature: f32,
    /// Max completion tokens.
    pub max_tokens: u32,
    /// Whose key it is.
    pub key_from: SettingsScope,
}

impl fmt::Debug for EffectiveProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EffectiveProvider")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("key_from", &self.key_from)
            .finish_non_exhaustive()
    }
}

/// What a tenant's assistant works with (see the module documentation for the merge).
#[derive(Debug, Clone)]
pub struct EffectiveAi {
    /// Usable providers (with a key), in the order to try them: default first.
    pub providers: Vec<EffectiveProvider>,
    /// The tenant's instructions.
    pub instructions: Option<String>,
    /// The tenant's business hours.
    pub business_hours: Option<BusinessHours>,
    /// Tokens per UTC day, when limited.
    pub daily_token_limit: Option<u64>,
}

impl EffectiveAi {
    /// The settings of one provider, if it has a key.
    pub fn provider(&self, kind: ProviderKind) -> Option<&EffectiveProvider> {
        self.providers.iter().find(|p| p.kind == kind)
    }
}

/// The hint shown for a key: its first three and last four characters (`sk-…abcd`), or only
/// `…` and the last two for short keys, so a hint never reveals most of a key.
pub fn key_hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() >= 16 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    } else {
        let tail: String = chars[chars.len().saturating_sub(2)..].iter().collect();
        format!("…{tail}")
    }
}

/// Whether `text` may be stored as instructions: no control characters but line breaks and
/// tabs, no bidirectional overrides (which can make text read differently than it is) and
/// no other invisible formatting characters (Unicode category Cf: zero-width spaces, word
/// joiners, byte order marks, tag characters), which could hide words from the admin who
/// reads the instructions while the model reads them. The zero-width non-joiner and joiner
/// (U+200C, U+200D) stay allowed: Arabic-script text and emoji sequences need them.
/// Refused, not stripped: what is stored is exactly what the admin sees.
pub fn allowed_in_text(text: &str) -> bool {
    text.chars().all(|c| {
        !(c.is_control() && !matches!(c, '\n' | '\r' | '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            || (unicode_general_category::get_general_category(c)
                == unicode_general_category::GeneralCategory::Format
                && !matches!(c, '\u{200c}' | '\u{200d}')))
    })
}

/// Checks an API base URL: http or https, a host, no credentials, query or fragment.
/// Answers it without a trailing slash.
pub fn check_url(raw: &str) -> Result<String, &'static str> {
    let url = url::Url::parse(raw.trim()).map_err(|_| "must be an http or https URL")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an http or https URL with a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials: put the key in api_key");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn check_model(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= 100
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c))
}

fn associated_data(scope: SettingsScope, kind: ProviderKind) -> Vec<u8> {
    format!("settings:{scope}:{AI_SETTINGS_KEY}.{kind}.api_key").into_bytes()
}

fn parse_kind(name: &str) -> Option<ProviderKind> {
    ProviderKind::ALL.into_iter().find(|k| k.as_str() == name)
}

/// Reads and writes AI settings. Cheap to clone.
#[derive(Clone)]
pub struct AiSettingsService {
    repo: Arc<dyn SettingsRepository>,
    cipher: Cipher,
}

impl fmt::Debug for AiSettingsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AiSettingsService").finish_non_exhaustive()
    }
}

/// Who is writing: only platform administrators change the daily token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// A platform administrator.
    PlatformAdmin,
    /// A tenant's administrator.
    TenantAdmin,
}

impl AiSettingsService {
    /// Settings kept in `repo`, keys sealed with `cipher`.
    pub fn new(repo: Arc<dyn SettingsRepository>, cipher: Cipher) -> Self {
        Self { repo, cipher }
    }

    async fn stored(
        &self,
        scope: SettingsScope,
    ) -> Result<Option<(StoredAi, SettingsDoc)>, SettingsError> {
        let Some(doc) = self.repo.get(scope, AI_SETTINGS_KEY).await? else {
            return Ok(None);
        };
        let stored: StoredAi =
            serde_json::from_value(doc.value.clone()).map_err(|e| CoreError::Corrupt {
                entity: "ai settings",
                source: e.into(),
            })?;
        Ok(Some((stored, doc)))
    }

    fn view(
        scope: SettingsScope,
        stored: &StoredAi,
        version: u64,
        updated_at: Timestamp,
    ) -> AiSettingsView {
        AiSettingsView {
            scope,
            providers: stored
                .providers
                .iter()
                .map(|(k, p)| {
                    (
                        *k,
                        ProviderView {
                            api_key_set: p.api_key_sealed.is_some(),
                            api_key_hint: p.api_key_hint.clone(),
                            model: p.model.clone(),
                            temperature: p.temperature,
                            max_tokens: p.max_tokens,
                            url: p.url.clone(),
                        },
                    )
                })
                .collect(),
            default_provider: stored.default_provider,
            fallback_order: stored.fallback_order.clone(),
            instructions: stored.instructions.clone(),
            business_hours: stored.business_hours.clone(),
            daily_token_limit: stored.daily_token_limit,
            version,
            updated_at,
        }
    }

    /// The settings of exactly `scope`; `None` if never saved.
    pub async fn get_view(
        &self,
        scope: SettingsScope,
    ) -> Result<Option<AiSettingsView>, SettingsError> {
        Ok(self
            .stored(scope)
            .await?
            .map(|(s, doc)| Self::view(scope, &s, doc.version, doc.updated_at)))
    }

    /// Validates and stores the settings of `scope` (see the module documentation).
    pub async fn put(
        &self,
        scope: SettingsScope,
        input: AiSettingsInput,
        writer: Writer,
    ) -> Result<AiSettingsView, SettingsError> {
        let mut errors: Vec<FieldError> = Vec::new();
        let mut bad = |field: String, message: &str| {
            errors.push(FieldError {
                field,
                message: message.to_owned(),
            })
        };
        let tenant = matches!(scope, SettingsScope::Tenant(_));

        // Providers, validated; keys sealed after validation.
        let mut providers: BTreeMap<ProviderKind, (StoredProvider, Option<SecretString>)> =
            BTreeMap::new();
        for (name, p) in input.providers {
            let Some(kind) = parse_kind(&name) else {
                bad(
                    format!("providers.{name}"),
                    "is not a provider: expected chatgpt or deepseek",
                );
                continue;
            };
            let field = |f: &str| format!("providers.{kind}.{f}");
            let mut sp = StoredProvider::default();
            if let Some(t) = p.temperature {
                if !(0.0..=1.0).contains(&t) {
                    bad(field("temperature"), "must be between 0.0 and 1.0");
                } else {
                    // Round to what a person would have typed; f32 keeps two decimals exactly enough.
                    // `+ 0.0` turns -0.0 (accepted by the range) into 0.0.
                    sp.temperature = Some(((t * 100.0).round() / 100.0 + 0.0) as f32);
                }
            }
            if let Some(m) = p.max_tokens {
                match u32::try_from(m) {
                    Ok(m) if (1..=MAX_TOKENS_LIMIT).contains(&m) => sp.max_tokens = Some(m),
                    _ => bad(
                        field("max_tokens"),
                        &format!("must be between 1 and {MAX_TOKENS_LIMIT}"),
                    ),
                }
            }
            if let Some(model) = p
                .model
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
            {
                if check_model(&model) {
                    sp.model = Some(model);
                } else {
                    bad(
                        field("model"),
                        "must be 1–100 characters: letters, digits and . _ : / -",
                    );
                }
            }
            if let Some(url) = p.url.filter(|u| !u.trim().is_empty()) {
                match check_url(&url) {
                    Ok(u) => sp.url = Some(u),
                    Err(message) => bad(field("url"), message),
                }
            }
            let new_key = match p.api_key {
                Some(k) if k.expose_secret().is_empty() => Some(None),
                Some(k) => {
                    let raw = k.expose_secret();
                    if raw.len() > 512
                        || raw.len() < 8
                        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        bad(
                            field("api_key"),
                            "must be 8–512 characters without spaces or control characters",
                        );
                        None
                    } else {
                        Some(Some(k))
                    }
                }
                None => None,
            };
            providers.insert(kind, (sp, new_key.clone().flatten()));
            // Remember "remove" vs "keep" through the hint field for the merge below.
            if matches!(new_key, Some(None)) {
                if let Some((sp, _)) = providers.get_mut(&kind) {
                    sp.api_key_hint = Some(String::new());
                }
            }
        }
        let default_provider = match input.default_provider.filter(|d| !d.trim().is_empty()) {
            Some(d) => match parse_kind(d.trim()) {
                Some(k) => Some(k),
                None => {
                    bad("default_provider".into(), "must be chatgpt or deepseek");
                    None
                }
            },
            None => None,
        };
        let mut fallback_order = Vec::new();
        for (i, name) in input.fallback_order.unwrap_or_default().iter().enumerate() {
            match parse_kind(name.trim()) {
                Some(k) if fallback_order.contains(&k) => bad(
                    format!("fallback_order[{i}]"),
                    "names a provider already in the list: each at most once",
                ),
                Some(k) => fallback_order.push(k),
                None => bad(
                    format!("fallback_order[{i}]"),
                    "must be chatgpt or deepseek",
                ),
            }
        }
        let instructions = input
            .instructions
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty());
        if let Some(text) = instructions.as_deref() {
            if !tenant {
                bad(
                    "instructions".into(),
                    "belong to a tenant's settings: each business writes its own",
                );
            } else if text.chars().count() > MAX_INSTRUCTIONS_CHARS {
                bad(
                    "instructions".into(),
                    &format!("must be at most {MAX_INSTRUCTIONS_CHARS} characters"),
                );
            } else if !allowed_in_text(text) {
                bad(
                    "instructions".into(),
                    "must not contain control characters (other than line breaks and tabs), bidirectional overrides or invisible formatting characters (zero-width spaces, word joiners, byte order marks)",
                );
            }
        }
        let business_hours = input.business_hours;
        if let Some(spec) = business_hours.as_ref() {
            if !tenant {
                bad(
                    "business_hours".into(),
                    "belong to a tenant's settings, in the tenant's time zone",
                );
            } else if let Err(list) = BusinessHours::parse(spec) {
                for e in list {
                    bad(format!("business_hours.{}", e.field), &e.message);
                }
            }
        }
        let new_limit = match input.daily_token_limit {
            Some(l) if l < 0 => {
                bad("daily_token_limit".into(), "must be 0 (no limit) or more");
                None
            }
            Some(l) => Some(u64::try_from(l).ok().filter(|l| *l > 0)),
            None => None,
        };
        if !errors.is_empty() {
            return Err(SettingsError::Invalid(errors));
        }
        let mut sealed: BTreeMap<ProviderKind, Option<(String, String)>> = BTreeMap::new();
        for (kind, (_, key)) in &providers {
            if let Some(k) = key {
                let s = self
                    .cipher
                    .encrypt_secret(k, &associated_data(scope, *kind))
                    .map_err(CoreError::from)?;
                sealed.insert(*kind, Some((s, key_hint(k.expose_secret()))));
            }
        }

        for _ in 0..5 {
            let existing = self.stored(scope).await?;
            let old = existing
                .as_ref()
                .map(|(s, _)| s.clone())
                .unwrap_or_default();
            if let Some(limit) = new_limit {
                if limit != old.daily_token_limit && writer != Writer::PlatformAdmin {
                    return Err(SettingsError::invalid(
                        "daily_token_limit",
                        "is set by the platform's administrators",
                    ));
                }
            }
            let mut stored = StoredAi {
                providers: BTreeMap::new(),
                default_provider,
                fallback_order: fallback_order.clone(),
                instructions: instructions.clone(),
                business_hours: business_hours.clone(),
                daily_token_limit: new_limit.unwrap_or(old.daily_token_limit),
            };
            for (kind, (sp, _)) in &providers {
                let mut sp = sp.clone();
                let remove = sp.api_key_hint.as_deref() == Some("");
                sp.api_key_hint = None;
                match sealed.get(kind) {
                    Some(Some((s, hint))) => {
                        sp.api_key_sealed = Some(s.clone());
                        sp.api_key_hint = Some(hint.clone());
                    }
                    _ if remove => {}
                    _ => {
                        if let Some(o) = old.providers.get(kind) {
                            sp.api_key_sealed = o.api_key_sealed.clone();
                            sp.api_key_hint = o.api_key_hint.clone();
                        }
                    }
                }
                if tenant && sp.url.is_some() && sp.api_key_sealed.is_none() {
                    return Err(SettingsError::invalid(
                        format!("providers.{kind}.url"),
                        "needs the tenant's own api_key: the platform's key is only sent to the platform's URL",
                    ));
                }
                stored.providers.insert(*kind, sp);
            }
            let value = serde_json::to_value(&stored).map_err(|e| CoreError::Corrupt {
                entity: "ai settings",
                source: e.into(),
            })?;
            let written = match existing {
                None => {
                    let doc = SettingsDoc::new(scope, AI_SETTINGS_KEY, value);
                    self.repo.insert(&doc).await.map(|()| doc)
                }
                Some((_, mut doc)) => {
                    doc.value = value;
                    doc.updated_at = imix_core::now();
                    self.repo.update(&doc).await
                }
            };
            match written {
                Ok(doc) => return Ok(Self::view(scope, &stored, doc.version, doc.updated_at)),
                Err(CoreError::VersionConflict { .. } | CoreError::Duplicate { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::VersionConflict {
            entity: "settings",
            id: format!("{scope}/{AI_SETTINGS_KEY}"),
            expected: 0,
        }
        .into())
    }

    fn open_key(
        &self,
        scope: SettingsScope,
        kind: ProviderKind,
        p: &StoredProvider,
    ) -> Result<Option<SecretString>, SettingsError> {
        p.api_key_sealed
            .as_deref()
            .map(|s| self.cipher.decrypt_secret(s, &associated_data(scope, kind)))
            .transpose()
            .map_err(|e| CoreError::from(e).into())
    }

    /// What `tenant`'s assistant works with (`None`: the platform's settings alone).
    pub async fn effective(&self, tenant: Option<TenantId>) -> Result<EffectiveAi, SettingsError> {
        let platform = self
            .stored(SettingsScope::Platform)
            .await?
            .map(|(s, _)| s)
            .unwrap_or_default();
        let (own_scope, own) = match tenant {
            Some(t) => {
                let scope = SettingsScope::Tenant(t);
                (
                    scope,
                    self.stored(scope)
                        .await?
                        .map(|(s, _)| s)
                        .unwrap_or_default(),
                )
            }
            None => (SettingsScope::Platform, StoredAi::default()),
        };
        let mut order: Vec<ProviderKind> = Vec::new();
        let default = own.default_provider.or(platform.default_provider);
        let fallback = if own.fallback_order.is_empty() {
            &platform.fallback_order
        } else {
            &own.fallback_order
        };
        // A fallback order someone set is the whole list: a tenant that named only ChatGPT
        // (data residency, its own contract) never has its conversations sent elsewhere.
        // Without one, every provider with a key is tried.
        let rest: &[ProviderKind] = if fallback.is_empty() {
            &ProviderKind::ALL
        } else {
            &[]
        };
        for k in default
            .into_iter()
            .chain(fallback.iter().copied())
            .chain(rest.iter().copied())
        {
            if !order.contains(&k) {
                order.push(k);
            }
        }
        let mut providers = Vec::new();
        for kind in order {
            let mine = own.providers.get(&kind);
            let theirs = platform.providers.get(&kind);
            let (key_from, key, base) = if let Some(key) = mine
                .map(|p| self.open_key(own_scope, kind, p))
                .transpose()?
                .flatten()
                .filter(|_| tenant.is_some())
            {
                (own_scope, key, mine)
            } else if let Some(key) = theirs
                .map(|p| self.open_key(SettingsScope::Platform, kind, p))
                .transpose()?
                .flatten()
            {
                (SettingsScope::Platform, key, theirs)
            } else {
                continue;
            };
            let from_tenant = key_from != SettingsScope::Platform;
            let pick = |f: fn(&StoredProvider) -> Option<String>| {
                mine.and_then(f).or_else(|| {
                    if from_tenant {
                        None
                    } else {
                        theirs.and_then(f)
                    }
                })
            };
            let model = pick(|p| p.model.clone()).unwrap_or_else(|| default_model(kind).to_owned());
            let temperature = mine
                .and_then(|p| p.temperature)
                .or_else(|| {
                    if from_tenant {
                        None
                    } else {
                        theirs.and_then(|p| p.temperature)
                    }
                })
                .unwrap_or(DEFAULT_TEMPERATURE);
            let max_tokens = mine
                .and_then(|p| p.max_tokens)
                .or_else(|| {
                    if from_tenant {
                        None
                    } else {
                        theirs.and_then(|p| p.max_tokens)
                    }
                })
                .unwrap_or(DEFAULT_MAX_TOKENS);
            let base_url = base
                .and_then(|p| p.url.clone())
                .unwrap_or_else(|| default_url(kind).to_owned());
            providers.push(EffectiveProvider {
                kind,
                api_key: key,
                base_url,
                model,
                temperature,
                max_tokens,
                key_from,
            });
        }
        let business_hours = own
            .business_hours
            .as_ref()
            .and_then(|spec| BusinessHours::parse(spec).ok());
        Ok(EffectiveAi {
            providers,
            instructions: own.instructions,
            business_hours,
            daily_token_limit: own.daily_token_limit.or(platform.daily_token_limit),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_reveal_little() {
        assert_eq!(key_hint("sk-proj-abcdefghijklmnop1234"), "sk-…1234");
        assert_eq!(key_hint("short-key"), "…ey");
    }

    #[test]
    fn urls() {
        assert_eq!(
            check_url("https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            check_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_url("ftp://x.example").is_err());
        assert!(check_url("https://user:pw@x.example").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn text_rule() {
        assert!(allowed_in_text("Tone: friendly.\nNever promise refunds.\t"));
        assert!(!allowed_in_text("a\u{0}b"));
        assert!(!allowed_in_text("a\u{202e}b"));
        assert!(!allowed_in_text("a\u{200b}b"), "zero-width space");
        assert!(!allowed_in_text("a\u{feff}b"), "byte order mark");
        assert!(!allowed_in_text("a\u{2060}b"), "word joiner");
        assert!(!allowed_in_text("a\u{e0041}b"), "tag character");
        assert!(
            allowed_in_text("می\u{200c}خواهم 👩\u{200d}🍳"),
            "ZWNJ and ZWJ"
        );
    }
}
