//! Meta's Cloud API specification (`business-messaging-api_v23.0.yaml`, MIT) as a JSON
//! Schema validator for request and response bodies and webhook payloads.
//!
//! The file is Meta's text (MIT, licence beside it), vendored in `imix-whatsapp/tests/meta-spec/`
//! so that a clone anywhere runs the checks; `IMIX_META_SPEC` names another copy (a newer
//! version, say). A missing or unreadable file fails the tests.
//!
//! The published file was merged from several specifications and has a few defects that
//! make valid Graph API traffic fail plain JSON Schema validation. They are corrected
//! here, each on its own, and everything else is used exactly as published:
//!
//! 1. `allOf` inheritance: `TextMessage` and its siblings are `allOf: [BaseMessageProperties,
//!    {additionalProperties: false, ...}]`. In JSON Schema `additionalProperties` does not see
//!    the sibling's properties, so `messaging_product`, `to`, ... would be "additional".
//!    The inherited property names are added to the restricted member.
//! 2. The button `index` pattern `^[2-6, 11-14]$` is a malformed character class that rejects
//!    `"0"`; Meta documents indexes 0 to 9: `^[0-9]$`.
//! 3. The webhook schemas were renamed with `_1`/`_2` suffixes in the merge, but their
//!    references still point at the outbound names (`IncomingMessage` → `TextMessage`,
//!    `BaseMessageProperties`, `ContactObject`, `ErrorObject`). They are pointed at the
//!    inbound schemas again.
//! 4. `ContextObject` requires `referred_product`, which Meta only sends for product
//!    enquiries; a plain reply has `from` and `id`.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

static SPEC: OnceLock<Option<Value>> = OnceLock::new();

/// The file's name in Meta's public `openapi` repository (facebook/openapi on GitHub).
const SPEC_FILE: &str = "business-messaging-api_v23.0.yaml";

fn spec_path() -> PathBuf {
    if let Ok(p) = std::env::var("IMIX_META_SPEC") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/meta-spec")
        .join(SPEC_FILE)
}

/// Whether Meta's spec could be read (it is vendored, so a missing file fails the tests).
pub fn available() -> bool {
    loaded().is_some()
}

fn loaded() -> Option<&'static Value> {
    SPEC.get_or_init(|| {
        let path = spec_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => panic!(
                "Meta's Cloud API spec is not readable at {} ({e}); it is vendored in \
                 imix-whatsapp/tests/meta-spec/ ({SPEC_FILE}, v23.0, from Meta's public \
                 `openapi` repository), or set IMIX_META_SPEC to a copy",
                path.display()
            ),
        };
        let mut spec: Value = serde_norway::from_str(&text).expect("the spec is valid YAML");
        patch(&mut spec);
        Some(spec)
    })
    .as_ref()
}

/// The patched specification as JSON (`Null` when it is not [`available`]).
pub fn spec() -> &'static Value {
    static MISSING: Value = Value::Null;
    loaded().unwrap_or(&MISSING)
}

fn schemas_mut(spec: &mut Value) -> &mut Map<String, Value> {
    spec["components"]["schemas"]
        .as_object_mut()
        .expect("components.schemas")
}

fn patch(spec: &mut Value) {
    let schemas = schemas_mut(spec);

    // 3. Point the inbound (webhook) schemas at their own definitions.
    let inbound: &[(&str, &str)] = &[
        ("TextMessage", "TextMessage_2"),
        ("ReactionMessage", "ReactionMessage_1"),
        ("AudioMessage", "AudioMessage_1"),
        ("DocumentMessage", "DocumentMessage_1"),
        ("ImageMessage", "ImageMessage_1"),
        ("StickerMessage", "StickerMessage_1"),
        ("VideoMessage", "VideoMessage_1"),
        ("LocationMessage", "LocationMessage_1"),
    ];
    let incoming = schemas.get_mut("IncomingMessage").expect("IncomingMessage");
    for variant in incoming["oneOf"].as_array_mut().expect("oneOf").iter_mut() {
        let r = variant["$ref"].as_str().unwrap_or_default().to_owned();
        for (from, to) in inbound {
            if r == format!("#/components/schemas/{from}") {
                variant["$ref"] = json!(format!("#/components/schemas/{to}"));
            }
        }
    }
    let inbound_names: Vec<&str> = inbound
        .iter()
        .map(|(_, to)| *to)
        .chain([
            "ContactSharingMessage",
            "UnsupportedMessage",
            "ButtonMessage",
            "InteractiveMessageReply",
            "OrderMessage",
        ])
        .collect();
    for name in inbound_names {
        let schema = schemas.get_mut(name).expect("inbound schema");
        rewrite_refs(
            schema,
            &[
                ("BaseMessageProperties", "BaseMessageProperties_1"),
                ("ContactObject", "ContactObject_1"),
                ("ErrorObject", "ErrorObject_2"),
            ],
        );
    }

    // 4. `referred_product` is optional.
    if let Some(required) = schemas["ContextObject"]["required"].as_array_mut() {
        required.retain(|r| r != "referred_product");
    }

    // 2. Button index 0-9.
    fix_patterns(spec);

    // 1. allOf inheritance with additionalProperties: false.
    let snapshot = spec["components"]["schemas"].clone();
    let schemas = schemas_mut(spec);
    for schema in schemas.values_mut() {
        inherit_properties(schema, &snapshot);
    }
}

