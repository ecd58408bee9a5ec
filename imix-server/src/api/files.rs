//! A file download response: the stored content type and the original file name.

use poem::{IntoResponse, Response};
use poem_openapi::{
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry},
    ApiResponse,
};

/// A file with its type and download name.
pub struct FileDownload {
    /// Bytes.
    pub data: bytes::Bytes,
    /// MIME type.
    pub content_type: String,
    /// Name for `Content-Disposition`.
    pub file_name: String,
}

impl From<imix_tenancy::StoredFile> for FileDownload {
    fn from(f: imix_tenancy::StoredFile) -> Self {
        Self {
            data: f.data,
            content_type: f.content_type,
            file_name: f.file_name,
        }
    }
}

impl IntoResponse for FileDownload {
    fn into_response(self) -> Response {
        // RFC 6266 / 5987: an ASCII fallback plus the UTF-8 name.
        let ascii: String = self
            .file_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let encoded: String = self
            .file_name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        Response::builder()
            .content_type(self.content_type)
            .header(
                poem::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"),
            )
            .header("X-Content-Type-Options", "nosniff")
            .body(self.data)
    }
}

impl ApiResponse for FileDownload {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The file, with its stored content type",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/octet-stream",
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format(
                        "string", "binary",
                    ))),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}
