//! The manifest's shape (docs/ABI.md, "Manifest"): one model of a
//! handler's entry and a named type's, which the SDK's macros write and
//! the host reads (strictly: an unknown field is an error). The checks of
//! what the fields say are `rules`, `path` and the host's loader.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use crate::rules::{Bounds, Literal, RawRules};
use crate::{Kind, Source};

/// A handler's manifest entry (`house_meta.NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handler {
    /// The NAME of its exports.
    pub name: String,
    /// Absent: derived from the name ([`path_from_name`](crate::path_from_name)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `closing` or `stream`.
    pub kind: Kind,
    /// Absent: [`DEFAULT_CONTENT_TYPE`](crate::DEFAULT_CONTENT_TYPE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Absent: [`default_methods`](crate::default_methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// What a closing handler answers ([`check_statuses`](crate::check_statuses)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<u16>>,
    /// In the order the argument block carries them.
    #[serde(default)]
    pub params: Vec<Param>,
}

/// One parameter of a handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Its query name, header name, cookie name or path segment (`body`
    /// for the body).
    pub name: String,
    /// Where the value comes from (absent: the query string or form body).
    #[serde(rename = "in", default, skip_serializing_if = "is_query")]
    pub source: Source,
    /// A built-in type or a named one (absent: `untyped`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    /// Its rules (on top of a named type's).
    #[serde(default, skip_serializing_if = "Rules::is_empty")]
    pub rules: Rules,
    /// The value when the parameter is absent (its JSON: a string, a
    /// number, a boolean or a list of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A cookie the host signed (`Set-Cookie` through
    /// [`SIGNED_COOKIE_HEADER`](crate::SIGNED_COOKIE_HEADER)): a value
    /// whose signature does not verify is absent. Since ABI 1 (additive).
    #[serde(default, skip_serializing_if = "is_false")]
    pub signed: bool,
    /// A token (`"in": "token"`): the cookie it may also come from when
    /// no `Authorization: Bearer` is given. Since ABI 1 (additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_query(s: &Source) -> bool {
    *s == Source::Query
}

/// A named type's manifest entry (`house_type.NAME`): a base type and
/// rules, or (base `object`) a JSON object's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Type {
    /// A built-in type, or [`OBJECT`](crate::body::OBJECT).
    pub base: String,
    /// Its rules.
    #[serde(default, skip_serializing_if = "Rules::is_empty")]
    pub rules: Rules,
    /// An object's fields, in the order the argument block carries them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<Field>>,
    /// An object accepts (and drops) fields it does not declare.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_unknown: bool,
}

/// One field of an object type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Its JSON name.
    pub name: String,
    /// A built-in type or a named one (an object, or a scalar type).
    #[serde(rename = "type")]
    pub ty: String,
    /// A JSON array of values of the type (`items` bounds its length).
    #[serde(default, skip_serializing_if = "is_false")]
    pub list: bool,
    /// It may be absent or null (the guest gets an `Option`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    /// Its rules (on top of a named type's; for a list, each element's,
    /// and `items`).
    #[serde(default, skip_serializing_if = "Rules::is_empty")]
    pub rules: Rules,
    /// Its value when absent, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// The rules as the manifest spells them.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// A text's length in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chars: Option<Bounds>,
    /// A number's bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<NumBounds>,
    /// The values allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// How many values a list has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Bounds>,
}

/// `range`'s bounds: integers or floats, as JSON numbers.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumBounds {
    /// The least allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Number>,
    /// The most allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Number>,
}

impl Rules {
    /// No rule at all.
    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }

    /// The rules in the form `rules::check` checks.
    pub fn to_checked_form(&self) -> RawRules {
        let number = |n: &Option<Number>| n.as_ref().map(|n| Literal::from_json(&Value::Number(n.clone())));
        RawRules {
            chars: self.chars,
            range: self.range.as_ref().map(|r| (number(&r.min), number(&r.max))),
            one_of: self.one_of.as_ref().map(|v| v.iter().map(Literal::from_json).collect()),
            items: self.items,
        }
    }
}
