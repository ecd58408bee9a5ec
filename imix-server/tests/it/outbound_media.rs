//! Outbound media from files of ours, on both stores against the Graph API simulator: a
//! message naming a stored inbound media (`blob`) is uploaded to Meta once and sent by the
//! media id Meta answered; a second send of the same file uses the cached id; an expired
//! cache entry uploads again; an upload Meta refuses ends `failed` with Meta's error; a
//! `blob` naming nothing of the tenant is refused naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{
    outbound_world::{OutboundWorld, Setup, CUSTOMER},
    Backend,
};
use imix_whatsapp::{
    model::{MediaSource, MessageContent},
    simulator::{Fault, Inbound},
    webhook::{InboundContent, InboundMedia},
};
use serde_json::json;

on_both_backends!(
    a_file_of_ours_is_uploaded_once_and_sent_by_its_media_id,
    an_upload_meta_refuses_fails_the_message_with_metas_error,
);

const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 a tiny picture \xff\xd9";

async fn world(backend: Backend) -> OutboundWorld {
    OutboundWorld::start(backend, Setup::default()).await
}

impl OutboundWorld {
    /// The customer sends an image (`data`): answers the conversation and the message once
    /// its media is stored.
    async fn inbound_image(&self, data: &[u8]) -> (String, String) {
        let media = self
            .sim
            .add_inbound_media(
                &self.phone,
                "image/jpeg",
                bytes::Bytes::copy_from_slice(data),
            )
            .unwrap();
        let (wamid, _) = self
            .sim
            .send_inbound(
                &self.phone,
                Inbound::new(
                    CUSTOMER,
                    "Customer",
                    InboundContent::Image {
                        image: InboundMedia {
                            id: media.id.clone(),
                            mime_type: media.mime_type.clone(),
                            sha256: media.sha256.clone(),
                            caption: Some("look".into()),
                            filename: None,
                            voice: None,
                            animated: None,
                        },
                    },
                ),
            )
            .await
            .unwrap();
        let (conversation, message) = self.stored(&wamid).await;
        for _ in 0..600 {
            let (code, st) = self
                .get_raw(&format!("/messages/{message}/media/status"))
                .await;
            if code == 200 && st["state"] == "available" {
                return (conversation, message);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the inbound image's media was never stored");
    }

    /// The media ids the simulator answered to uploads, oldest first.
    fn uploads(&self) -> Vec<String> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/{}/media", self.phone)))
            .filter_map(|r| r.response_json()?["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// The media id an image Meta accepted was sent by.
    fn sent_image_id(&self, wamid: &str) -> String {
        match self.sim.sent_message(wamid).unwrap().content {
            MessageContent::Image { image } => match image.source {
                MediaSource::Id(id) => id,
                other => panic!("sent by {other:?}"),
            },
            other => panic!("not an image: {other:?}"),
        }
    }

    async fn send_blob(&self, conversation: &str, blob: &str) -> String {
        let (status, body) = self
            .send(json!({"conversation_id": conversation, "type": "image",
                "image": {"blob": blob, "caption": "your picture"}}))
            .await;
        assert_eq!(status, 202, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }
}

async fn a_file_of_ours_is_uploaded_once_and_sent_by_its_media_id(backend: Backend) {
    let w = world(backend).await;
    let (conversation, image) = w.inbound_image(JPEG).await;

    let first = w.send_blob(&conversation, &image).await;
    let sent = w.wait_for(&first, "sent").await;
    let uploads = w.uploads();
    assert_eq!(uploads.len(), 1, "one upload");
    assert_eq!(w.sent_image_id(sent["wamid"].as_str().unwrap()), uploads[0]);
    // The upload is Meta's multipart shape.
    let upload = w
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/media"))
        .unwrap();
    assert!(upload
        .content_type
        .as_deref()
        .unwrap()
        .starts_with("multipart/form-data"));
    let text = String::from_utf8_lossy(&upload.body);
    assert!(text.contains("name=\"messaging_product\"") && text.contains("whatsapp"));
    assert!(text.contains("name=\"type\"") && text.contains("image/jpeg"));
    assert!(text.contains("name=\"file\""));

    // The same file again: the cached media id, no upload.
    let second = w.send_blob(&conversation, &image).await;
    let sent = w.wait_for(&second, "sent").await;
    assert_eq!(w.uploads().len(), 1, "the cached media id was used");
    assert_eq!(w.sent_image_id(sent["wamid"].as_str().unwrap()), uploads[0]);

    // The cache entry expired: uploaded again, sent by the new id.
    let config = imix_server::config::Config::from_vars(w.vars.clone()).unwrap();
    let store = imix_server::state::open_store(&config).await.unwrap();
    let cache = imix_messaging::storage::outbound_media::open(&store.backend).unwrap();
    let sha = imix_messaging::media::sha256_hex(JPEG);
    let account_id = w.account.parse().unwrap();
    let mut entry = cache.get(account_id, &sha).await.unwrap().expect("cached");
    assert_eq!(entry.media_id, uploads[0]);
    // Cached for 29 days (Meta keeps uploads 30).
    let days = (entry.expires_at - entry.uploaded_at).num_days();
    assert_eq!(days, 29);
    entry.expires_at = imix_core::now() - chrono::Duration::seconds(1);
    cache.put(&entry).await.unwrap();
    let third = w.send_blob(&conversation, &image).await;
    let sent = w.wait_for(&third, "sent").await;
    let uploads = w.uploads();
    assert_eq!(uploads.len(), 2, "the expired entry was uploaded again");
    assert_ne!(uploads[0], uploads[1]);
    assert_eq!(w.sent_image_id(sent["wamid"].as_str().unwrap()), uploads[1]);
    assert_eq!(
        cache.get(account_id, &sha).await.unwrap().unwrap().media_id,
        uploads[1]
    );

    // A `blob` that is no stored media of the tenant is refused, naming the field.
    let (status, body) = w
        .send(json!({"conversation_id": conversation, "type": "image",
            "image": {"blob": imix_messaging::MessageId::new().to_string()}}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "image.blob", "{body}");
    // A forged reference is refused too.
    let (status, body) = w
        .send(json!({"conversation_id": conversation, "type": "image",
            "image": {"id": format!("imix-blob:{image}")}}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "image.id", "{body}");
    assert_eq!(w.sim.sent_messages().len(), 3);
}

async fn an_upload_meta_refuses_fails_the_message_with_metas_error(backend: Backend) {
    let w = world(backend).await;
    let (conversation, image) = w.inbound_image(JPEG).await;
    // The next Graph API call (the upload) is refused as a bad parameter: permanent.
    w.sim.inject_fault(
        Fault::graph(
            400,
            100,
            "(#100) Param file must be a file with one of the following types",
        ),
        1,
    );
    let id = w.send_blob(&conversation, &image).await;
    let failed = w.wait_for(&id, "failed").await;
    assert_eq!(failed["error"]["code"], 100, "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Param file"),
        "{failed}"
    );
    assert!(w.sim.sent_messages().is_empty(), "nothing was sent");
    assert!(w.uploads().is_empty(), "no upload succeeded");
}
