//! The validator: a parameter's raw values (the text a client sent, or its
//! declared default) checked against its type and rules and encoded into
//! the argument block. The host runs it on every request; at load and at
//! compile time it checks that a default keeps its own rules. An error is
//! the 400's text: the parameter's label, the value and the rule.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::Value;

use crate::rules::Rules;
use crate::types::Ty;
use crate::{shown, validate_keyword, wire};

/// One declared parameter, as the validator needs it.
#[derive(Debug, Clone, Copy)]
pub struct Param<'a> {
    /// How errors name it: `room`, `header user-agent`, `cookie sid`,
    /// `path id`, `body`.
    pub label: &'a str,
    /// Its type.
    pub ty: Ty,
    /// Its checked rules.
    pub rules: &'a Rules,
}

/// Checks `values` (one, or a list's) and appends their encoding to `out`.
pub fn encode(p: Param<'_>, values: &[&str], out: &mut Vec<u8>) -> Result<(), String> {
    let name = p.label;
    if !p.ty.is_list() {
        match values {
            [one] => return encode_scalar(p, p.ty, one, out),
            _ => return Err(format!("{name}: given {} times, expected one value", values.len())),
        }
    }
    let n = values.len() as u64;
    if let Some(b) = p.rules.items {
        if let Some(min) = b.min.filter(|&min| n < min) {
            return Err(format!("{name}: {n} values is below the minimum {min}"));
        }
        if let Some(max) = b.max.filter(|&max| n > max) {
            return Err(format!("{name}: {n} values is above the maximum {max}"));
        }
    }
    wire::push_u32(out, values.len() as u32);
    for v in values {
        encode_scalar(p, p.ty.element(), v, out)?;
    }
    Ok(())
}

/// Checks a declared default against its own parameter's rules.
pub fn check_default(p: Param<'_>, values: &[String]) -> Result<(), String> {
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    encode(p, &values, &mut Vec::new())
}

/// A default as written in a manifest (a JSON value), as the raw strings a
/// client would have sent.
pub fn default_values(ty: Ty, v: &Value) -> Result<Vec<String>, String> {
    let scalar = |v: &Value| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other if ty == Ty::Json => Ok(other.to_string()),
            other => Err(format!("{other} is not a scalar")),
        }
    };
    match (ty.is_list(), v) {
        (true, Value::Array(items)) => items.iter().map(scalar).collect(),
        (true, _) => Err("of a list type must be an array".into()),
        (false, v) => Ok(alloc::vec![scalar(v)?]),
    }
}

/// Reads a boolean as a form or query string writes one.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Some(true),
        "false" | "0" | "off" | "no" => Some(false),
        _ => None,
    }
}

fn encode_scalar(p: Param<'_>, ty: Ty, raw: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let name = p.label;
    match ty {
        Ty::Untyped | Ty::String | Ty::Json => {
            if ty == Ty::Json && serde_json::from_str::<serde::de::IgnoredAny>(raw).is_err() {
                return Err(format!("{name}: not valid JSON"));
            }
            check_chars(p, raw)?;
            check_one_of_text(p, raw)?;
            wire::push_bytes(out, raw.as_bytes());
        }
        Ty::Keyword => {
            let keyword = raw.to_lowercase();
            validate_keyword(&keyword)
                .map_err(|_| format!("{name}: {} is not a keyword (letters, digits, '-', '_', '.')", shown(raw)))?;
            check_chars(p, &keyword)?;
            check_one_of_text(p, &keyword)?;
            wire::push_bytes(out, keyword.as_bytes());
        }
        Ty::Integer => {
            let n: i64 = raw.parse().map_err(|_| format!("{name}: {} is not an integer", shown(raw)))?;
            check_int(p, n)?;
            wire::push_i64(out, n);
        }
        Ty::Float => {
            let x: f64 = raw
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| format!("{name}: {} is not a finite number", shown(raw)))?;
            check_float(p, x)?;
            wire::push_f64(out, x);
        }
        Ty::Boolean => {
            let b = parse_bool(raw)
                .ok_or_else(|| format!("{name}: {} is not a boolean (true/false, 1/0, on/off, yes/no)", shown(raw)))?;
            wire::push_bool(out, b);
        }
        Ty::ListOfKeyword | Ty::ListOfInteger => {
            return Err(format!("{name}: a list inside a list"));
        }
    }
    Ok(())
}

