//! The checker: a document is checked and encoded while it is parsed
//! (serde's `DeserializeSeed` driven by serde_json's reader), with no tree
//! built. Fields may come in any order: each object's values are encoded
//! into a scratch buffer and then copied out in field order, defaults and
//! absent optionals filled in. The path to a value is kept as a stack of
//! names and indices and made into text only for an error.
//!
//! Measured (`make bench`, scenario 18): building a `serde_json::Value`
//! first and walking it cost more than the parse itself; this way a
//! document costs little more than its parse.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{Field, Object, Shape, article, is_body_keyword};
use crate::rules::{Bounds, Rules};
use crate::types::Ty;
use crate::validate::{self, Param};
use crate::{shown, wire};

/// Parses `text` as JSON, checks it against `obj` and appends its encoding
/// to `out`; an error names the value by its path from `label` (`body`),
/// and leaves `out` as it was.
pub fn validate(obj: &Object, label: &str, text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    run(Node::object(obj), label, text, &[], out)
}

/// [`validate`], but the names in `skip` are neither refused as unknown
/// nor passed on (unless declared): a token's registered claims (`exp`,
/// `iss`, ...), which the host has checked itself.
pub fn validate_claims(obj: &Object, label: &str, text: &str, skip: &[&str], out: &mut Vec<u8>) -> Result<(), String> {
    run(Node::object(obj), label, text, skip, out)
}

/// A field's default, checked against its rules and encoded (at load).
pub(super) fn default_block(field: &Field, v: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    run(Node { optional: false, ..field.node() }, &field.name, &v.to_string(), &[], &mut out)?;
    Ok(out)
}

fn run(node: Node<'_>, label: &str, text: &str, skip: &[&str], out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    let mut st = State { label, path: Vec::new(), error: None, skip };
    let mut de = serde_json::Deserializer::from_str(text);
    let done = Seed { node, st: &mut st, out }.deserialize(&mut de).and_then(|()| de.end());
    done.map_err(|_| {
        out.truncate(start);
        st.error.take().unwrap_or_else(|| format!("{label}: not valid JSON"))
    })
}

/// One step of the path to a value.
enum Seg<'s> {
    Field(&'s str),
    Index(u64),
}

struct State<'s> {
    label: &'s str,
    path: Vec<Seg<'s>>,
    /// The refusal, in the host's words (serde's error only stops parsing).
    error: Option<String>,
    /// Names the root object skips.
    skip: &'s [&'s str],
}

impl State<'_> {
    fn fail<E: de::Error>(&mut self, why: fmt::Arguments<'_>) -> E {
        use fmt::Write as _;
        // One string, written once: a flood of refusals pays little for
        // its texts.
        let mut text = String::with_capacity(96);
        text.push_str(self.label);
        for seg in &self.path {
            let _ = match seg {
                Seg::Field(name) => write!(text, ".{name}"),
                Seg::Index(i) => write!(text, "[{i}]"),
            };
        }
        let _ = write!(text, ": {why}");
        self.error = Some(text);
        E::custom("refused")
    }

    /// A rule's refusal from `validate`, which was given an empty label.
    fn refuse<E: de::Error>(&mut self, e: String) -> E {
        self.fail(format_args!("{}", e.trim_start_matches(": ")))
    }
}

/// One value of a type.
#[derive(Clone, Copy)]
enum One<'s> {
    Object(&'s Object),
    Scalar(Ty, &'s Rules),
}

/// What is expected at a place of the document.
#[derive(Clone, Copy)]
struct Node<'s> {
    one: One<'s>,
    list: Option<Bounds>,
    optional: bool,
}

impl<'s> Node<'s> {
    fn object(obj: &'s Object) -> Node<'s> {
        Node { one: One::Object(obj), list: None, optional: false }
    }
}

impl Field {
    fn node(&self) -> Node<'_> {
        let one = match &self.shape {
            Shape::Object(o) => One::Object(o),
            Shape::Scalar(ty, rules) => One::Scalar(*ty, rules),
        };
        Node { one, list: self.list, optional: self.optional }
    }
}

struct Seed<'a, 's> {
    node: Node<'s>,
    st: &'a mut State<'s>,
    out: &'a mut Vec<u8>,
}