fn rewrite_refs(value: &mut Value, renames: &[(&str, &str)]) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                for (from, to) in renames {
                    if *r == format!("#/components/schemas/{from}") {
                        *r = format!("#/components/schemas/{to}");
                    }
                }
            }
            for v in map.values_mut() {
                rewrite_refs(v, renames);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, renames)),
        _ => {}
    }
}

fn fix_patterns(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("pattern").and_then(Value::as_str) == Some("^[2-6, 11-14]$") {
                map.insert("pattern".into(), json!("^[0-9]$"));
            }
            map.values_mut().for_each(fix_patterns);
        }
        Value::Array(items) => items.iter_mut().for_each(fix_patterns),
        _ => {}
    }
}

fn property_names(schema: &Value, all: &Value) -> Vec<String> {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => &all[r.trim_start_matches("#/components/schemas/")],
        None => schema,
    };
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn inherit_properties(value: &mut Value, all: &Value) {
    let Value::Object(map) = value else {
        if let Value::Array(items) = value {
            items.iter_mut().for_each(|v| inherit_properties(v, all));
        }
        return;
    };
    if let Some(Value::Array(members)) = map.get("allOf").cloned() {
        let names: Vec<Vec<String>> = members.iter().map(|m| property_names(m, all)).collect();
        if let Some(Value::Array(members_mut)) = map.get_mut("allOf") {
            for (i, member) in members_mut.iter_mut().enumerate() {
                if member.get("additionalProperties") == Some(&Value::Bool(false)) {
                    let props = member
                        .as_object_mut()
                        .expect("object")
                        .entry("properties")
                        .or_insert_with(|| json!({}));
                    for (j, others) in names.iter().enumerate() {
                        if i != j {
                            for name in others {
                                props
                                    .as_object_mut()
                                    .expect("properties object")
                                    .entry(name.clone())
                                    .or_insert(json!(true));
                            }
                        }
                    }
                }
            }
        }
    }
    map.values_mut().for_each(|v| inherit_properties(v, all));
}

/// Validates `instance` against `schema` (a fragment of the spec that may use
/// `#/components/...` references). Returns the error messages.
pub fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let mut root = match schema {
        Value::Object(map) => map.clone(),
        other => {
            let mut m = Map::new();
            m.insert("allOf".into(), json!([other]));
            m
        }
    };
    root.insert("components".into(), spec()["components"].clone());
    let validator = jsonschema::draft202012::new(&Value::Object(root))
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The named component schema.
pub fn component(name: &str) -> Value {
    if !available() {
        return Value::Null;
    }
    assert!(
        spec()["components"]["schemas"].get(name).is_some(),
        "no schema {name} in the spec"
    );
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The operation at `path` / `method` (lowercase) of the spec.
pub fn operation(path: &str, method: &str) -> &'static Value {
    let op = &spec()["paths"][path][method];
    assert!(op.is_object(), "no operation {method} {path} in the spec");
    op
}

/// The JSON request body schema of an operation.
pub fn request_schema(path: &str, method: &str) -> Value {
    if !available() {
        return Value::Null;
    }
    let schema = &operation(path, method)["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "no JSON request body for {method} {path}"
    );
    schema.clone()
}

/// The JSON response schema of an operation for a status; errors fall back to
/// `GraphAPIError`, the spec's error shape.
pub fn response_schema(path: &str, method: &str, status: u16) -> Value {
    if !available() {
        return Value::Null;
    }
    let schema = &operation(path, method)["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    if schema.is_object() {
        schema.clone()
    } else if status >= 400 {
        component("GraphAPIError")
    } else {
        panic!("no JSON {status} response for {method} {path} in the spec")
    }
}

/// Panics when `instance` conforms to `schema` although it should not.
#[track_caller]
pub fn assert_rejects(schema: &Value, instance: &Value) {
    if !available() {
        return;
    }
    assert!(
        !errors(schema, instance).is_empty(),
        "Meta's spec accepts what it should refuse: {instance:#}"
    );
}

/// Panics with every error when `instance` does not conform.
#[track_caller]
pub fn assert_conforms(what: &str, schema: &Value, instance: &Value) {
    if !available() {
        return;
    }
    let errors = errors(schema, instance);
    assert!(
        errors.is_empty(),
        "{what} does not conform to Meta's spec:\n  {}\ninstance: {instance:#}",
        errors.join("\n  ")
    );
}
