//! Just enough JSON to write a response or an event, without pulling
//! serde_json into every guest (each guest's size is paid per request).
//!
//! ```
//! use house_sdk::json;
//! let body = json::Object::new().str("name", "ada").str("message", "say \"hi\"\n").int("n", 3).build();
//! assert_eq!(body, r#"{"name":"ada","message":"say \"hi\"\n","n":3}"#);
//!
//! // Numbers, null, arrays and objects inside objects:
//! let inner = json::Object::new().bool("ok", true).null("why");
//! let body = json::Object::new().float("x", 0.5).strs("tags", &["a", "b"]).ints("ns", &[1, 2]).object("inner", inner).build();
//! assert_eq!(body, r#"{"x":0.5,"tags":["a","b"],"ns":[1,2],"inner":{"ok":true,"why":null}}"#);
//! ```

use alloc::string::String;
use core::fmt::Write;

/// `s` as a JSON string literal, quoted and escaped.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object, built field by field.
#[derive(Debug, Default)]
pub struct Object {
    buf: String,
}

impl Object {
    /// An empty object: `{}` once built.
    pub fn new() -> Object {
        Object { buf: String::from("{") }
    }

    fn key(&mut self, key: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        push_string(&mut self.buf, key);
        self.buf.push(':');
    }

    /// `"key": "value"`, escaped.
    pub fn str(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        push_string(&mut self.buf, value);
        self
    }

    /// `"key": 42`.
    pub fn int(mut self, key: &str, value: i64) -> Object {
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    /// `"key": true`.
    pub fn bool(mut self, key: &str, value: bool) -> Object {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    /// `"key": 0.5`; a value JSON cannot hold (NaN, infinite) is `null`.
    pub fn float(mut self, key: &str, value: f64) -> Object {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.buf, "{value}");
        } else {
            self.buf.push_str("null");
        }
        self
    }

    /// `"key": null`.
    pub fn null(mut self, key: &str) -> Object {
        self.key(key);
        self.buf.push_str("null");
        self
    }

    /// `"key": ["a", "b"]`.
    pub fn strs(mut self, key: &str, values: &[&str]) -> Object {
        self.key(key);
        self.buf.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            push_string(&mut self.buf, v);
        }
        self.buf.push(']');
        self
    }

    /// `"key": [1, 2]`.
    pub fn ints(mut self, key: &str, values: &[i64]) -> Object {
        self.key(key);
        self.buf.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            let _ = write!(self.buf, "{v}");
        }
        self.buf.push(']');
        self
    }

    /// `"key": {...}`: another object, nested.
    pub fn object(self, key: &str, value: Object) -> Object {
        self.raw(key, &value.build())
    }

    /// A value that is already JSON (a [`crate::Json`] argument, say).
    pub fn raw(mut self, key: &str, json: &str) -> Object {
        self.key(key);
        self.buf.push_str(json);
        self
    }

    /// The object's text.
    pub fn build(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}
