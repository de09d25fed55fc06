//! The validator: turns raw request parameters into the typed argument block
//! a handler receives (docs/ABI.md, "Arguments"), enforcing every declared
//! type and rule on the way. A failure is a 400 naming the parameter and the
//! rule, and no guest is instantiated for it.

use super::manifest::{ParamSpec, Source, Ty};
use crate::http::params::Params;
use crate::http::{ErrorKind, HttpError};

/// Where a request's declared inputs come from. Only what a handler
/// declares is looked at, and only that reaches it.
#[derive(Default)]
pub struct Inputs<'a> {
    /// The query string, then a form body.
    pub params: Params,
    /// The path's `{name}` segments.
    pub path: Vec<(&'a str, String)>,
    /// Header fields, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// Cookies of the `Cookie` header, in order.
    pub cookies: Vec<(String, String)>,
    /// The body, when a parameter takes it (UTF-8, JSON checked below).
    pub body: Option<&'a str>,
}

impl Inputs<'_> {
    fn values<'s>(&'s self, spec: &'s ParamSpec, out: &mut Vec<&'s str>) {
        let pick = |list: &'s [(String, String)]| list.iter().filter(|(n, _)| *n == spec.name).map(|(_, v)| v.as_str());
        match spec.source {
            Source::Query => out.extend(self.params.all(&spec.name)),
            Source::Path => out.extend(self.path.iter().filter(|(n, _)| *n == spec.name).map(|(_, v)| v.as_str())),
            Source::Header => out.extend(pick(&self.headers)),
            Source::Cookie => out.extend(pick(&self.cookies)),
            Source::Body => out.extend(self.body.filter(|b| !b.is_empty())),
        }
    }
}

/// A query or form parameter the handler does not declare: a 400, so
/// that a misspelt optional parameter is not silently its default.
pub fn check_known(specs: &[ParamSpec], params: &Params) -> Result<(), HttpError> {
    let declared = |name: &str| specs.iter().any(|s| s.source == Source::Query && s.name == name);
    let Some(unknown) = params.names().find(|n| !declared(n)) else { return Ok(()) };
    let known: Vec<&str> = specs.iter().filter(|s| s.source == Source::Query).map(|s| s.name.as_str()).collect();
    let takes = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
    Err(HttpError::new(
        ErrorKind::BadParameter,
        format!("{}: not a parameter of this handler (it takes {takes})", shown(unknown)),
    ))
}

/// Validates the declared inputs against `specs` and encodes the arguments.
pub fn encode_args(specs: &[ParamSpec], inputs: &Inputs<'_>) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::with_capacity(64);
    let mut values: Vec<&str> = Vec::new();
    for spec in specs {
        values.clear();
        inputs.values(spec, &mut values);
        if values.is_empty() {
            match &spec.default {
                Some(default) => values.extend(default.iter().map(String::as_str)),
                // An absent list is an empty one (a form sends nothing for
                // an empty multi-select); `items(min = 1)` requires one.
                None if spec.ty.is_list() => {}
                None => {
                    let what = match spec.source {
                        Source::Body => "a required JSON body".to_owned(),
                        other => format!("a required {} {}", spec.type_name, noun(other)),
                    };
                    return Err(HttpError::new(ErrorKind::BadParameter, format!("{}: missing ({what})", spec.label)));
                }
            }
        }
        encode_param(spec, &values, &mut out).map_err(|e| HttpError::new(ErrorKind::BadParameter, e))?;
    }
    Ok(out)
}

/// What a missing input is called in its 400.
fn noun(source: Source) -> &'static str {
    match source {
        Source::Query | Source::Path => "parameter",
        Source::Header => "header",
        Source::Cookie => "cookie",
        Source::Body => "body",
    }
}

/// Checks a declared default against its own parameter's rules (at load).
pub fn check_default(spec: &ParamSpec, values: &[String]) -> Result<(), String> {
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    encode_param(spec, &values, &mut Vec::new())
}

