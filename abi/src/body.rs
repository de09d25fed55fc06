//! Typed JSON documents (docs/ABI.md, "Bodies and tokens"): an object type
//! (`#[derive(Body)]`, a manifest type of base `object`) checked field by
//! field and encoded into the argument block, so that the guest receives
//! typed values and needs no JSON parser. The host runs [`validate`] on a
//! request's body and on a token's claims; [`resolve`] checks a module's
//! object types at load (and a field's default against its own rules, as
//! the macros do at compile time); [`json_schema`] is what OpenAPI says.
//!
//! The rules are the parameters' (`validate`'s checks and 400 texts), each
//! error prefixed with the path to the value: `body.items[3].qty: 0 is
//! below the minimum 1`.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::{Map, Value, json};

use crate::manifest::Type as RawType;
use crate::rules::{self, Bounds, Rules};
use crate::types::Ty;
use crate::validate::{self, Param};
use crate::{shown, wire};

/// The base of an object type.
pub const OBJECT: &str = "object";

/// How deep object types may nest (a body's root is depth 1): the
/// validator recurses once per level.
pub const MAX_DEPTH: usize = 8;

/// The most fields one object type declares.
pub const MAX_FIELDS: usize = 64;

/// A named type, as [`resolve`] looks it up.
pub enum Named<'a> {
    /// A scalar type (`http_type!`): its base and checked rules.
    Scalar(Ty, Rules),
    /// An object type, as the manifest gives it.
    Object(&'a RawType),
}

/// A checked object type.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Its name (errors about an unknown field name it).
    pub name: String,
    /// Its fields, in the argument block's order.
    pub fields: Vec<Field>,
    /// Undeclared fields are dropped rather than refused.
    pub allow_unknown: bool,
}

/// A checked field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Its JSON name.
    pub name: String,
    /// The type the manifest named.
    pub type_name: String,
    /// What one value is.
    pub shape: Shape,
    /// A list: its length's bounds.
    pub list: Option<Bounds>,
    /// May be absent or null.
    pub optional: bool,
    /// Its value when absent (checked against its rules at load).
    pub default: Option<Value>,
}

/// What one value of a field is.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A built-in scalar type with its rules.
    Scalar(Ty, Rules),
    /// A nested object.
    Object(Box<Object>),
}

/// Checks object type `name` and every type it uses; `lookup` finds the
/// module's named types.
pub fn resolve<'a>(name: &str, lookup: &dyn Fn(&str) -> Option<Named<'a>>) -> Result<Object, String> {
    let mut stack = Vec::new();
    resolve_at(name, lookup, &mut stack)
}

