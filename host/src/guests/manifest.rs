//! The manifest: what a module declares about its handlers, read from its
//! exports at load time, parsed strictly (unknown fields are errors) and
//! checked into the form the validator uses.
//!
//! Raw (serde) shapes come first, then the checked shapes; `check` is the
//! only way from one to the other, so a loaded handler's spec is known good.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::router::Methods;

/// The ABI version this host speaks (see docs/ABI.md).
pub const ABI_VERSION: i32 = 1;

/// The longest path a handler may claim, in bytes.
pub const MAX_PATH: usize = 2048;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHandler {
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    pub kind: Kind,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub params: Vec<RawParam>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    pub name: String,
    /// Where the value comes from (absent: the query string or form body).
    #[serde(rename = "in", default)]
    pub source: Source,
    #[serde(rename = "type", default)]
    pub ty: Option<String>,
    #[serde(default)]
    pub rules: RawRules,
    #[serde(default)]
    pub default: Option<Value>,
}

/// A named type (the article's `define-http-type`): a base type and rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawType {
    pub base: String,
    #[serde(default)]
    pub rules: RawRules,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    #[serde(default)]
    pub chars: Option<Bounds>,
    #[serde(default)]
    pub range: Option<NumBounds>,
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    #[serde(default)]
    pub items: Option<Bounds>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NumBounds {
    #[serde(default)]
    pub min: Option<serde_json::Number>,
    #[serde(default)]
    pub max: Option<serde_json::Number>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Answer, then keep the connection for the next request (or close).
    Closing,
    /// Answer with an SSE stream and keep the connection subscribed.
    Stream,
}

/// Where a parameter's value comes from.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The query string, then an `application/x-www-form-urlencoded` body.
    #[default]
    Query,
    /// A `{name}` segment of the handler's path.
    Path,
    /// A request header (the name, case-insensitive).
    Header,
    /// A cookie of the `Cookie` header.
    Cookie,
    /// The whole request body, `application/json` (type `json`).
    Body,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Query => "query",
            Source::Path => "path",
            Source::Header => "header",
            Source::Cookie => "cookie",
            Source::Body => "body",
        }
    }
}

/// The built-in parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Untyped,
    String,
    Integer,
    Float,
    Boolean,
    Keyword,
    Json,
    ListOfKeyword,
    ListOfInteger,
}

impl Ty {
    pub fn parse(name: &str) -> Option<Ty> {
        Some(match name {
            "untyped" => Ty::Untyped,
            "string" => Ty::String,
            "integer" => Ty::Integer,
            "float" => Ty::Float,
            "boolean" => Ty::Boolean,
            "keyword" => Ty::Keyword,
            "json" => Ty::Json,
            "list-of-keyword" => Ty::ListOfKeyword,
            "list-of-integer" => Ty::ListOfInteger,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Ty::Untyped => "untyped",
            Ty::String => "string",
            Ty::Integer => "integer",
            Ty::Float => "float",
            Ty::Boolean => "boolean",
            Ty::Keyword => "keyword",
            Ty::Json => "json",
            Ty::ListOfKeyword => "list-of-keyword",
            Ty::ListOfInteger => "list-of-integer",
        }
    }

    pub fn is_list(self) -> bool {
        matches!(self, Ty::ListOfKeyword | Ty::ListOfInteger)
    }

    /// The type of one element (of a list; itself otherwise).
    pub fn element(self) -> Ty {
        match self {
            Ty::ListOfKeyword => Ty::Keyword,
            Ty::ListOfInteger => Ty::Integer,
            t => t,
        }
    }
}

/// Rules in checked form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub chars: Option<Bounds>,
    pub int_range: Option<(Option<i64>, Option<i64>)>,
    pub float_range: Option<(Option<f64>, Option<f64>)>,
    pub one_of_text: Vec<String>,
    pub one_of_int: Vec<i64>,
    pub items: Option<Bounds>,
}

