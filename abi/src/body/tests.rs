//! The body checker's unit tests.
use super::*;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::wire;
use serde_json::json;

fn types(json: &str) -> BTreeMap<String, RawType> {
    serde_json::from_str(json).unwrap()
}

fn resolved(all: &BTreeMap<String, RawType>, name: &str) -> Result<Object, String> {
    resolve(name, &|n| all.get(n).map(Named::Object))
}

const ORDER: &str = r#"{
    "Order": {"base": "object", "fields": [
        {"name": "note", "type": "string", "rules": {"chars": {"min": 1, "max": 5}}},
        {"name": "items", "type": "Line", "list": true, "rules": {"items": {"min": 1, "max": 3}}},
        {"name": "gift", "type": "boolean", "default": false},
        {"name": "code", "type": "keyword", "optional": true}
    ]},
    "Line": {"base": "object", "fields": [
        {"name": "sku", "type": "keyword"},
        {"name": "qty", "type": "integer", "rules": {"range": {"min": 1}}}
    ]}
}"#;

#[test]
fn validates_with_paths() {
    let all = types(ORDER);
    let o = resolved(&all, "Order").unwrap();
    let mut out = Vec::new();
    let ok = r#"{"note": "hi", "items": [{"sku": "a", "qty": 2}]}"#;
    validate(&o, "body", ok, &mut out).unwrap();
    let mut want = Vec::new();
    wire::push_bytes(&mut want, b"hi");
    wire::push_u32(&mut want, 1);
    wire::push_bytes(&mut want, b"a");
    wire::push_i64(&mut want, 2);
    wire::push_bool(&mut want, false);
    wire::push_bool(&mut want, false);
    assert_eq!(out, want);
    let err = |doc: &str| validate(&o, "body", doc, &mut Vec::new()).unwrap_err();
    assert_eq!(
        err(r#"{"note": "hi", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}]}"#),
        "body.items[1].qty: 0 is below the minimum 1"
    );
    assert_eq!(err(r#"{"txt": "hi"}"#), "body: \"txt\" is not a field of Order (it has note, items, gift, code)");
    assert_eq!(err(r#"{"items": [{"sku": "a", "qty": 1}]}"#), "body.note: missing (a required string)");
    assert_eq!(err(r#"{"note": "a", "note": "b", "items": []}"#), "body.note: given twice");
    assert_eq!(err(r#"{"note": "hi", "items": []}"#), "body.items: 0 items is below the minimum 1");
    assert_eq!(err(r#"{"note": 5, "items": []}"#), "body.note: 5 is not a string");
    assert_eq!(err(r#"[1]"#), "body: a list is not an object");
    assert_eq!(err(r#"{"#), "body: not valid JSON");
    assert_eq!(
        err(r#"{"note": "hi", "items": [{"sku": "A", "qty": 1}]}"#),
        "body.items[0].sku: \"A\" is not a keyword (a-z, 0-9, '-', '_', '.')"
    );
    assert_eq!(
        err(r#"{"note": "hi", "items": [{"sku": "a", "qty": 1.5}]}"#),
        "body.items[0].qty: 1.5 is not a 64-bit integer"
    );
    assert!(
        validate(&o, "body", r#"{"note": "hi", "items": [{"sku": "a", "qty": 1.0}], "code": null}"#, &mut out).is_ok()
    );
}

#[test]
fn refuses_bad_types_at_load() {
    let bad = |json: &str| resolved(&types(json), "T").unwrap_err();
    assert_eq!(
        bad(r#"{"T": {"base": "object", "fields": [{"name": "a", "type": "T", "optional": true}]}}"#),
        "type T contains itself (T -> T)"
    );
    assert_eq!(
        bad(
            r#"{"T": {"base": "object", "fields": [{"name": "a", "type": "integer", "default": 0, "rules": {"range": {"min": 1}}}]}}"#
        ),
        "type T: field a: default breaks its own rules: a: 0 is below the minimum 1"
    );
    assert_eq!(
        bad(
            r#"{"T": {"base": "object", "fields": [{"name": "a", "type": "string", "rules": {"items": {"max": 1}}}]}}"#
        ),
        "type T: field a: rule items applies to a list"
    );
    assert_eq!(
        bad(r#"{"T": {"base": "object", "fields": [{"name": "a", "type": "nope"}]}}"#),
        "type T: field a: unknown type \"nope\""
    );
}

#[test]
fn schema_says_what_is_required() {
    let all = types(ORDER);
    let s = json_schema(&resolved(&all, "Order").unwrap());
    assert_eq!(s["required"], json!(["note", "items"]));
    assert_eq!(s["additionalProperties"], json!(false));
    assert_eq!(s["properties"]["items"]["maxItems"], json!(3));
    assert_eq!(s["properties"]["items"]["items"]["properties"]["qty"]["minimum"], json!(1));
}