fn encode_param(spec: &ParamSpec, values: &[&str], out: &mut Vec<u8>) -> Result<(), String> {
    let name = &spec.label;
    if !spec.ty.is_list() {
        if values.len() > 1 {
            return Err(format!("{name}: given {} times, expected one value", values.len()));
        }
        return encode_scalar(spec, spec.ty, values[0], out);
    }
    let n = values.len() as u64;
    if let Some(b) = spec.rules.items {
        if let Some(min) = b.min.filter(|&min| n < min) {
            return Err(format!("{name}: {n} values is below the minimum {min}"));
        }
        if let Some(max) = b.max.filter(|&max| n > max) {
            return Err(format!("{name}: {n} values is above the maximum {max}"));
        }
    }
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        encode_scalar(spec, spec.ty.element(), v, out)?;
    }
    Ok(())
}

fn encode_scalar(spec: &ParamSpec, ty: Ty, raw: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let name = &spec.label;
    let rules = &spec.rules;
    match ty {
        Ty::Untyped | Ty::String | Ty::Json => {
            if ty == Ty::Json && serde_json::from_str::<serde::de::IgnoredAny>(raw).is_err() {
                return Err(format!("{name}: not valid JSON"));
            }
            check_chars(spec, raw)?;
            check_one_of_text(spec, raw)?;
            push_text(out, raw);
        }
        Ty::Keyword => {
            let keyword = raw.to_lowercase();
            let ok =
                !keyword.is_empty() && keyword.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(format!("{name}: {} is not a keyword (letters, digits, '-', '_', '.')", shown(raw)));
            }
            check_chars(spec, &keyword)?;
            check_one_of_text(spec, &keyword)?;
            push_text(out, &keyword);
        }
        Ty::Integer => {
            let n: i64 = raw.parse().map_err(|_| format!("{name}: {} is not an integer", shown(raw)))?;
            if let Some((min, max)) = rules.int_range {
                bound(name, n, min, max)?;
            }
            if !rules.one_of_int.is_empty() && !rules.one_of_int.contains(&n) {
                let allowed: Vec<String> = rules.one_of_int.iter().map(i64::to_string).collect();
                return Err(format!("{name}: {n} is not one of {}", allowed.join(", ")));
            }
            out.extend_from_slice(&n.to_le_bytes());
        }
        Ty::Float => {
            let x: f64 = raw
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| format!("{name}: {} is not a finite number", shown(raw)))?;
            if let Some((min, max)) = rules.float_range {
                bound(name, x, min, max)?;
            }
            out.extend_from_slice(&x.to_le_bytes());
        }
        Ty::Boolean => {
            let b = match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => true,
                "false" | "0" | "off" | "no" => false,
                _ => {
                    return Err(format!("{name}: {} is not a boolean (true/false, 1/0, on/off, yes/no)", shown(raw)));
                }
            };
            out.push(u8::from(b));
        }
        Ty::ListOfKeyword | Ty::ListOfInteger => {
            unreachable!("lists are encoded element by element")
        }
    }
    Ok(())
}

fn check_chars(spec: &ParamSpec, text: &str) -> Result<(), String> {
    let Some(b) = spec.rules.chars else {
        return Ok(());
    };
    // Characters, not bytes: "é" is one.
    let n = text.chars().count() as u64;
    if let Some(min) = b.min.filter(|&min| n < min) {
        return Err(format!("{}: length {n} is below the minimum {min}", spec.label));
    }
    if let Some(max) = b.max.filter(|&max| n > max) {
        return Err(format!("{}: length {n} is above the maximum {max}", spec.label));
    }
    Ok(())
}

fn check_one_of_text(spec: &ParamSpec, text: &str) -> Result<(), String> {
    let allowed = &spec.rules.one_of_text;
    if allowed.is_empty() || allowed.iter().any(|a| a == text) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    Err(format!("{}: {} is not one of {}", spec.label, shown(text), list.join(", ")))
}

fn bound<T: PartialOrd + std::fmt::Display>(name: &str, x: T, min: Option<T>, max: Option<T>) -> Result<(), String> {
    if let Some(min) = min.filter(|min| x < *min) {
        return Err(format!("{name}: {x} is below the minimum {min}"));
    }
    if let Some(max) = max.filter(|max| x > *max) {
        return Err(format!("{name}: {x} is above the maximum {max}"));
    }
    Ok(())
}

fn push_text(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A client's value quoted in an error, cut short: errors are one line.
fn shown(raw: &str) -> String {
    match raw.char_indices().nth(32) {
        Some((i, _)) => format!("{:?}...", &raw[..i]),
        None => format!("{raw:?}"),
    }
}