#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// The name where it comes from: the query name, the header's (lower
    /// case), the cookie's, the path segment's; `body` for the body.
    pub name: String,
    pub source: Source,
    /// How errors name it: `room`, `header user-agent`, `cookie sid`,
    /// `path id`, `body`.
    pub label: String,
    pub ty: Ty,
    /// The name the manifest used: a built-in type or a named one.
    pub type_name: String,
    pub rules: Rules,
    /// The raw values used when the parameter is absent (checked at load).
    pub default: Option<Vec<String>>,
    /// The rules as the manifest gave them, for `/_house/guests`.
    pub raw_rules: Value,
}

#[derive(Debug, Clone)]
pub struct HandlerSpec {
    pub name: String,
    pub path: String,
    pub kind: Kind,
    pub content_type: String,
    pub methods: Methods,
    pub params: Vec<ParamSpec>,
}

pub const DEFAULT_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The path the article derives from a handler's name:
/// `send_message` -> `/send-message`, `root` -> `/`.
pub fn path_from_name(name: &str) -> String {
    if name == "root" {
        return "/".into();
    }
    format!("/{}", name.replace('_', "-"))
}

/// Checks a named type's definition.
pub fn check_type(name: &str, raw: &RawType) -> Result<(Ty, Rules), String> {
    if Ty::parse(name).is_some() {
        return Err(format!("type {name}: redefines a built-in type"));
    }
    let ty = Ty::parse(&raw.base).ok_or_else(|| format!("type {name}: unknown base type {:?}", raw.base))?;
    let rules = check_rules(ty, &raw.rules).map_err(|e| format!("type {name}: {e}"))?;
    Ok((ty, rules))
}

/// Checks one handler's manifest entry against the module's named types.
pub fn check_handler(raw: RawHandler, types: &HashMap<String, (Ty, Rules)>) -> Result<HandlerSpec, String> {
    let name = raw.name;
    let at = |e: String| format!("handler {name}: {e}");
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("handler name {name:?}: use letters, digits, '_' and '-'"));
    }
    let path = raw.path.unwrap_or_else(|| path_from_name(&name));
    if path.len() > MAX_PATH {
        return Err(at(format!("its path is {} bytes long; at most {MAX_PATH}", path.len())));
    }
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.starts_with("/_house/") {
        return Err(at(format!("invalid path {path:?} (must start with /, no ?, # or spaces, not under /_house/)")));
    }
    let content_type = raw.content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into());
    if content_type.is_empty() || content_type.bytes().any(|b| b.is_ascii_control()) {
        return Err(at(format!("invalid content type {content_type:?}")));
    }
    let methods = match (raw.methods, raw.kind) {
        (Some(list), _) => {
            let mut set: Option<Methods> = None;
            for m in &list {
                let parsed = Methods::parse(m).ok_or_else(|| at(format!("unknown method {m:?}")))?;
                set = Some(set.map_or(parsed, |s| s.union(parsed)));
            }
            set.ok_or_else(|| at("empty method list".into()))?
        }
        (None, Kind::Closing) => Methods::GET.union(Methods::parse("POST").expect("known method")),
        (None, Kind::Stream) => Methods::GET,
    };
    let segments = crate::router::parse_pattern(&path).map_err(&at)?;
    let mut params: Vec<ParamSpec> = Vec::with_capacity(raw.params.len());
    for mut p in raw.params {
        if p.name.is_empty() {
            return Err(at("a parameter has an empty name".into()));
        }
        if p.source == Source::Header {
            p.name = p.name.to_ascii_lowercase();
        }
        let token = |n: &str| n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        match p.source {
            Source::Header | Source::Cookie if !token(&p.name) => {
                return Err(at(format!("{} name {:?} is not an HTTP token", p.source.name(), p.name)));
            }
            Source::Path if !segments.contains(&crate::router::Segment::Param(p.name.clone())) => {
                return Err(at(format!("path parameter {} is not a {{{}}} segment of {path}", p.name, p.name)));
            }
            Source::Body if p.ty.as_deref() != Some("json") => {
                return Err(at(format!("{}: a body parameter is of type json", p.name)));
            }
            Source::Body if params.iter().any(|q| q.source == Source::Body) => {
                return Err(at("only one parameter can be the body".into()));
            }
            _ => {}
        }
        if params.iter().any(|q| q.name == p.name && q.source == p.source) {
            return Err(at(format!("parameter {} declared twice", p.name)));
        }
        let spec = check_param(p, types).map_err(at)?;
        if spec.source != Source::Query && spec.ty.is_list() {
            return Err(at(format!("{}: only query parameters can be lists", spec.label)));
        }
        if spec.source == Source::Path && spec.default.is_some() {
            return Err(at(format!("{}: a path segment is always there, it takes no default", spec.label)));
        }
        params.push(spec);
    }
    for seg in &segments {
        if let crate::router::Segment::Param(name) = seg
            && !params.iter().any(|p| p.source == Source::Path && &p.name == name)
        {
            return Err(at(format!("path segment {{{name}}} has no parameter (\"in\": \"path\")")));
        }
    }
    Ok(HandlerSpec { name, path, kind: raw.kind, content_type, methods, params })
}