fn resolve_at<'a>(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<Named<'a>>,
    stack: &mut Vec<String>,
) -> Result<Object, String> {
    if stack.iter().any(|s| s == name) {
        return Err(format!("type {name} contains itself ({} -> {name})", stack.join(" -> ")));
    }
    if stack.len() >= MAX_DEPTH {
        return Err(format!("type {name}: objects nest more than {MAX_DEPTH} deep ({})", stack.join(" -> ")));
    }
    let raw = match lookup(name) {
        Some(Named::Object(raw)) => raw,
        Some(Named::Scalar(..)) => return Err(format!("type {name} is not an object type")),
        None => return Err(format!("unknown type {name:?}")),
    };
    let at = |e: String| format!("type {name}: {e}");
    if !raw.rules.is_empty() {
        return Err(at("an object takes no rules (its fields do)".into()));
    }
    let raw_fields = raw.fields.as_ref().ok_or_else(|| at("an object type has fields".into()))?;
    if raw_fields.len() > MAX_FIELDS {
        return Err(at(format!("{} fields, more than {MAX_FIELDS}", raw_fields.len())));
    }
    stack.push(name.into());
    let mut fields: Vec<Field> = Vec::with_capacity(raw_fields.len());
    for f in raw_fields {
        let at = |e: String| format!("type {name}: field {}: {e}", f.name);
        if f.name.is_empty() {
            return Err(format!("type {name}: a field has an empty name"));
        }
        if fields.iter().any(|g| g.name == f.name) {
            return Err(at("declared twice".into()));
        }
        let mut raw_rules = f.rules.to_checked_form();
        let items = raw_rules.items.take();
        let list = match (f.list, items) {
            (true, b) => {
                let b = b.unwrap_or_default();
                if let (Some(min), Some(max)) = (b.min, b.max)
                    && min > max
                {
                    return Err(at(format!("items: min {min} > max {max}")));
                }
                Some(b)
            }
            (false, Some(_)) => return Err(at("rule items applies to a list".into())),
            (false, None) => None,
        };
        let shape = match Ty::parse(&f.ty) {
            Some(ty) => Shape::Scalar(ty, Rules::default()),
            None => match lookup(&f.ty) {
                Some(Named::Scalar(ty, rules)) => Shape::Scalar(ty, rules),
                Some(Named::Object(_)) => Shape::Object(Box::new(resolve_at(&f.ty, lookup, stack)?)),
                None => return Err(at(format!("unknown type {:?}", f.ty))),
            },
        };
        let shape = match shape {
            Shape::Scalar(ty, base) => {
                if ty.is_list() {
                    return Err(at(format!("{} is a parameter type: a list field is \"list\": true", ty.name())));
                }
                if ty == Ty::Untyped {
                    return Err(at("untyped is for query parameters: a field has a type".into()));
                }
                if ty == Ty::Json && raw_rules.chars.is_some() {
                    return Err(at("rule chars does not apply to a json field (the body's size bounds it)".into()));
                }
                let own = rules::check(ty, &raw_rules).map_err(|e| at(e.message))?;
                Shape::Scalar(ty, base.refined_by(own))
            }
            Shape::Object(o) => {
                if raw_rules != rules::RawRules::default() {
                    return Err(at("an object field takes no rules but items".into()));
                }
                Shape::Object(o)
            }
        };
        if f.optional && f.default.is_some() {
            return Err(at("an optional field takes no default (absent is None)".into()));
        }
        let field = Field {
            name: f.name.clone(),
            type_name: f.ty.clone(),
            shape,
            list,
            optional: f.optional,
            default: f.default.clone(),
        };
        if let Some(d) = &field.default {
            if matches!(field.shape, Shape::Object(_)) {
                return Err(at("an object field takes no default".into()));
            }
            let mut path = String::from(f.name.as_str());
            value(&field, d, &mut path, &mut Vec::new())
                .map_err(|e| at(format!("default breaks its own rules: {e}")))?;
        }
        fields.push(field);
    }
    stack.pop();
    Ok(Object { name: name.into(), fields, allow_unknown: raw.allow_unknown })
}

/// Parses `text` as JSON, checks it against `obj` and appends its encoding
/// to `out`; an error names the value by its path from `label` (`body`).
pub fn validate(obj: &Object, label: &str, text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|_| format!("{label}: not valid JSON"))?;
    validate_value(obj, label, &v, out)
}

/// [`validate`] of a parsed document.
pub fn validate_value(obj: &Object, label: &str, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let mut path = String::from(label);
    object(obj, v, &mut path, out, &[])
}

/// [`validate_value`], but the names in `skip` are neither refused as
/// unknown nor passed on: a token's registered claims (`exp`, `iss`, ...),
/// which the host has checked itself.
pub fn validate_claims(obj: &Object, label: &str, v: &Value, skip: &[&str], out: &mut Vec<u8>) -> Result<(), String> {
    let mut path = String::from(label);
    object(obj, v, &mut path, out, skip)
}

fn object(obj: &Object, v: &Value, path: &mut String, out: &mut Vec<u8>, skip: &[&str]) -> Result<(), String> {
    let Value::Object(map) = v else {
        return Err(format!("{path}: {} is not an object", what(v)));
    };
    if !obj.allow_unknown
        && let Some(k) = map.keys().find(|k| !skip.contains(&k.as_str()) && !obj.fields.iter().any(|f| f.name == **k))
    {
        let names: Vec<&str> = obj.fields.iter().map(|f| f.name.as_str()).collect();
        return Err(format!("{path}: {} is not a field of {} (it has {})", shown(k), obj.name, names.join(", ")));
    }
    for f in &obj.fields {
        let len = path.len();
        path.push('.');
        path.push_str(&f.name);
        field(f, map.get(&f.name), path, out)?;
        path.truncate(len);
    }
    Ok(())
}