/// An integer's `range` and `one_of`.
pub(crate) fn check_int(p: Param<'_>, n: i64) -> Result<(), String> {
    if let Some((min, max)) = p.rules.int_range {
        bound(p.label, n, min, max)?;
    }
    if !p.rules.one_of_int.is_empty() && !p.rules.one_of_int.contains(&n) {
        let allowed: Vec<String> = p.rules.one_of_int.iter().map(i64::to_string).collect();
        return Err(format!("{}: {n} is not one of {}", p.label, allowed.join(", ")));
    }
    Ok(())
}

/// A float's `range`.
pub(crate) fn check_float(p: Param<'_>, x: f64) -> Result<(), String> {
    match p.rules.float_range {
        Some((min, max)) => bound(p.label, x, min, max),
        None => Ok(()),
    }
}

/// A text's `chars` and `one_of`.
pub(crate) fn check_text(p: Param<'_>, text: &str) -> Result<(), String> {
    check_chars(p, text)?;
    check_one_of_text(p, text)
}

fn check_chars(p: Param<'_>, text: &str) -> Result<(), String> {
    let Some(b) = p.rules.chars else {
        return Ok(());
    };
    // Characters, not bytes: "é" is one.
    let n = text.chars().count() as u64;
    if let Some(min) = b.min.filter(|&min| n < min) {
        return Err(format!("{}: length {n} is below the minimum {min}", p.label));
    }
    if let Some(max) = b.max.filter(|&max| n > max) {
        return Err(format!("{}: length {n} is above the maximum {max}", p.label));
    }
    Ok(())
}

fn check_one_of_text(p: Param<'_>, text: &str) -> Result<(), String> {
    let allowed = &p.rules.one_of_text;
    if allowed.is_empty() || allowed.iter().any(|a| a == text) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    Err(format!("{}: {} is not one of {}", p.label, shown(text), list.join(", ")))
}

fn bound<T: PartialOrd + core::fmt::Display>(name: &str, x: T, min: Option<T>, max: Option<T>) -> Result<(), String> {
    if let Some(min) = min.filter(|min| x < *min) {
        return Err(format!("{name}: {x} is below the minimum {min}"));
    }
    if let Some(max) = max.filter(|max| x > *max) {
        return Err(format!("{name}: {x} is above the maximum {max}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bounds;

    #[test]
    fn encodes_and_refuses() {
        let rules = Rules { chars: Some(Bounds { min: Some(1), max: Some(3) }), ..Rules::default() };
        let p = Param { label: "room", ty: Ty::Keyword, rules: &rules };
        let mut out = Vec::new();
        encode(p, &["AbC"], &mut out).unwrap();
        assert_eq!(out, [3, 0, 0, 0, b'a', b'b', b'c']);
        assert_eq!(encode(p, &["abcd"], &mut out).unwrap_err(), "room: length 4 is above the maximum 3");
        assert_eq!(
            encode(p, &["a b"], &mut out).unwrap_err(),
            "room: \"a b\" is not a keyword (letters, digits, '-', '_', '.')"
        );
        assert_eq!(encode(p, &["a", "b"], &mut out).unwrap_err(), "room: given 2 times, expected one value");
        let ints = Rules { int_range: Some((Some(0), Some(9))), ..Rules::default() };
        let p = Param { label: "n", ty: Ty::Integer, rules: &ints };
        assert_eq!(check_default(p, &["10".into()]).unwrap_err(), "n: 10 is above the maximum 9");
        let json = Param { label: "body", ty: Ty::Json, rules: &Rules::default() };
        assert_eq!(encode(json, &["{"], &mut out).unwrap_err(), "body: not valid JSON");
    }
}