fn check_param(p: RawParam, types: &HashMap<String, (Ty, Rules)>) -> Result<ParamSpec, String> {
    let type_name = p.ty.unwrap_or_else(|| "untyped".into());
    let (ty, mut rules) = match Ty::parse(&type_name) {
        Some(ty) => (ty, Rules::default()),
        None => types.get(&type_name).cloned().ok_or_else(|| format!("{}: unknown type {type_name:?}", p.name))?,
    };
    let own = check_rules(ty, &p.rules).map_err(|e| format!("{}: {e}", p.name))?;
    // The parameter's own rules refine the named type's.
    rules.chars = own.chars.or(rules.chars);
    rules.int_range = own.int_range.or(rules.int_range);
    rules.float_range = own.float_range.or(rules.float_range);
    rules.items = own.items.or(rules.items);
    if !own.one_of_text.is_empty() || !own.one_of_int.is_empty() {
        rules.one_of_text = own.one_of_text;
        rules.one_of_int = own.one_of_int;
    }
    let default = match p.default {
        None => None,
        Some(v) => Some(default_values(ty, &v).map_err(|e| format!("{}: default {e}", p.name))?),
    };
    let raw_rules = serde_json::to_value(RulesView(&rules)).unwrap_or(Value::Null);
    let label = match p.source {
        Source::Query => p.name.clone(),
        Source::Body => "body".to_owned(),
        other => format!("{} {}", other.name(), p.name),
    };
    let spec = ParamSpec { name: p.name, source: p.source, label, ty, type_name, rules, default, raw_rules };
    if let Some(values) = &spec.default {
        super::validate::check_default(&spec, values).map_err(|e| format!("default breaks its own rules: {e}"))?;
    }
    Ok(spec)
}

/// A default, as the raw strings a client would have sent.
fn default_values(ty: Ty, v: &Value) -> Result<Vec<String>, String> {
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
        (false, v) => Ok(vec![scalar(v)?]),
    }
}

fn check_rules(ty: Ty, raw: &RawRules) -> Result<Rules, String> {
    let el = ty.element();
    let mut rules = Rules::default();
    if let Some(b) = raw.chars {
        if !matches!(ty, Ty::String | Ty::Keyword | Ty::Untyped | Ty::Json) {
            return Err(format!("rule chars does not apply to {}", ty.name()));
        }
        ordered(b.min, b.max, "chars")?;
        rules.chars = Some(b);
    }
    if let Some(b) = raw.items {
        if !ty.is_list() {
            return Err(format!("rule items does not apply to {}", ty.name()));
        }
        ordered(b.min, b.max, "items")?;
        rules.items = Some(b);
    }
    if let Some(r) = &raw.range {
        match el {
            Ty::Integer => {
                let int = |n: &Option<serde_json::Number>| -> Result<Option<i64>, String> {
                    n.as_ref().map(|n| n.as_i64().ok_or(format!("range bound {n} is not an integer"))).transpose()
                };
                let (min, max) = (int(&r.min)?, int(&r.max)?);
                ordered(min, max, "range")?;
                rules.int_range = Some((min, max));
            }
            Ty::Float => {
                let float = |n: &Option<serde_json::Number>| n.as_ref().and_then(serde_json::Number::as_f64);
                let (min, max) = (float(&r.min), float(&r.max));
                if let (Some(a), Some(b)) = (min, max)
                    && a > b
                {
                    return Err(format!("range: min {a} > max {b}"));
                }
                rules.float_range = Some((min, max));
            }
            _ => return Err(format!("rule range does not apply to {}", ty.name())),
        }
    }
    if let Some(values) = &raw.one_of {
        if values.is_empty() {
            return Err("one_of is empty".into());
        }
        for v in values {
            match (el, v) {
                (Ty::String | Ty::Keyword | Ty::Untyped, Value::String(s)) => rules.one_of_text.push(s.clone()),
                (Ty::Integer, Value::Number(n)) if n.is_i64() => rules.one_of_int.push(n.as_i64().unwrap_or_default()),
                _ => return Err(format!("one_of value {v} does not fit {}", ty.name())),
            }
        }
    }
    Ok(rules)
}

