//! Manifest entries (docs/ABI.md, "Manifest"), as a guest's exports return
//! them: named types (scalar and object types, whose fields refer to each
//! other) and a handler (signed cookies, tokens), built from arbitrary
//! parts with the manifest's own field names (so that most reach the
//! checks, not the JSON parser), or arbitrary text. The host's own path:
//! `Types::read` and `read_handler`, then for a handler it accepts, its
//! OpenAPI description and the validator on an arbitrary request (query,
//! path, headers, cookies, a bearer token, body). Nothing may panic; a
//! refused request is a 4xx with a reason; arguments stay within the
//! host's budget for them.

#![no_main]

use arbitrary::Arbitrary;
use house_host::guests::manifest::{Source, Types, read_handler, read_type};
use house_host::guests::openapi;
use house_host::guests::validate::{Inputs, check_known, encode_args};
use house_host::http::params::Params;
use house_host::identity::Identity;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

#[derive(Arbitrary, Debug)]
enum Lit {
    Str(String),
    Int(i64),
    Small(i8),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<String>),
}

impl Lit {
    fn json(&self) -> Value {
        match self {
            Lit::Str(s) => json!(s),
            Lit::Int(n) => json!(n),
            Lit::Small(n) => json!(n),
            Lit::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            Lit::Bool(b) => json!(b),
            Lit::Null => Value::Null,
            Lit::List(l) => json!(l),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Bounds {
    min: Option<Lit>,
    max: Option<Lit>,
}

impl Bounds {
    fn json(&self) -> Value {
        let mut m = Map::new();
        if let Some(v) = &self.min {
            m.insert("min".into(), v.json());
        }
        if let Some(v) = &self.max {
            m.insert("max".into(), v.json());
        }
        Value::Object(m)
    }
}

#[derive(Arbitrary, Debug)]
struct Rules {
    chars: Option<Bounds>,
    range: Option<Bounds>,
    one_of: Option<Vec<Lit>>,
    items: Option<Bounds>,
    other: Option<(String, Lit)>,
}

impl Rules {
    fn json(&self) -> Value {
        let mut m = Map::new();
        if let Some(b) = &self.chars {
            m.insert("chars".into(), b.json());
        }
        if let Some(b) = &self.range {
            m.insert("range".into(), b.json());
        }
        if let Some(l) = &self.one_of {
            m.insert("one_of".into(), Value::Array(l.iter().map(Lit::json).collect()));
        }
        if let Some(b) = &self.items {
            m.insert("items".into(), b.json());
        }
        if let Some((k, v)) = &self.other {
            m.insert(k.clone(), v.json());
        }
        Value::Object(m)
    }
}

const BASES: [&str; 12] = [
    "string",
    "integer",
    "float",
    "boolean",
    "keyword",
    "json",
    "untyped",
    "list<string>",
    "list<integer>",
    "list<keyword>",
    "list<float>",
    "list<boolean>",
];
const SOURCES: [&str; 7] = ["query", "path", "header", "cookie", "body", "token", "elsewhere"];
const NAMES: [&str; 6] = ["room", "id", "level", "user-agent", "sid", "t"];

#[derive(Arbitrary, Debug)]
enum Pick {
    Known(u8),
    Other(String),
}

impl Pick {
    fn of<'a>(&'a self, list: &[&'a str]) -> &'a str {
        match self {
            Pick::Known(i) => list[usize::from(*i) % list.len()],
            Pick::Other(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Param {
    name: Pick,
    source: Option<Pick>,
    ty: Option<Pick>,
    rules: Rules,
    default: Option<Lit>,
    signed: bool,
    cookie: Option<Pick>,
}

/// An object type's field.
#[derive(Arbitrary, Debug)]
struct FieldIn {
    name: Pick,
    ty: Pick,
    list: bool,
    optional: bool,
    rules: Rules,
    default: Option<Lit>,
}

/// The names object types take (fields may name them, and themselves).
const OBJECTS: [&str; 3] = ["Note", "Line", "Claims"];

#[derive(Arbitrary, Debug)]
struct Handler {
    stream: Option<bool>,
    path: Option<String>,
    content_type: Option<String>,
    methods: Option<Vec<Pick>>,
    statuses: Option<Vec<Lit>>,
    params: Vec<Param>,
    other: Option<(String, Lit)>,
}

#[derive(Arbitrary, Debug)]
struct Request {
    query: Vec<u8>,
    segments: Vec<String>,
    headers: Vec<(Pick, String)>,
    cookies: Vec<(Pick, String)>,
    body: Option<String>,
    bearer: Option<String>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    types: Vec<(Pick, Pick, Rules)>,
    objects: Vec<(u8, Vec<FieldIn>, bool)>,
    handler: Handler,
    /// Instead of the handler built above, this text.
    raw: Option<String>,
    request: Request,
}

fuzz_target!(|input: Input| {
    let mut entries = Vec::new();
    for (name, base, rules) in input.types.iter().take(4) {
        let name = name.of(&NAMES);
        let text = json!({"base": base.of(&BASES), "rules": rules.json()}).to_string();
        if read_type(name, &text).is_ok() && !entries.iter().any(|(n, _): &(String, String)| n == name) {
            entries.push((name.to_owned(), text));
        }
    }
    let scalar_names: Vec<String> = entries.iter().map(|(n, _)| n.clone()).collect();
    for (name, fields, allow_unknown) in input.objects.iter().take(3) {
        let name = OBJECTS[usize::from(*name) % OBJECTS.len()];
        if entries.iter().any(|(n, _)| n == name) {
            continue;
        }
        let mut field_types: Vec<&str> = BASES.to_vec();
        field_types.extend(OBJECTS);
        field_types.extend(scalar_names.iter().map(String::as_str));
        let fields: Vec<Value> = fields
            .iter()
            .take(6)
            .map(|f| {
                let mut o = Map::new();
                o.insert("name".into(), json!(f.name.of(&NAMES)));
                o.insert("type".into(), json!(f.ty.of(&field_types)));
                o.insert("list".into(), json!(f.list));
                o.insert("optional".into(), json!(f.optional));
                o.insert("rules".into(), f.rules.json());
                if let Some(d) = &f.default {
                    o.insert("default".into(), d.json());
                }
                Value::Object(o)
            })
            .collect();
        let text = json!({"base": "object", "fields": fields, "allow_unknown": allow_unknown}).to_string();
        entries.push((name.to_owned(), text));
    }
    // Object types may refuse each other (unknown types, cycles, rules):
    // a module refused at load, with a reason.
    let types = match Types::read(&entries) {
        Ok(t) => t,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    let mut type_names: Vec<&str> = types.scalars.keys().map(String::as_str).collect();
    type_names.extend(types.objects.keys().map(String::as_str));
    let h = &input.handler;
    let text = match &input.raw {
        Some(raw) => raw.clone(),
        None => {
            let mut m = Map::new();
            m.insert("name".into(), json!("h"));
            match h.stream {
                Some(true) => m.insert("kind".into(), json!("stream")),
                Some(false) => m.insert("kind".into(), json!("closing")),
                None => None,
            };
            if let Some(p) = &h.path {
                m.insert("path".into(), json!(p));
            }
            if let Some(c) = &h.content_type {
                m.insert("content_type".into(), json!(c));
            }
            if let Some(ms) = &h.methods {
                let methods: Vec<&str> =
                    ms.iter().map(|p| p.of(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])).collect();
                m.insert("methods".into(), json!(methods));
            }
            if let Some(s) = &h.statuses {
                m.insert("statuses".into(), Value::Array(s.iter().map(Lit::json).collect()));
            }
            let mut all_types: Vec<&str> = BASES.to_vec();
            all_types.extend(&type_names);
            let params: Vec<Value> = h
                .params
                .iter()
                .take(8)
                .map(|p| {
                    let mut o = Map::new();
                    o.insert("name".into(), json!(p.name.of(&NAMES)));
                    if let Some(s) = &p.source {
                        o.insert("in".into(), json!(s.of(&SOURCES)));
                    }
                    if let Some(t) = &p.ty {
                        o.insert("type".into(), json!(t.of(&all_types)));
                    }
                    o.insert("rules".into(), p.rules.json());
                    if let Some(d) = &p.default {
                        o.insert("default".into(), d.json());
                    }
                    if p.signed {
                        o.insert("signed".into(), json!(true));
                    }
                    if let Some(c) = &p.cookie {
                        o.insert("cookie".into(), json!(c.of(&NAMES)));
                    }
                    Value::Object(o)
                })
                .collect();
            m.insert("params".into(), Value::Array(params));
            if let Some((k, v)) = &h.other {
                m.insert(k.clone(), v.json());
            }
            Value::Object(m).to_string()
        }
    };
    let Ok(spec) = read_handler("h", &text, &types) else { return };
    // What the operator and API clients are shown of it.
    let doc = openapi::document(std::iter::once(("h.wasm", &spec)), std::iter::empty());
    assert!(doc["paths"].is_object());
    // A request against it, as the dispatcher gathers it.
    let r = &input.request;
    let mut params = Params::default();
    let _ = params.extend_from_urlencoded(&r.query);
    let path: Vec<(&str, String)> = spec
        .params
        .iter()
        .filter(|p| p.source == Source::Path)
        .map(|p| p.name.as_str())
        .zip(r.segments.iter().cloned())
        .collect();
    let headers: Vec<(String, String)> =
        r.headers.iter().map(|(n, v)| (n.of(&NAMES).to_ascii_lowercase(), v.clone())).collect();
    let cookies: Vec<(String, String)> = r.cookies.iter().map(|(n, v)| (n.of(&NAMES).to_owned(), v.clone())).collect();
    static IDENTITY: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    let identity = IDENTITY.get_or_init(|| Identity::load(&Default::default()).expect("an ephemeral cookie key"));
    let inputs = Inputs {
        params,
        path,
        headers,
        cookies,
        body: r.body.as_deref(),
        bearer: r.bearer.as_deref(),
        identity: Some(identity),
    };
    let outcome = check_known(&spec.params, &inputs.params).and_then(|()| encode_args(&spec.params, &inputs));
    match outcome {
        Ok(args) => {
            // Arguments are what came in, encoded, plus defaults: bounded
            // by the request and the manifest, never more.
            let came = r.query.len()
                + r.segments.iter().map(String::len).sum::<usize>()
                + r.headers.iter().map(|(_, v)| v.len()).sum::<usize>()
                + r.cookies.iter().map(|(_, v)| v.len()).sum::<usize>()
                + r.body.as_ref().map_or(0, String::len)
                + r.bearer.as_ref().map_or(0, String::len);
            assert!(
                args.len() <= 64 + 16 * spec.params.len() + 9 * came + text.len(),
                "{} bytes of arguments",
                args.len()
            );
        }
        Err(e) => {
            assert!((400..500).contains(&e.status()), "a refusal is a 4xx: {}", e.status());
            assert!(!e.reason.is_empty());
        }
    }
});
