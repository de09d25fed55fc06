//! Typed JSON documents (docs/ABI.md, "Bodies and tokens"): an object type
//! (`#[derive(Body)]`, a manifest type of base `object`) checked field by
//! field and encoded into the argument block, so that the guest receives
//! typed values and needs no JSON parser. [`resolve`] checks a module's
//! object types at load (and a field's default against its own rules, as
//! the macros do at compile time); [`validate`] (the `check` module) checks
//! a request's body or a token's claims; [`json_schema`] is what OpenAPI
//! says (the `schema` module).
//!
//! The rules are the parameters' (`validate`'s checks and 400 texts), each
//! error prefixed with the path to the value: `body.items[3].qty: 0 is
//! below the minimum 1`.

mod check;
mod schema;
#[cfg(test)]
mod tests;

pub use check::{validate, validate_claims};
pub use schema::{describe, json_schema};

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde_json::Value;

use crate::manifest::Type as RawType;
use crate::rules::{self, Bounds, Rules};
use crate::types::Ty;

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
    /// That value, encoded as the argument block carries it.
    pub default_block: Option<Vec<u8>>,
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
        let mut field = Field {
            name: f.name.clone(),
            type_name: f.ty.clone(),
            shape,
            list,
            optional: f.optional,
            default: f.default.clone(),
            default_block: None,
        };
        if let Some(d) = &field.default {
            if matches!(field.shape, Shape::Object(_)) {
                return Err(at("an object field takes no default".into()));
            }
            let block =
                check::default_block(&field, d).map_err(|e| at(format!("default breaks its own rules: {e}")))?;
            field.default_block = Some(block);
        }
        fields.push(field);
    }
    stack.pop();
    Ok(Object { name: name.into(), fields, allow_unknown: raw.allow_unknown })
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

/// A keyword in a document: lower-case ASCII letters, digits, `-_.`.
pub fn is_body_keyword(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// A type with its article, as an error says what a value is not.
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
