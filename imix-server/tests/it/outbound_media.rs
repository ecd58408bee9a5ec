//! Outbound media from files of ours, on both stores against the Graph API simulator: a
//! message naming a stored inbound media (`blob`) is uploaded to Meta once and sent by the
//! media id Meta answered; a second send of the same file uses the cached id; an expired
//! cache entry uploads again; an upload Meta refuses ends `failed` with Meta's error; a
//! `blob` naming nothing of the tenant is refused naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use std::time::Duration;

use common::{base_vars, Backend, TestServer};
use imix_whatsapp::{
    model::{MediaSource, MessageContent},
    simulator::{Fault, Inbound, SimBusiness, SimPhoneNumber, Simulator},
    webhook::{InboundContent, InboundMedia},
};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    a_file_of_ours_is_uploaded_once_and_sent_by_its_media_id,
    an_upload_meta_refuses_fails_the_message_with_metas_error,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";
const CUSTOMER: &str = "15550100111";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 a tiny picture \xff\xd9";

struct World {
    sim: Simulator,
    s: TestServer,
    vars: std::collections::HashMap<String, String>,
    tenant: String,
    admin: String,
    account: String,
}

async fn world(backend: Backend) -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(listener).await.unwrap();
    sim.add_business(SimBusiness::new(WABA, SECRET, TOKEN).with_phone_number(
        SimPhoneNumber::new(PHONE, "+1 555-010-0001").with_verified_name("Alpha Trading"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut vars = base_vars(dir.path(), backend);
    vars.insert("IMIX_GRAPH_API_URL".into(), sim.url());
    let s = TestServer::start_in(dir, vars.clone()).await;
    let platform = s.admin().await;
    let t = s.create_tenant(&platform, json!({"name": "Alpha"})).await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@alpha.example", "first_name": "A", "last_name": "Owner", "role": "admin", "tenant_id": tenant}),
        )
        .await;
    let a = s
        .add_whatsapp_account(
            &admin,
            &tenant,
            json!({
                "waba_id": WABA,
                "business_account_id": "1000",
                "phone_number_id": PHONE,
                "app_id": "3003",
                "display_phone_number": "+1 555-010-0001",
                "business_name": "Alpha Trading",
                "access_token": TOKEN,
                "app_secret": SECRET,
            }),
        )
        .await;
    let account = a["id"].as_str().unwrap().to_owned();
    sim.set_webhook_url(WABA, &s.url("/webhooks/whatsapp"));
    let (status, v) = s
        .send_json(
            &admin,
            Method::POST,
            &format!("/api/v1/whatsapp-accounts/{account}/verify"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    World {
        sim,
        s,
        vars,
        tenant,
        admin,
        account,
    }
}

impl World {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}{rest}", self.tenant)
    }

    async fn get(&self, rest: &str) -> (u16, Value) {
        self.s.get_json(&self.admin, &self.path(rest)).await
    }

    /// The customer sends an image (`data`): answers the conversation and the message once
    /// its media is stored.
    async fn inbound_image(&self, data: &[u8]) -> (String, String) {
        let media = self
            .sim
            .add_inbound_media(PHONE, "image/jpeg", bytes::Bytes::copy_from_slice(data))
            .unwrap();
        let (wamid, _) = self
            .sim
            .send_inbound(
                PHONE,
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
        for _ in 0..600 {
            let (_, convs) = self.get("/conversations?limit=100").await;
            for c in convs["items"].as_array().into_iter().flatten() {
                let id = c["id"].as_str().unwrap();
                let (_, msgs) = self
                    .get(&format!("/conversations/{id}/messages?limit=100"))
                    .await;
                let found = msgs["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| m["wamid"] == wamid.as_str())
                    .filter(|_| c["window_expires_at"].is_string());
                if let Some(m) = found {
                    let message = m["id"].as_str().unwrap().to_owned();
                    let (code, st) = self.get(&format!("/messages/{message}/media/status")).await;
                    if code == 200 && st["state"] == "available" {
                        return (id.to_owned(), message);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the inbound image was never stored");
    }

    async fn send(&self, body: Value) -> (u16, Value) {
        self.s
            .send_json(&self.admin, Method::POST, &self.path("/messages"), body)
            .await
    }

    async fn wait_for(&self, id: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, m) = self.get(&format!("/messages/{id}")).await;
            if m["status"] == status {
                return m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "message {id} never reached {status}: {m}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The media ids the simulator answered to uploads, oldest first.
    fn uploads(&self) -> Vec<String> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/{PHONE}/media")))
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
