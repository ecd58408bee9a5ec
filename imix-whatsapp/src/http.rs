//! The reqwest (rustls) adapter of [`WhatsAppClient`]: Meta's Graph API over HTTPS.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{
    AccessToken, WhatsAppClient, DEFAULT_GRAPH_API_URL, DEFAULT_GRAPH_API_VERSION,
};
use crate::error::{ApiError, Error, GraphErrorResponse, Result};
use crate::model::{
    CodeMethod, CreatedTemplate, MarkReadRequest, MediaContent, MediaId, MediaInfo, MediaUpload,
    MessagingProduct, NewTemplate, OutboundMessage, PhoneNumber, RegisterRequest,
    RequestCodeRequest, SendMessageResponse, SubscriptionOverride, SuccessResponse, TemplatePage,
    TemplateQuery, VerifyCodeRequest, PHONE_NUMBER_FIELDS,
};

/// The largest JSON answer (or error answer) read from the Graph API: 4 MiB. Meta's
/// answers are a few kilobytes; anything larger is refused with [`Error::TooLarge`] as soon
/// as it crosses the cap, without reading the rest.
pub const MAX_JSON_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;
/// The largest media file downloaded: 100 MiB, the size of the largest document Meta
/// accepts.
pub const MAX_MEDIA_DOWNLOAD_BYTES: u64 = 100 * 1024 * 1024;

/// Where and how [`GraphApiClient`] talks to the Graph API.
#[derive(Debug, Clone)]
pub struct GraphApiConfig {
    /// Base URL without the version, e.g. `https://graph.facebook.com` (the default) or
    /// the simulator's URL. `IMIX_GRAPH_API_URL` in the server.
    pub base_url: String,
    /// Graph API version path segment, default [`DEFAULT_GRAPH_API_VERSION`] (`v23.0`).
    pub version: String,
    /// Timeout of one request, default 30 seconds.
    pub timeout: Duration,
    /// Timeout for establishing a connection, default 10 seconds.
    pub connect_timeout: Duration,
    /// The largest JSON answer read, default [`MAX_JSON_RESPONSE_BYTES`].
    pub max_json_bytes: u64,
    /// The largest media download, default [`MAX_MEDIA_DOWNLOAD_BYTES`].
    pub max_media_bytes: u64,
}

impl Default for GraphApiConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_GRAPH_API_URL.to_owned(),
            version: DEFAULT_GRAPH_API_VERSION.to_owned(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_json_bytes: MAX_JSON_RESPONSE_BYTES,
            max_media_bytes: MAX_MEDIA_DOWNLOAD_BYTES,
        }
    }
}

impl GraphApiConfig {
    /// The default configuration with another base URL.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..Self::default()
        }
    }
}

/// [`WhatsAppClient`] over reqwest. Cheap to clone; share one for every account.
#[derive(Debug, Clone)]
pub struct GraphApiClient {
    http: reqwest::Client,
    base: String,
    max_json_bytes: u64,
    max_media_bytes: u64,
}

impl GraphApiClient {
    /// Builds a client. Fails when the base URL is not an absolute HTTP(S) URL or the
    /// version is not of the form `vNN.N`.
    pub fn new(config: GraphApiConfig) -> Result<Self> {
        let base_url = config.base_url.trim_end_matches('/');
        let url = reqwest::Url::parse(base_url).map_err(|e| Error::Config {
            field: "base_url",
            source: Box::new(e),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(Error::Config {
                field: "base_url",
                source: "must be an http(s) URL".into(),
            });
        }
        let version = config.version.trim();
        let valid_version = version
            .strip_prefix('v')
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.chars().all(|c| c.is_ascii_digit())
            });
        if !valid_version {
            return Err(Error::Config {
                field: "version",
                source: format!("{version:?} is not a Graph API version like v23.0").into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("imix-whatsapp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config {
                field: "http_client",
                source: Box::new(e),
            })?;
        Ok(Self {
            http,
            base: format!("{base_url}/{version}"),
            max_json_bytes: config.max_json_bytes,
            max_media_bytes: config.max_media_bytes,
        })
    }

    /// The versioned base URL, e.g. `https://graph.facebook.com/v23.0`.
    pub fn versioned_base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, node: &str, edge: Option<&str>) -> Result<String> {
        let node = segment(node)?;
        Ok(match edge {
            Some(edge) => format!("{}/{node}/{edge}", self.base),
            None => format!("{}/{node}", self.base),
        })
    }

    async fn post_json<B: Serialize + ?Sized + Sync, T: DeserializeOwned>(
        &self,
        op: &'static str,
        token: &AccessToken,
        url: String,
        body: &B,
    ) -> Result<T> {
        let request = self.http.post(&url).bearer_auth(token.expose()).json(body);
        self.execute(op, request).await
    }

