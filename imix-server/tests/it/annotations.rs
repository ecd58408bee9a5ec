//! Private notes, labels and canned responses end to end, on both stores: notes follow
//! the conversation's visibility (agents: their own and unassigned conversations) and only
//! their author edits them; labels are unique per tenant, set on conversations, filter the
//! list (as contact tags do) and leave conversations when deleted; canned responses are
//! managed with `inbox.manage` and read by every inbox user. Another tenant's ids are 404
//! and bad input changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common;

use common::{graph_simulator, Backend, TestServer};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};

on_both_backends!(
    notes_follow_conversation_visibility_and_their_author,
    labels_are_set_filtered_and_removed_with_their_definition,
    canned_responses_are_managed_by_supervisors_and_read_by_all,
);

const WABA: &str = "1001";
const PHONE: &str = "2001";
const TOKEN: &str = "EAAG-meta-token-alpha-0123456789-XyZ9";
const SECRET: &str = "app-secret-alpha-0123456789abcdef-Q7w";

struct World {
    _sim: imix_whatsapp::simulator::Simulator,
    s: TestServer,
    platform: String,
    tenant: String,
    admin: String,
    /// Conversations of customers 22245000001 and 22245000002, in that order.
    c1: String,
    c2: String,
    /// An admin of another tenant.
    other_admin: String,
    other_tenant: String,
}

async fn world(backend: Backend) -> World {
    let sim = graph_simulator(WABA, PHONE, SECRET, TOKEN).await;
    let s = TestServer::start_with_graph(backend, &sim.url()).await;
    let platform = s.admin().await;
    let t = s.create_tenant(&platform, json!({"name": "Alpha"})).await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let (_, admin) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@alpha.example", "first_name": "Aminata", "last_name": "Owner", "role": "admin", "tenant_id": tenant}),
        )
        .await;
    s.add_whatsapp_account(
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
    let o = s.create_tenant(&platform, json!({"name": "Beta"})).await;
    let other_tenant = o["id"].as_str().unwrap().to_owned();
    let (_, other_admin) = s
        .user_with_token(
            &platform,
            json!({"email": "owner@beta.example", "first_name": "B", "last_name": "Owner", "role": "admin", "tenant_id": other_tenant}),
        )
        .await;

    let base = 1_760_000_000;
    let message = |wamid: &str, from: &str, ts: i64| json!({"from": from, "id": wamid, "timestamp": ts.to_string(), "type": "text", "text": {"body": "Bonjour"}});
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE},
            "contacts": [{"profile": {"name": "Aïcha"}, "wa_id": "22245000001"},
                         {"profile": {"name": "Omar"}, "wa_id": "22245000002"}],
            "messages": [message("wamid.A1", "22245000001", base),
                         message("wamid.B1", "22245000002", base + 1)]
        }
    }]}]})
    .to_string();
    let signature =
        imix_whatsapp::webhook::sign(&SecretString::from(SECRET.to_owned()), body.as_bytes());
    let resp = s
        .client
        .post(s.url("/webhooks/whatsapp"))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut list = Vec::new();
    for _ in 0..250 {
        let (_, l) = s
            .get_json(&admin, &format!("/api/v1/tenants/{tenant}/conversations"))
            .await;
        list = l["items"].as_array().cloned().unwrap_or_default();
        if list.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(list.len(), 2, "two conversations");
    let wa_of = |c: &Value| c["contact_id"].as_str().unwrap().to_owned();
    // Order the two conversations by their customer's wa_id.
    let mut pairs = Vec::new();
    for c in &list {
        let (_, contact) = s
            .get_json(
                &admin,
                &format!("/api/v1/tenants/{tenant}/contacts/{}", wa_of(c)),
            )
            .await;
        pairs.push((
            contact["wa_id"].as_str().unwrap().to_owned(),
            c["id"].as_str().unwrap().to_owned(),
        ));
    }
    pairs.sort();
    World {
        _sim: sim,
        s,
        platform,
        c1: pairs[0].1.clone(),
        c2: pairs[1].1.clone(),
        tenant,
        admin,
        other_admin,
        other_tenant,
    }
}