/// A scalar as the parser gives it.
#[derive(Clone, Copy)]
enum Got<'v> {
    Str(&'v str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// A number as `serde_json::Value` prints it (the errors quote it so).
fn float_text(x: f64) -> String {
    serde_json::Number::from_f64(x).map_or_else(|| "NaN".into(), |n| n.to_string())
}

impl Got<'_> {
    fn what(self) -> String {
        match self {
            Got::Str(s) => shown(s),
            Got::I64(n) => n.to_string(),
            Got::U64(n) => n.to_string(),
            Got::F64(x) => float_text(x),
            Got::Bool(b) => b.to_string(),
        }
    }

    /// As JSON text, for a `json` field.
    fn json(self) -> String {
        match self {
            Got::Str(s) => Value::String(s.into()).to_string(),
            other => other.what(),
        }
    }
}

impl<'s> Seed<'_, 's> {
    /// The value is there: an optional field's presence byte.
    fn present(&mut self) {
        if self.node.optional {
            wire::push_bool(self.out, true);
        }
    }

    /// `what` is not what this node takes.
    fn wrong<E: de::Error>(self, what: &str) -> E {
        match (self.node.list, self.node.one) {
            (Some(_), _) => self.st.fail(format_args!("{what} is not a list")),
            (None, One::Object(_)) => self.st.fail(format_args!("{what} is not an object")),
            (None, One::Scalar(ty, _)) => self.st.fail(format_args!("{what} is not {}", article(ty))),
        }
    }

    fn scalar<E: de::Error>(mut self, got: Got<'_>) -> Result<(), E> {
        let (ty, rules) = match (self.node.list, self.node.one) {
            (None, One::Scalar(ty, rules)) => (ty, rules),
            _ => return Err(self.wrong(&got.what())),
        };
        self.present();
        // Rules refuse in the validator's words, under an empty label; the
        // path is made only if one does.
        let p = Param { label: "", ty, rules };
        let out = &mut *self.out;
        match (ty, got) {
            (Ty::String, Got::Str(s)) => {
                validate::check_text(p, s).map_err(|e| self.st.refuse(e))?;
                wire::push_bytes(out, s.as_bytes());
            }
            (Ty::Keyword, Got::Str(s)) => {
                // A document is written by a program: its keywords are
                // taken as they are (not lower-cased), so that the JSON
                // Schema says exactly what is accepted.
                if !is_body_keyword(s) {
                    return Err(self.st.fail(format_args!("{} is not a keyword (a-z, 0-9, '-', '_', '.')", shown(s))));
                }
                validate::check_text(p, s).map_err(|e| self.st.refuse(e))?;
                wire::push_bytes(out, s.as_bytes());
            }
            (Ty::Json, got) => wire::push_bytes(out, got.json().as_bytes()),
            (Ty::Integer, Got::I64(_) | Got::U64(_) | Got::F64(_)) => {
                // JSON Schema's integer: 3 and 3.0 both are.
                let n = match got {
                    Got::I64(n) => Some(n),
                    Got::U64(n) => i64::try_from(n).ok(),
                    Got::F64(x) => Some(x as i64)
                        .filter(|_| (i64::MIN as f64..-(i64::MIN as f64)).contains(&x) && (x as i64) as f64 == x),
                    _ => None,
                };
                let n = n.ok_or_else(|| self.st.fail(format_args!("{} is not a 64-bit integer", got.what())))?;
                validate::check_int(p, n).map_err(|e| self.st.refuse(e))?;
                wire::push_i64(out, n);
            }
            (Ty::Float, Got::I64(_) | Got::U64(_) | Got::F64(_)) => {
                let x = match got {
                    Got::I64(n) => n as f64,
                    Got::U64(n) => n as f64,
                    Got::F64(x) => x,
                    _ => f64::NAN,
                };
                if !x.is_finite() {
                    return Err(self.st.fail(format_args!("{} is not a finite number", got.what())));
                }
                validate::check_float(p, x).map_err(|e| self.st.refuse(e))?;
                wire::push_f64(out, x);
            }
            (Ty::Boolean, Got::Bool(b)) => wire::push_bool(out, b),
            (ty, got) => return Err(self.st.fail(format_args!("{} is not {}", got.what(), article(ty)))),
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.node.optional {
            wire::push_bool(self.out, false);
            return Ok(());
        }
        if let (None, One::Scalar(Ty::Json, _)) = (self.node.list, self.node.one) {
            wire::push_bytes(self.out, b"null");
            return Ok(());
        }
        Err(self.wrong("null"))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.scalar(Got::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.scalar(Got::I64(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.scalar(Got::U64(n))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<(), E> {
        self.scalar(Got::F64(x))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.scalar(Got::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let Some(bounds) = self.node.list else {
            if let One::Scalar(Ty::Json, _) = self.node.one {
                self.present();
                let v = Value::deserialize(SeqAccessDeserializer::new(seq))?;
                wire::push_bytes(self.out, v.to_string().as_bytes());
                return Ok(());
            }
            return Err(self.wrong("a list"));
        };
        self.present();
        let at = self.out.len();
        wire::push_u32(self.out, 0);
        let element = Node { list: None, optional: false, ..self.node };
        let mut n: u64 = 0;
        loop {
            if bounds.max.is_some_and(|max| n >= max) {
                // Past the maximum: the rest is counted, not checked, so
                // that the refusal gives the list's length.
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                break;
            }
            self.st.path.push(Seg::Index(n));
            let more = seq.next_element_seed(Seed { node: element, st: &mut *self.st, out: &mut *self.out })?;
            self.st.path.pop();
            if more.is_none() {
                break;
            }
            n += 1;
        }
        if let Some(min) = bounds.min.filter(|&min| n < min) {
            return Err(self.st.fail(format_args!("{n} items is below the minimum {min}")));
        }
        if let Some(max) = bounds.max.filter(|&max| n > max) {
            return Err(self.st.fail(format_args!("{n} items is above the maximum {max}")));
        }
        let count = u32::try_from(n).map_err(|_| self.st.fail(format_args!("{n} items is too many")))?;
        self.out[at..at + 4].copy_from_slice(&count.to_le_bytes());
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        match (self.node.list, self.node.one) {
            (None, One::Object(obj)) => {
                self.present();
                object(obj, map, self.st, self.out)
            }
            (None, One::Scalar(Ty::Json, _)) => {
                self.present();
                let v = Value::deserialize(MapAccessDeserializer::new(map))?;
                wire::push_bytes(self.out, v.to_string().as_bytes());
                Ok(())
            }
            _ => Err(self.wrong("an object")),
        }
    }
}

// `seen` is a bitmask of the fields.
const _: () = assert!(super::MAX_FIELDS <= 64);

/// An object's fields, in any order, out in field order.
fn object<'de, 's, A: MapAccess<'de>>(
    obj: &'s Object,
    mut map: A,
    st: &mut State<'s>,
    out: &mut Vec<u8>,
) -> Result<(), A::Error> {
    let root = st.path.is_empty();
    // Where each field's encoding is in `scratch`: on the stack (at most
    // MAX_FIELDS), one allocation fewer per object; `seen` says which.
    let mut spans = [(0u32, 0u32); super::MAX_FIELDS];
    let mut seen: u64 = 0;
    let mut scratch = Vec::with_capacity(128);
    while let Some(key) = map.next_key_seed(Key)? {
        match obj.fields.iter().position(|f| f.name == *key) {
            Some(i) => {
                let field = &obj.fields[i];
                st.path.push(Seg::Field(&field.name));
                if seen & (1 << i) != 0 {
                    return Err(st.fail(format_args!("given twice")));
                }
                let start = scratch.len();
                map.next_value_seed(Seed { node: field.node(), st: &mut *st, out: &mut scratch })?;
                st.path.pop();
                // A body is at most --max-body-bytes: offsets fit a u32.
                spans[i] = (start as u32, scratch.len() as u32);
                seen |= 1 << i;
            }
            None if obj.allow_unknown || (root && st.skip.contains(&&*key)) => {
                map.next_value::<IgnoredAny>()?;
            }
            None => {
                let names: Vec<&str> = obj.fields.iter().map(|f| f.name.as_str()).collect();
                let why = format_args!("{} is not a field of {} (it has {})", shown(&key), obj.name, names.join(", "));
                return Err(st.fail(why));
            }
        }
    }
    for (i, (field, (a, b))) in obj.fields.iter().zip(spans).enumerate() {
        let span = (seen & (1 << i) != 0).then_some((a as usize, b as usize));
        match (span, &field.default_block) {
            (Some((a, b)), _) => out.extend_from_slice(&scratch[a..b]),
            (None, _) if field.optional => wire::push_bool(out, false),
            (None, Some(block)) => out.extend_from_slice(block),
            (None, None) => {
                st.path.push(Seg::Field(&field.name));
                return Err(st.fail(format_args!("missing (a required {})", field.describe())));
            }
        }
    }
    Ok(())
}

/// An object's key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(Key)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.into()))
    }
}