    /// Sends `request` and decodes its JSON answer, read up to the JSON cap.
    async fn execute<T: DeserializeOwned>(
        &self,
        op: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T> {
        let response = send(op, request, self.max_json_bytes).await?;
        let body = read_capped(op, response, self.max_json_bytes).await?;
        serde_json::from_slice(&body).map_err(|e| {
            tracing::warn!(op, error = %e, "unexpected Graph API response body");
            Error::Decode(e)
        })
    }
}

/// Checks that an id can be used as one path segment.
fn segment(id: &str) -> Result<&str> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '='));
    if ok && id != "." && id != ".." {
        Ok(id)
    } else {
        Err(Error::Invalid { field: "id" })
    }
}

fn transport(e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::Timeout
    } else {
        // reqwest's error names the URL, which carries no secret (the token travels only
        // in the Authorization header).
        Error::Transport(Box::new(e))
    }
}

/// Parses `Retry-After` given in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Reads the body of `response`, refusing it with [`Error::TooLarge`] once it is known to
/// exceed `limit` bytes: from `Content-Length` before reading anything, otherwise as soon
/// as the bytes read cross it (chunked answers), dropping the connection.
async fn read_capped(
    op: &'static str,
    mut response: reqwest::Response,
    limit: u64,
) -> Result<bytes::Bytes> {
    let too_large = || {
        tracing::warn!(
            op,
            limit,
            "Graph API answer exceeds the size limit; not read"
        );
        Error::TooLarge { limit }
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn send(
    op: &'static str,
    request: reqwest::RequestBuilder,
    max_error_bytes: u64,
) -> Result<reqwest::Response> {
    let response = request.send().await.map_err(|e| {
        let e = transport(e);
        tracing::warn!(op, error = %e, "Graph API request failed");
        e
    })?;
    let status = response.status();
    if status.is_success() {
        tracing::debug!(op, status = status.as_u16(), "Graph API call succeeded");
        return Ok(response);
    }
    let retry = retry_after(response.headers());
    let body = read_capped(op, response, max_error_bytes).await?;
    let error = match serde_json::from_slice::<GraphErrorResponse>(&body) {
        Ok(parsed) => Error::Api(Box::new(ApiError {
            status: status.as_u16(),
            retry_after: retry,
            error: parsed.error,
        })),
        Err(_) => Error::Status {
            status: status.as_u16(),
            retry_after: retry,
        },
    };
    let graph = error.graph_error();
    tracing::warn!(
        op,
        status = status.as_u16(),
        code = graph.map(|g| g.code),
        subcode = graph.and_then(|g| g.error_subcode),
        fbtrace_id = graph.and_then(|g| g.fbtrace_id.as_deref()),
        class = ?error.class(),
        "Graph API call failed: {error}"
    );
    Err(error)
}

fn expect_success(op: &'static str, response: SuccessResponse) -> Result<()> {
    if response.success {
        Ok(())
    } else {
        tracing::warn!(op, "Graph API answered success: false");
        Err(Error::NotSuccessful { operation: op })
    }
}

#[async_trait]
impl WhatsAppClient for GraphApiClient {
    async fn send_message(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        message: &OutboundMessage,
    ) -> Result<SendMessageResponse> {
        let url = self.url(phone_number_id, Some("messages"))?;
        tracing::debug!(phone_number_id, kind = message.kind(), "sending message");
        self.post_json("send_message", token, url, message).await
    }

    async fn mark_as_read(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        message_id: &str,
    ) -> Result<()> {
        let url = self.url(phone_number_id, Some("messages"))?;
        let body = MarkReadRequest {
            messaging_product: MessagingProduct::WhatsApp,
            status: "read".to_owned(),
            message_id: message_id.to_owned(),
        };
        let response = self.post_json("mark_as_read", token, url, &body).await?;
        expect_success("mark_as_read", response)
    }

    async fn upload_media(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        upload: MediaUpload,
    ) -> Result<MediaId> {
        let url = self.url(phone_number_id, Some("media"))?;
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::from(upload.data.clone()),
            upload.data.len() as u64,
        )
        .file_name(upload.file_name.clone())
        .mime_str(&upload.mime_type)
        .map_err(|_| Error::Invalid { field: "mime_type" })?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", upload.mime_type.clone())
            .part("file", part);
        let request = self
            .http
            .post(url)
            .bearer_auth(token.expose())
            .multipart(form);
        self.execute("upload_media", request).await
    }

    async fn get_media(&self, token: &AccessToken, media_id: &str) -> Result<MediaInfo> {
        let url = self.url(media_id, None)?;
        let request = self.http.get(url).bearer_auth(token.expose());
        self.execute("get_media", request).await
    }

    async fn download_media(&self, token: &AccessToken, url: &str) -> Result<MediaContent> {
        let parsed = reqwest::Url::parse(url).map_err(|_| Error::Invalid { field: "url" })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Invalid { field: "url" });
        }
        let request = self.http.get(parsed).bearer_auth(token.expose());
        let response = send("download_media", request, self.max_json_bytes).await?;
        let mime_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let data = read_capped("download_media", response, self.max_media_bytes).await?;
        Ok(MediaContent { mime_type, data })
    }

    async fn list_templates(
        &self,
        token: &AccessToken,
        waba_id: &str,
        query: &TemplateQuery,
    ) -> Result<TemplatePage> {
        let url = self.url(waba_id, Some("message_templates"))?;
        let mut params: Vec<(&str, String)> = vec![(
            "fields",
            "id,name,language,status,category,components".to_owned(),
        )];
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        if let Some(after) = &query.after {
            params.push(("after", after.clone()));
        }
        if let Some(name) = &query.name {
            params.push(("name", name.clone()));
        }
        if let Some(status) = &query.status {
            params.push(("status", status.clone()));
        }
        let request = self
            .http
            .get(url)
            .bearer_auth(token.expose())
            .query(&params);
        self.execute("list_templates", request).await
    }

    async fn create_template(
        &self,
        token: &AccessToken,
        waba_id: &str,
        template: &NewTemplate,
    ) -> Result<CreatedTemplate> {
        let url = self.url(waba_id, Some("message_templates"))?;
        self.post_json("create_template", token, url, template)
            .await
    }

    async fn delete_template<'a>(
        &self,
        token: &AccessToken,
        waba_id: &str,
        name: &str,
        hsm_id: Option<&'a str>,
    ) -> Result<()> {
        let url = self.url(waba_id, Some("message_templates"))?;
        let mut params = vec![("name", name)];
        if let Some(id) = hsm_id {
            params.push(("hsm_id", id));
        }
        let request = self
            .http
            .delete(url)
            .bearer_auth(token.expose())
            .query(&params);
        let response = self.execute("delete_template", request).await?;
        expect_success("delete_template", response)
    }

    async fn get_phone_number(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
    ) -> Result<PhoneNumber> {
        let url = self.url(phone_number_id, None)?;
        let request = self
            .http
            .get(url)
            .bearer_auth(token.expose())
            .query(&[("fields", PHONE_NUMBER_FIELDS)]);
        self.execute("get_phone_number", request).await
    }

    async fn request_code(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        method: CodeMethod,
        language: &str,
    ) -> Result<()> {
        let url = self.url(phone_number_id, Some("request_code"))?;
        let body = RequestCodeRequest {
            code_method: method,
            language: language.to_owned(),
        };
        let response = self.post_json("request_code", token, url, &body).await?;
        expect_success("request_code", response)
    }

    async fn verify_code(
        &self,
        token: &AccessToken,
        phone_number_id: &str,
        code: &str,
    ) -> Result<()> {
        let url = self.url(phone_number_id, Some("verify_code"))?;
        let body = VerifyCodeRequest {
            code: code.to_owned(),
        };
        let response = self.post_json("verify_code", token, url, &body).await?;
        expect_success("verify_code", response)
    }

    async fn register(&self, token: &AccessToken, phone_number_id: &str, pin: &str) -> Result<()> {
        let url = self.url(phone_number_id, Some("register"))?;
        let body = RegisterRequest {
            messaging_product: MessagingProduct::WhatsApp,
            pin: pin.to_owned(),
        };
        let response = self.post_json("register", token, url, &body).await?;
        expect_success("register", response)
    }

    async fn subscribe_app(
        &self,
        token: &AccessToken,
        waba_id: &str,
        callback: Option<SubscriptionOverride>,
    ) -> Result<()> {
        let url = self.url(waba_id, Some("subscribed_apps"))?;
        let body = callback.unwrap_or_default();
        let response = self.post_json("subscribe_app", token, url, &body).await?;
        expect_success("subscribe_app", response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_configuration_and_ids() {
        assert!(GraphApiClient::new(GraphApiConfig::with_base_url("not a url")).is_err());
        assert!(GraphApiClient::new(GraphApiConfig::with_base_url("ftp://x")).is_err());
        let bad_version = GraphApiConfig {
            version: "23".into(),
            ..GraphApiConfig::default()
        };
        assert!(GraphApiClient::new(bad_version).is_err());
        assert!(segment("123").is_ok());
        assert!(segment("../x").is_err());
        assert!(segment("a/b").is_err());
        assert!(segment("").is_err());
    }

    #[test]
    fn builds_versioned_urls() -> Result<()> {
        let client = GraphApiClient::new(GraphApiConfig::with_base_url("http://127.0.0.1:1/"))?;
        assert_eq!(client.versioned_base_url(), "http://127.0.0.1:1/v23.0");
        assert_eq!(
            client.url("42", Some("messages"))?,
            "http://127.0.0.1:1/v23.0/42/messages"
        );
        Ok(())
    }
}
