//! What OpenAPI, `house check` and `/_house/guests` say of an object type:
//! its JSON Schema (exactly what the checker accepts) and a description of
//! its fields.

use alloc::string::ToString;
use alloc::vec::Vec;

use serde_json::{Map, Value, json};

use super::{Object, Shape};
use crate::rules::Rules;
use crate::types::Ty;

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