fn ordered<T: PartialOrd + std::fmt::Display>(min: Option<T>, max: Option<T>, rule: &str) -> Result<(), String> {
    match (min, max) {
        (Some(a), Some(b)) if a > b => Err(format!("{rule}: min {a} > max {b}")),
        _ => Ok(()),
    }
}

/// Rules as JSON, for the introspection endpoint.
pub struct RulesView<'a>(pub &'a Rules);

impl ParamSpec {
    /// Its default as the JSON value of its type (manifests hold text):
    /// `3`, `true`, `"world"`, `["a", "b"]`; null without one.
    pub fn default_json(&self) -> Value {
        let Some(values) = &self.default else { return Value::Null };
        let one = |v: &str| -> Value {
            match self.ty {
                Ty::Integer | Ty::ListOfInteger => v.parse::<i64>().map_or_else(|_| v.into(), Value::from),
                Ty::Float => v.parse::<f64>().map_or_else(|_| v.into(), Value::from),
                Ty::Boolean => matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on" | "yes").into(),
                _ => v.into(),
            }
        };
        match self.ty {
            Ty::ListOfKeyword | Ty::ListOfInteger => Value::Array(values.iter().map(|v| one(v)).collect()),
            _ => values.first().map_or(Value::Null, |v| one(v)),
        }
    }
}

impl serde::Serialize for RulesView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(c) = &r.chars {
            m.serialize_entry("chars", c)?;
        }
        if let Some((min, max)) = &r.int_range {
            m.serialize_entry("range", &serde_json::json!({"min": min, "max": max}))?;
        }
        if let Some((min, max)) = &r.float_range {
            m.serialize_entry("range", &serde_json::json!({"min": min, "max": max}))?;
        }
        if !r.one_of_text.is_empty() {
            m.serialize_entry("one_of", &r.one_of_text)?;
        }
        if !r.one_of_int.is_empty() {
            m.serialize_entry("one_of", &r.one_of_int)?;
        }
        if let Some(i) = &r.items {
            m.serialize_entry("items", i)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(json: &str) -> Result<HandlerSpec, String> {
        let raw: RawHandler = serde_json::from_str(json).map_err(|e| e.to_string())?;
        check_handler(raw, &HashMap::new())
    }

    #[test]
    fn derives_paths_like_the_article() {
        assert_eq!(path_from_name("send_message"), "/send-message");
        assert_eq!(path_from_name("root"), "/");
        assert_eq!(path_from_name("index"), "/index");
    }

    #[test]
    fn refuses_bad_rules() {
        let e = handler(
            r#"{"name":"h","kind":"closing","params":[{"name":"n","type":"string","rules":{"chars":{"min":70,"max":64}}}]}"#,
        );
        assert_eq!(e.unwrap_err(), "handler h: n: chars: min 70 > max 64");
        let e = handler(
            r#"{"name":"h","kind":"closing","params":[{"name":"n","type":"integer","rules":{"chars":{"max":3}}}]}"#,
        );
        assert_eq!(e.unwrap_err(), "handler h: n: rule chars does not apply to integer");
        let e = handler(
            r#"{"name":"h","kind":"closing","params":[{"name":"n","type":"integer","default":99,"rules":{"range":{"max":3}}}]}"#,
        );
        assert_eq!(e.unwrap_err(), "handler h: default breaks its own rules: n: 99 is above the maximum 3");
        assert!(handler(r#"{"name":"h","kind":"closing","surprise":1}"#).is_err());
    }
}
