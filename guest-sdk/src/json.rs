//! Just enough JSON to write a response or an event, without pulling
//! serde_json into every guest (each guest's size is paid per request).
//!
//! ```
//! use house_sdk::json;
//! let body = json::Object::new().str("name", "ada").str("message", "say \"hi\"\n").int("n", 3).build();
//! assert_eq!(body, r#"{"name":"ada","message":"say \"hi\"\n","n":3}"#);
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

    pub fn str(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        push_string(&mut self.buf, value);
        self
    }

    pub fn int(mut self, key: &str, value: i64) -> Object {
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    pub fn bool(mut self, key: &str, value: bool) -> Object {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    /// A value that is already JSON (a [`crate::Json`] argument, say).
    pub fn raw(mut self, key: &str, json: &str) -> Object {
        self.key(key);
        self.buf.push_str(json);
        self
    }

    pub fn build(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}