fn field(f: &Field, v: Option<&Value>, path: &mut String, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        None | Some(Value::Null) if f.optional => {
            wire::push_bool(out, false);
            Ok(())
        }
        Some(v) if f.optional => {
            wire::push_bool(out, true);
            value(f, v, path, out)
        }
        Some(v) => value(f, v, path, out),
        None => match &f.default {
            Some(d) => value(f, d, path, out),
            None => Err(format!("{path}: missing (a required {})", f.describe())),
        },
    }
}

fn value(f: &Field, v: &Value, path: &mut String, out: &mut Vec<u8>) -> Result<(), String> {
    let Some(bounds) = f.list else {
        return one(&f.shape, v, path, out);
    };
    let Value::Array(items) = v else {
        return Err(format!("{path}: {} is not a list", what(v)));
    };
    let n = items.len() as u64;
    if let Some(min) = bounds.min.filter(|&min| n < min) {
        return Err(format!("{path}: {n} items is below the minimum {min}"));
    }
    if let Some(max) = bounds.max.filter(|&max| n > max) {
        return Err(format!("{path}: {n} items is above the maximum {max}"));
    }
    wire::push_u32(out, items.len() as u32);
    for (i, item) in items.iter().enumerate() {
        let len = path.len();
        path.push_str(&format!("[{i}]"));
        one(&f.shape, item, path, out)?;
        path.truncate(len);
    }
    Ok(())
}

fn one(shape: &Shape, v: &Value, path: &mut String, out: &mut Vec<u8>) -> Result<(), String> {
    match shape {
        Shape::Object(o) => object(o, v, path, out, &[]),
        Shape::Scalar(ty, rules) => scalar(*ty, rules, v, path, out),
    }
}

fn scalar(ty: Ty, rules: &Rules, v: &Value, path: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let p = Param { label: path, ty, rules };
    match (ty, v) {
        (Ty::String, Value::String(s)) => {
            validate::check_text(p, s)?;
            wire::push_bytes(out, s.as_bytes());
        }
        (Ty::Keyword, Value::String(s)) => {
            // A document is written by a program: its keywords are taken as
            // they are (not lower-cased), so that the JSON Schema says
            // exactly what is accepted.
            if !is_body_keyword(s) {
                return Err(format!("{path}: {} is not a keyword (a-z, 0-9, '-', '_', '.')", shown(s)));
            }
            validate::check_text(p, s)?;
            wire::push_bytes(out, s.as_bytes());
        }
        (Ty::Integer, Value::Number(n)) => {
            // JSON Schema's integer: 3 and 3.0 both are.
            let i = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|&x| (i64::MIN as f64..-(i64::MIN as f64)).contains(&x) && (x as i64) as f64 == x)
                        .map(|x| x as i64)
                })
                .ok_or_else(|| format!("{path}: {n} is not a 64-bit integer"))?;
            validate::check_int(p, i)?;
            wire::push_i64(out, i);
        }
        (Ty::Float, Value::Number(n)) => {
            let x =
                n.as_f64().filter(|x| x.is_finite()).ok_or_else(|| format!("{path}: {n} is not a finite number"))?;
            validate::check_float(p, x)?;
            wire::push_f64(out, x);
        }
        (Ty::Boolean, Value::Bool(b)) => wire::push_bool(out, *b),
        (Ty::Json, v) => wire::push_bytes(out, v.to_string().as_bytes()),
        (ty, v) => return Err(format!("{path}: {} is not {}", what(v), article(ty))),
    }
    Ok(())
}

/// A keyword in a document: lower-case ASCII letters, digits, `-_.`.
pub fn is_body_keyword(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// A value as an error quotes it.
fn what(v: &Value) -> String {
    match v {
        Value::String(s) => shown(s),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
        other => {
            let t = other.to_string();
            if t.len() > 32 { format!("{}...", &t[..32]) } else { t }
        }
    }
}

fn article(ty: Ty) -> &'static str {
    match ty {
        Ty::String | Ty::Untyped => "a string",
        Ty::Keyword => "a keyword",
        Ty::Integer => "an integer",
        Ty::Float => "a number",
        Ty::Boolean => "a boolean (true or false)",
        _ => "JSON",
    }
}

impl Field {
    /// What a missing field's error calls it: `string`, `list of Item`.
    pub fn describe(&self) -> String {
        match self.list {
            Some(_) => format!("list of {}", self.type_name),
            None => self.type_name.clone(),
        }
    }
}