impl World {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}/{rest}", self.tenant)
    }

    async fn user(&self, email: &str, role: &str) -> (String, String) {
        let (user, token) = self
            .s
            .user_with_token(
                &self.platform,
                json!({"email": email, "first_name": "Sidi", "last_name": role, "role": role, "tenant_id": self.tenant}),
            )
            .await;
        (user["id"].as_str().unwrap().to_owned(), token)
    }

    async fn send(&self, token: &str, method: Method, rest: &str, body: Value) -> (u16, Value) {
        self.s
            .send_json(token, method, &self.path(rest), body)
            .await
    }

    async fn get(&self, token: &str, rest: &str) -> (u16, Value) {
        self.s.get_json(token, &self.path(rest)).await
    }

    async fn delete(&self, token: &str, rest: &str) -> u16 {
        self.s
            .call(token, Method::DELETE, &self.path(rest))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn ids(&self, token: &str, rest: &str) -> Vec<String> {
        let (status, list) = self.get(token, rest).await;
        assert_eq!(status, 200, "{rest}: {list}");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn field(v: &Value) -> Option<&str> {
    v["error"]["details"]["field"].as_str()
}

async fn notes_follow_conversation_visibility_and_their_author(backend: Backend) {
    let w = world(backend).await;
    let (agent1, agent1_token) = w.user("one@alpha.example", "agent").await;
    let (_, agent2_token) = w.user("two@alpha.example", "agent").await;
    let (_, supervisor) = w.user("sup@alpha.example", "supervisor").await;
    let (_, read_only) = w.user("ro@alpha.example", "read_only").await;
    // c1 goes to agent one; c2 stays unassigned.
    let (status, c) = w
        .send(
            &w.admin,
            Method::PATCH,
            &format!("conversations/{}", w.c1),
            json!({"assignee": agent1}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let notes1 = format!("conversations/{}/notes", w.c1);

    // Bad bodies: 422 naming body, nothing written.
    for bad in [
        json!({"body": ""}),
        json!({"body": "   \n "}),
        json!({"body": "a\u{7}b"}),
        json!({"body": "x".repeat(4001)}),
    ] {
        let (status, err) = w.send(&agent1_token, Method::POST, &notes1, bad).await;
        assert_eq!((status, field(&err)), (422, Some("body")), "{err}");
    }
    assert!(w.ids(&w.admin, &notes1).await.is_empty());

    let (status, note) = w
        .send(
            &agent1_token,
            Method::POST,
            &notes1,
            json!({"body": "Client VIP.\n\tRappeler demain — شكرا"}),
        )
        .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["author_id"], agent1.as_str());
    assert_eq!(note["author_name"], "Sidi agent");
    assert_eq!(note["body"], "Client VIP.\n\tRappeler demain — شكرا");
    let note_id = note["id"].as_str().unwrap().to_owned();
    let (status, admin_note) = w
        .send(&w.admin, Method::POST, &notes1, json!({"body": "Vu."}))
        .await;
    assert_eq!(status, 201, "{admin_note}");
    assert_eq!(admin_note["author_name"], "Aminata Owner");
    let admin_note_id = admin_note["id"].as_str().unwrap().to_owned();

    // Who sees them: the assignee, supervisors, read-only; not another agent.
    for token in [&agent1_token, &supervisor, &read_only, &w.admin] {
        assert_eq!(
            w.ids(token, &notes1).await,
            vec![note_id.clone(), admin_note_id.clone()]
        );
    }
    let (status, _) = w.get(&agent2_token, &notes1).await;
    assert_eq!(status, 404, "another agent's conversation");
    let (status, _) = w
        .send(&agent2_token, Method::POST, &notes1, json!({"body": "hi"}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .send(&read_only, Method::POST, &notes1, json!({"body": "hi"}))
        .await;
    assert_eq!(status, 403, "read-only writes nothing");
    // Unassigned c2: every agent sees and writes.
    let notes2 = format!("conversations/{}/notes", w.c2);
    let (status, n2) = w
        .send(
            &agent2_token,
            Method::POST,
            &notes2,
            json!({"body": "pour moi"}),
        )
        .await;
    assert_eq!(status, 201, "{n2}");
    // A note is reached only through its own conversation.
    let (status, _) = w
        .send(
            &agent1_token,
            Method::PATCH,
            &format!("{notes2}/{note_id}"),
            json!({"body": "moved?"}),
        )
        .await;
    assert_eq!(status, 404);

    // Only the author edits; a stale version is 409; bad input changes nothing.
    let one = format!("{notes1}/{note_id}");
    let (status, err) = w
        .send(&w.admin, Method::PATCH, &one, json!({"body": "mine now"}))
        .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["code"], "not_author");
    let (status, err) = w
        .send(&agent1_token, Method::PATCH, &one, json!({"body": ""}))
        .await;
    assert_eq!((status, field(&err)), (422, Some("body")));
    let (status, edited) = w
        .send(
            &agent1_token,
            Method::PATCH,
            &one,
            json!({"body": "Client VIP, rappelé.", "version": 1}),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(
        (edited["version"].as_u64(), edited["body"].as_str()),
        (Some(2), Some("Client VIP, rappelé."))
    );
    let (status, _) = w
        .send(
            &agent1_token,
            Method::PATCH,
            &one,
            json!({"body": "again", "version": 1}),
        )
        .await;
    assert_eq!(status, 409);

    // Deletes: an agent not their own → 403; a supervisor any; the author their own.
    let admin_one = format!("{notes1}/{admin_note_id}");
    assert_eq!(w.delete(&agent1_token, &admin_one).await, 403);
    assert_eq!(w.delete(&supervisor, &admin_one).await, 200);
    assert_eq!(w.delete(&agent1_token, &one).await, 200);
    assert_eq!(w.delete(&agent1_token, &one).await, 404);
    assert!(w.ids(&w.admin, &notes1).await.is_empty());

    // Another tenant: 404 for the conversation, the notes and a note.
    let n2_id = n2["id"].as_str().unwrap();
    let foreign = |rest: &str| format!("/api/v1/tenants/{}/{rest}", w.other_tenant);
    let (status, _) = w.s.get_json(&w.other_admin, &foreign(&notes2)).await;
    assert_eq!(status, 404);
    let (status, _) =
        w.s.get_json(
            &w.other_admin,
            &format!("/api/v1/tenants/{}/{notes2}", w.tenant),
        )
        .await;
    assert_eq!(status, 404, "naming the owner's tenant");
    let resp =
        w.s.call(
            &w.other_admin,
            Method::DELETE,
            &foreign(&format!("{notes2}/{n2_id}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(w.ids(&agent2_token, &notes2).await, vec![n2_id.to_owned()]);
}

async fn labels_are_set_filtered_and_removed_with_their_definition(backend: Backend) {
    let w = world(backend).await;
    let (_, agent) = w.user("one@alpha.example", "agent").await;

    // Definitions: only inbox.manage creates; bad input is 422 naming the field.
    let (status, _) = w
        .send(
            &agent,
            Method::POST,
            "labels",
            json!({"name": "VIP", "color": "#ff0000"}),
        )
        .await;
    assert_eq!(status, 403);
    for (bad, f) in [
        (json!({"name": "", "color": "#ff0000"}), "name"),
        (json!({"name": "VIP", "color": "red"}), "color"),
        (json!({"name": "VIP", "color": "#ff00001"}), "color"),
    ] {
        let (status, err) = w.send(&w.admin, Method::POST, "labels", bad).await;
        assert_eq!((status, field(&err)), (422, Some(f)), "{err}");
    }
    let (status, vip) = w
        .send(
            &w.admin,
            Method::POST,
            "labels",
            json!({"name": "VIP", "color": "#FF0000"}),
        )
        .await;
    assert_eq!(status, 201, "{vip}");
    assert_eq!(vip["color"], "#ff0000");
    let vip_id = vip["id"].as_str().unwrap().to_owned();
    let (status, err) = w
        .send(
            &w.admin,
            Method::POST,
            "labels",
            json!({"name": "vip", "color": "#00ff00"}),
        )
        .await;
    assert_eq!((status, field(&err)), (409, Some("name")), "{err}");
    assert_eq!(err["error"]["code"], "name_taken");
    let (status, late) = w
        .send(
            &w.admin,
            Method::POST,
            "labels",
            json!({"name": "En retard", "color": "#0000ff"}),
        )
        .await;
    assert_eq!(status, 201, "{late}");
    let late_id = late["id"].as_str().unwrap().to_owned();
    // Renaming onto another's name is a duplicate too, and changes nothing.
    let (status, err) = w
        .send(
            &w.admin,
            Method::PATCH,
            &format!("labels/{late_id}"),
            json!({"name": "Vip"}),
        )
        .await;
    assert_eq!((status, field(&err)), (409, Some("name")), "{err}");
    let (status, renamed) = w
        .send(
            &w.admin,
            Method::PATCH,
            &format!("labels/{late_id}"),
            json!({"name": "Urgent", "version": 1}),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), renamed["color"].as_str()),
        (Some("Urgent"), Some("#0000ff"))
    );
    assert_eq!(
        w.ids(&agent, "labels").await,
        vec![vip_id.clone(), late_id.clone()]
    );

    // Set on a conversation (an agent may on one they see); unknown ids are 422 and
    // change nothing.
    let labels1 = format!("conversations/{}/labels", w.c1);
    let (status, c) = w
        .send(
            &agent,
            Method::PUT,
            &labels1,
            json!({"label_ids": [vip_id, late_id, vip_id]}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["labels"], json!([vip_id, late_id]));
    let (status, other_label) =
        w.s.send_json(
            &w.other_admin,
            Method::POST,
            &format!("/api/v1/tenants/{}/labels", w.other_tenant),
            json!({"name": "VIP", "color": "#ff0000"}),
        )
        .await;
    assert_eq!(status, 201, "the same name in another tenant");
    for bad in [
        json!({"label_ids": [other_label["id"]]}),
        json!({"label_ids": ["not-an-id"]}),
        json!({"label_ids": [imix_messaging::annotations::LabelId::new().to_string()]}),
    ] {
        let (status, err) = w.send(&w.admin, Method::PUT, &labels1, bad).await;
        assert_eq!((status, field(&err)), (422, Some("label_ids")), "{err}");
    }
    let (_, c) = w.get(&w.admin, &format!("conversations/{}", w.c1)).await;
    assert_eq!(c["labels"], json!([vip_id, late_id]), "unchanged");
    let (status, _) = w
        .send(
            &w.admin,
            Method::PUT,
            &format!("conversations/{}/labels", w.c2),
            json!({"label_ids": [late_id]}),
        )
        .await;
    assert_eq!(status, 200);

    // Filters: by label, and by the contact's tag.
    assert_eq!(
        w.ids(&w.admin, &format!("conversations?label={vip_id}"))
            .await,
        vec![w.c1.clone()]
    );
    assert_eq!(
        w.ids(&w.admin, &format!("conversations?label={late_id}"))
            .await,
        vec![w.c1.clone(), w.c2.clone()]
    );
    let (status, err) = w.get(&w.admin, "conversations?label=nope").await;
    assert_eq!((status, field(&err)), (422, Some("label")));
    let (_, c2) = w.get(&w.admin, &format!("conversations/{}", w.c2)).await;
    let (status, contact) = w
        .send(
            &w.admin,
            Method::PATCH,
            &format!("contacts/{}", c2["contact_id"].as_str().unwrap()),
            json!({"tags": ["grossiste", "nouakchott"]}),
        )
        .await;
    assert_eq!(status, 200, "{contact}");
    assert_eq!(
        w.ids(&w.admin, "conversations?tag=grossiste").await,
        vec![w.c2.clone()]
    );
    assert!(w.ids(&w.admin, "conversations?tag=absent").await.is_empty());
    assert_eq!(
        w.ids(
            &w.admin,
            &format!("conversations?tag=nouakchott&label={late_id}")
        )
        .await,
        vec![w.c2.clone()]
    );

    // Another tenant: the label is not found, the filter finds nothing.
    let foreign = format!("/api/v1/tenants/{}/labels/{vip_id}", w.other_tenant);
    let resp =
        w.s.call(&w.other_admin, Method::DELETE, &foreign)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 404);
    let (status, _) =
        w.s.send_json(
            &w.other_admin,
            Method::PATCH,
            &format!("/api/v1/tenants/{}/labels/{vip_id}", w.tenant),
            json!({"name": "pris"}),
        )
        .await;
    assert_eq!(status, 404);

    // Deleting a label takes it off every conversation.
    assert_eq!(w.delete(&agent, &format!("labels/{late_id}")).await, 403);
    assert_eq!(w.delete(&w.admin, &format!("labels/{late_id}")).await, 200);
    let (_, c) = w.get(&w.admin, &format!("conversations/{}", w.c1)).await;
    assert_eq!(c["labels"], json!([vip_id]));
    let (_, c) = w.get(&w.admin, &format!("conversations/{}", w.c2)).await;
    assert_eq!(c["labels"], json!([]));
    assert!(w
        .ids(&w.admin, &format!("conversations?label={late_id}"))
        .await
        .is_empty());
    assert_eq!(w.ids(&w.admin, "labels").await, vec![vip_id.clone()]);
    // Clearing with an empty list.
    let (status, c) = w
        .send(&agent, Method::PUT, &labels1, json!({"label_ids": []}))
        .await;
    assert_eq!((status, c["labels"].clone()), (200, json!([])));
}

async fn canned_responses_are_managed_by_supervisors_and_read_by_all(backend: Backend) {
    let w = world(backend).await;
    let (_, agent) = w.user("one@alpha.example", "agent").await;
    let (_, supervisor) = w.user("sup@alpha.example", "supervisor").await;
    let (_, read_only) = w.user("ro@alpha.example", "read_only").await;
    let greet = json!({"shortcut": "greet", "title": "Salutation", "body": "Bonjour, comment puis-je vous aider ?", "language": "fr"});
    for token in [&agent, &read_only] {
        let (status, err) = w
            .send(token, Method::POST, "canned-responses", greet.clone())
            .await;
        assert_eq!(status, 403, "{err}");
    }
    for (bad, f) in [
        (
            json!({"shortcut": "Greet", "title": "t", "body": "b"}),
            "shortcut",
        ),
        (
            json!({"shortcut": "a b", "title": "t", "body": "b"}),
            "shortcut",
        ),
        (
            json!({"shortcut": "x".repeat(33), "title": "t", "body": "b"}),
            "shortcut",
        ),
        (
            json!({"shortcut": "", "title": "t", "body": "b"}),
            "shortcut",
        ),
        (
            json!({"shortcut": "ok", "title": " ", "body": "b"}),
            "title",
        ),
        (json!({"shortcut": "ok", "title": "t", "body": ""}), "body"),
        (
            json!({"shortcut": "ok", "title": "t", "body": "y".repeat(4097)}),
            "body",
        ),
        (
            json!({"shortcut": "ok", "title": "t", "body": "b", "language": "français"}),
            "language",
        ),
    ] {
        let (status, err) = w
            .send(&supervisor, Method::POST, "canned-responses", bad)
            .await;
        assert_eq!((status, field(&err)), (422, Some(f)), "{err}");
    }
    assert!(
        w.ids(&w.admin, "canned-responses").await.is_empty(),
        "bad input stored nothing"
    );

    let (status, g) = w
        .send(&supervisor, Method::POST, "canned-responses", greet.clone())
        .await;
    assert_eq!(status, 201, "{g}");
    assert_eq!(
        (g["shortcut"].as_str(), g["language"].as_str()),
        (Some("greet"), Some("fr"))
    );
    let g_id = g["id"].as_str().unwrap().to_owned();
    let (status, err) = w
        .send(&w.admin, Method::POST, "canned-responses", greet.clone())
        .await;
    assert_eq!((status, field(&err)), (409, Some("shortcut")), "{err}");
    let (status, h) = w
        .send(
            &w.admin,
            Method::POST,
            "canned-responses",
            json!({"shortcut": "hours", "title": "Horaires d'ouverture", "body": "De 8h à 18h.\nDu lundi au samedi."}),
        )
        .await;
    assert_eq!(status, 201, "{h}");
    let h_id = h["id"].as_str().unwrap().to_owned();
    let (status, b) = w
        .send(
            &w.admin,
            Method::POST,
            "canned-responses",
            json!({"shortcut": "greet-en", "title": "Greeting (100% English)", "body": "Hello!", "language": "en_US"}),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let b_id = b["id"].as_str().unwrap().to_owned();

    // Everyone reading conversations reads them; q filters by shortcut prefix or title.
    for token in [&agent, &read_only] {
        assert_eq!(
            w.ids(token, "canned-responses").await,
            vec![g_id.clone(), h_id.clone(), b_id.clone()]
        );
    }
    assert_eq!(
        w.ids(&agent, "canned-responses?q=gre").await,
        vec![g_id.clone(), b_id.clone()]
    );
    assert_eq!(
        w.ids(&agent, "canned-responses?q=OUVERTURE").await,
        vec![h_id.clone()]
    );
    assert_eq!(
        w.ids(&agent, "canned-responses?q=100%25").await,
        vec![b_id.clone()]
    );
    assert_eq!(
        w.ids(&agent, "canned-responses?q=ours").await,
        Vec::<String>::new(),
        "shortcut: prefix only"
    );
    assert!(w.ids(&agent, "canned-responses?q=.*").await.is_empty());
    let (status, one) = w.get(&agent, &format!("canned-responses/{h_id}")).await;
    assert_eq!(
        (status, one["title"].as_str()),
        (200, Some("Horaires d'ouverture"))
    );

    // Edits: manage only, duplicates refused, bad input changes nothing.
    let g_path = format!("canned-responses/{g_id}");
    let (status, _) = w
        .send(&agent, Method::PATCH, &g_path, json!({"title": "mine"}))
        .await;
    assert_eq!(status, 403);
    let (status, err) = w
        .send(
            &supervisor,
            Method::PATCH,
            &g_path,
            json!({"shortcut": "hours"}),
        )
        .await;
    assert_eq!((status, field(&err)), (409, Some("shortcut")), "{err}");
    let (status, err) = w
        .send(
            &supervisor,
            Method::PATCH,
            &g_path,
            json!({"shortcut": "OK", "title": "new"}),
        )
        .await;
    assert_eq!((status, field(&err)), (422, Some("shortcut")), "{err}");
    let (_, unchanged) = w.get(&agent, &g_path).await;
    assert_eq!(
        (unchanged["title"].as_str(), unchanged["version"].as_u64()),
        (Some("Salutation"), Some(1))
    );
    let (status, edited) = w
        .send(
            &supervisor,
            Method::PATCH,
            &g_path,
            json!({"shortcut": "hello", "language": null, "version": 1}),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(
        (
            edited["shortcut"].as_str(),
            edited["language"].clone(),
            edited["version"].as_u64()
        ),
        (Some("hello"), Value::Null, Some(2))
    );
    let (status, _) = w
        .send(
            &supervisor,
            Method::PATCH,
            &g_path,
            json!({"title": "x", "version": 1}),
        )
        .await;
    assert_eq!(status, 409, "stale version");
    // The old shortcut is free again.
    let (status, _) = w
        .send(&w.admin, Method::POST, "canned-responses", greet.clone())
        .await;
    assert_eq!(status, 201);

    // Another tenant: 404 for every id, its own list empty.
    let foreign = format!("/api/v1/tenants/{}/canned-responses/{g_id}", w.other_tenant);
    let (status, _) = w.s.get_json(&w.other_admin, &foreign).await;
    assert_eq!(status, 404);
    let (status, _) =
        w.s.get_json(
            &w.other_admin,
            &format!("/api/v1/tenants/{}/{g_path}", w.tenant),
        )
        .await;
    assert_eq!(status, 404);
    let resp =
        w.s.call(&w.other_admin, Method::DELETE, &foreign)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 404);
    let (_, list) =
        w.s.get_json(
            &w.other_admin,
            &format!("/api/v1/tenants/{}/canned-responses", w.other_tenant),
        )
        .await;
    assert_eq!(list["items"], json!([]));

    // Deletes.
    assert_eq!(w.delete(&agent, &g_path).await, 403);
    assert_eq!(w.delete(&supervisor, &g_path).await, 200);
    assert_eq!(w.delete(&supervisor, &g_path).await, 404);
    let (status, _) = w.get(&agent, &g_path).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_published_spec_documents_the_annotation_routes() {
    let s = TestServer::start(Backend::Sqlite).await;
    let spec: Value = s.get("/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/v1/tenants/{tenant_id}/conversations/{conversation_id}/notes",
        "/api/v1/tenants/{tenant_id}/conversations/{conversation_id}/notes/{note_id}",
        "/api/v1/tenants/{tenant_id}/conversations/{conversation_id}/labels",
        "/api/v1/tenants/{tenant_id}/labels",
        "/api/v1/tenants/{tenant_id}/labels/{label_id}",
        "/api/v1/tenants/{tenant_id}/canned-responses",
        "/api/v1/tenants/{tenant_id}/canned-responses/{canned_response_id}",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
}