/// The JSON Schema (2020-12, as OpenAPI 3.1 has it) of exactly what
/// [`validate`] accepts.
pub fn json_schema(obj: &Object) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in &obj.fields {
        let one = match &f.shape {
            Shape::Object(o) => json_schema(o),
            Shape::Scalar(ty, rules) => scalar_schema(*ty, rules),
        };
        let mut s = match f.list {
            Some(b) => {
                let mut s = json!({"type": "array", "items": one});
                if let Some(min) = b.min {
                    s["minItems"] = json!(min);
                }
                if let Some(max) = b.max {
                    s["maxItems"] = json!(max);
                }
                s
            }
            None => one,
        };
        if f.optional {
            s = json!({"anyOf": [s, {"type": "null"}]});
        }
        if let Some(d) = &f.default {
            s["default"] = d.clone();
        }
        if !f.optional && f.default.is_none() {
            required.push(Value::String(f.name.clone()));
        }
        props.insert(f.name.clone(), s);
    }
    let mut s = json!({"type": "object", "title": obj.name, "properties": props});
    if !required.is_empty() {
        s["required"] = Value::Array(required);
    }
    if !obj.allow_unknown {
        s["additionalProperties"] = json!(false);
    }
    s
}

fn scalar_schema(ty: Ty, rules: &Rules) -> Value {
    let mut s = match ty {
        Ty::String | Ty::Untyped => json!({"type": "string"}),
        Ty::Keyword => json!({"type": "string", "pattern": "^[a-z0-9._-]+$"}),
        Ty::Integer => json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}),
        Ty::Float => json!({"type": "number"}),
        Ty::Boolean => json!({"type": "boolean"}),
        _ => json!({}),
    };
    if let Some(b) = rules.chars {
        if let Some(min) = b.min {
            s["minLength"] = json!(min);
        }
        if let Some(max) = b.max {
            s["maxLength"] = json!(max);
        }
    }
    if let Some((min, max)) = rules.int_range {
        if let Some(min) = min {
            s["minimum"] = json!(min);
        }
        if let Some(max) = max {
            s["maximum"] = json!(max);
        }
    }
    if let Some((min, max)) = rules.float_range {
        if let Some(min) = min {
            s["minimum"] = json!(min);
        }
        if let Some(max) = max {
            s["maximum"] = json!(max);
        }
    }
    if !rules.one_of_text.is_empty() {
        s["enum"] = json!(rules.one_of_text);
    }
    if !rules.one_of_int.is_empty() {
        s["enum"] = json!(rules.one_of_int);
    }
    s
}

/// The object as `/_house/guests` and `house check` show it: each field's
/// name, type, list, optional, rules and default.
pub fn describe(obj: &Object) -> Value {
    let fields: Vec<Value> = obj
        .fields
        .iter()
        .map(|f| {
            let mut d = json!({"name": f.name, "type": f.type_name});
            if let Some(b) = f.list {
                d["list"] = json!({"min": b.min, "max": b.max});
            }
            if f.optional {
                d["optional"] = json!(true);
            }
            if let Some(v) = &f.default {
                d["default"] = v.clone();
            }
            match &f.shape {
                Shape::Object(o) => d["fields"] = describe(o)["fields"].take(),
                Shape::Scalar(ty, rules) => {
                    let s = scalar_schema(*ty, rules);
                    let mut rules = Map::new();
                    for k in ["minLength", "maxLength", "minimum", "maximum", "enum"] {
                        if let Some(v) = s.get(k)
                            && !(*ty == Ty::Integer && (k == "minimum" || k == "maximum") && rules_unset(v))
                        {
                            rules.insert(k.to_string(), v.clone());
                        }
                    }
                    if !rules.is_empty() {
                        d["rules"] = Value::Object(rules);
                    }
                }
            }
            d
        })
        .collect();
    json!({"name": obj.name, "allow_unknown": obj.allow_unknown, "fields": fields})
}

// An integer's implied bounds (i64's) are not rules anyone wrote.
fn rules_unset(v: &Value) -> bool {
    v.as_i64().is_some_and(|n| n == i64::MIN || n == i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

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
        assert_eq!(err(r#"{"items": []}"#), "body.note: missing (a required string)");
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
            validate(&o, "body", r#"{"note": "hi", "items": [{"sku": "a", "qty": 1.0}], "code": null}"#, &mut out)
                .is_ok()
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
}
