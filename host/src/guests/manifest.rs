//! The manifest: what a module declares about its handlers, read from its
//! exports at load time, parsed strictly (unknown fields are errors) and
//! checked into the form the validator uses.
//!
//! Raw (serde) shapes come first, then the checked shapes; `check` is the
//! only way from one to the other, so a loaded handler's spec is known good.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::router::Methods;

use house_abi::body::{self, Named, Object};
use house_abi::rules;
use house_abi::validate::{self, Param};
pub use house_abi::{ABI_VERSION, Bounds, DEFAULT_CONTENT_TYPE, Kind, MAX_PATH, Rules, Source, Ty, path_from_name};

/// The manifest's entries as a module writes them: the ABI crate's one
/// model (the SDK's macros write the same structs).
pub use house_abi::manifest::{Handler as RawHandler, Param as RawParam, Rules as RawRules, Type as RawType};

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
    /// A body or a token of an object type: its checked fields.
    pub object: Option<Arc<Object>>,
    /// A cookie the host signed: an unsigned or forged value is absent.
    pub signed: bool,
    /// A token: the cookie it may come from without `Authorization`.
    pub token_cookie: Option<String>,
}

/// A module's named types, checked: scalar types (`http_type!`) and object
/// types (`#[derive(Body)]`).
#[derive(Debug, Clone, Default)]
pub struct Types {
    pub scalars: HashMap<String, (Ty, Rules)>,
    pub objects: HashMap<String, Arc<Object>>,
}

impl Types {
    /// Reads every named type's manifest entry (name, JSON text): scalars
    /// first, then each object against all of them.
    pub fn read(entries: &[(String, String)]) -> Result<Types, String> {
        let mut raw = HashMap::new();
        let mut types = Types::default();
        for (name, json) in entries {
            let t: RawType = serde_json::from_str(json).map_err(|e| format!("type {name}: malformed manifest: {e}"))?;
            if t.base == body::OBJECT {
                if Ty::parse(name).is_some() {
                    return Err(format!("type {name}: redefines a built-in type"));
                }
                raw.insert(name.clone(), t);
            } else {
                let checked = check_type(name, &t)?;
                types.scalars.insert(name.clone(), checked);
            }
        }
        let lookup = |n: &str| match raw.get(n) {
            Some(t) => Some(Named::Object(t)),
            None => types.scalars.get(n).map(|(ty, rules)| Named::Scalar(*ty, rules.clone())),
        };
        let mut objects = HashMap::new();
        for name in raw.keys() {
            objects.insert(name.clone(), Arc::new(body::resolve(name, &lookup)?));
        }
        types.objects = objects;
        Ok(types)
    }

    /// The scalar types, by name: (name, base, rules).
    pub fn list(&self) -> Vec<(String, Ty, Rules)> {
        let mut list: Vec<_> = self.scalars.iter().map(|(n, (t, r))| (n.clone(), *t, r.clone())).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// The object types, by name.
    pub fn object_list(&self) -> Vec<Arc<Object>> {
        let mut list: Vec<_> = self.objects.values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}

#[derive(Debug, Clone)]
pub struct HandlerSpec {
    pub name: String,
    pub path: String,
    pub kind: Kind,
    pub content_type: String,
    pub methods: Methods,
    /// The statuses it says it answers (empty: not said, 200 assumed).
    pub statuses: Vec<u16>,
    pub params: Vec<ParamSpec>,
}

/// Reads named type `name`'s manifest entry (its JSON text, as the module
/// returned it): the loader's path, and the fuzz target's.
pub fn read_type(name: &str, json: &str) -> Result<(Ty, Rules), String> {
    let raw: RawType = serde_json::from_str(json).map_err(|e| format!("type {name}: malformed manifest: {e}"))?;
    check_type(name, &raw)
}

/// Reads handler `name`'s manifest entry against the module's named types.
pub fn read_handler(name: &str, json: &str, types: &Types) -> Result<HandlerSpec, String> {
    let raw: RawHandler = serde_json::from_str(json).map_err(|e| format!("handler {name}: malformed manifest: {e}"))?;
    if raw.name != name {
        return Err(format!("handler {name}: its manifest names it {:?}", raw.name));
    }
    check_handler(raw, types)
}

/// Checks a named type's definition.
pub fn check_type(name: &str, raw: &RawType) -> Result<(Ty, Rules), String> {
    if Ty::parse(name).is_some() {
        return Err(format!("type {name}: redefines a built-in type"));
    }
    let ty = Ty::parse(&raw.base).ok_or_else(|| format!("type {name}: unknown base type {:?}", raw.base))?;
    if raw.fields.is_some() || raw.allow_unknown {
        return Err(format!("type {name}: fields are for an object type (base {:?})", body::OBJECT));
    }
    let rules = rules::check(ty, &raw.rules.to_checked_form()).map_err(|e| format!("type {name}: {e}"))?;
    Ok((ty, rules))
}

/// Checks one handler's manifest entry against the module's named types.
pub fn check_handler(raw: RawHandler, types: &Types) -> Result<HandlerSpec, String> {
    let name = raw.name;
    let at = |e: String| format!("handler {name}: {e}");
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("handler name {name:?}: use letters, digits, '_' and '-'"));
    }
    let path = raw.path.unwrap_or_else(|| path_from_name(&name));
    house_abi::path::check_handler_path(&path).map_err(&at)?;
    let content_type = raw.content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into());
    house_abi::check_content_type(&content_type).map_err(&at)?;
    let statuses = raw.statuses.unwrap_or_default();
    house_abi::check_statuses(&statuses).map_err(&at)?;
    if raw.kind == Kind::Stream && !statuses.is_empty() {
        return Err(at("a stream answers 200 and its events: statuses are for closing handlers".into()));
    }
    let methods = match (raw.methods, raw.kind) {
        (Some(_), Kind::Message) => {
            return Err(at("a message handler takes WebSocket messages, not HTTP methods".into()));
        }
        (None, Kind::Message) => Methods::MESSAGE,
        (Some(list), _) => {
            let mut set: Option<Methods> = None;
            for m in &list {
                let parsed = Methods::parse(m).ok_or_else(|| at(format!("unknown method {m:?}")))?;
                set = Some(set.map_or(parsed, |s| s.union(parsed)));
            }
            set.ok_or_else(|| at("empty method list".into()))?
        }
        (None, kind) => house_abi::default_methods(kind)
            .iter()
            .filter_map(|m| Methods::parse(m))
            .fold(Methods::default(), Methods::union),
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
        match p.source {
            Source::Header | Source::Cookie if !house_abi::is_token(&p.name) => {
                return Err(at(format!("{} name {:?} is not an HTTP token", p.source.name(), p.name)));
            }
            Source::Path if !segments.contains(&crate::router::Segment::Param(p.name.clone())) => {
                return Err(at(format!("path parameter {} is not a {{{}}} segment of {path}", p.name, p.name)));
            }
            Source::Body if params.iter().any(|q| q.source == Source::Body) => {
                return Err(at("only one parameter can be the body".into()));
            }
            Source::Token if params.iter().any(|q| q.source == Source::Token) => {
                return Err(at("only one parameter can be the token".into()));
            }
            _ => {}
        }
        if p.signed && p.source != Source::Cookie {
            return Err(at(format!("{}: only a cookie is signed", p.name)));
        }
        match &p.cookie {
            Some(_) if p.source != Source::Token => {
                return Err(at(format!("{}: only a token comes from a named cookie", p.name)));
            }
            Some(c) if !house_abi::is_token(c) => {
                return Err(at(format!("token cookie name {c:?} is not an HTTP token")));
            }
            _ => {}
        }
        if params.iter().any(|q| q.name == p.name && q.source == p.source) {
            return Err(at(format!("parameter {} declared twice", p.name)));
        }
        let spec = check_param(p, types).map_err(at)?;
        match (spec.source, &spec.object) {
            (Source::Body, None) if spec.ty != Ty::Json => {
                return Err(at(format!("{}: a body is of type json or an object type", spec.name)));
            }
            (Source::Token, None) => {
                return Err(at(format!("{}: a token's claims are an object type", spec.name)));
            }
            (Source::Body | Source::Token, Some(_)) if spec.default.is_some() => {
                return Err(at(format!("{}: an object takes no default", spec.label)));
            }
            (Source::Body | Source::Token, Some(_)) if spec.rules != Rules::default() => {
                return Err(at(format!(
                    "{}: an object's rules are its fields' (its size is --max-body-bytes)",
                    spec.label
                )));
            }
            (Source::Body | Source::Token, _) => {}
            (_, Some(_)) => {
                return Err(at(format!("{}: an object type is for a body or a token", spec.label)));
            }
            _ => {}
        }
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
    Ok(HandlerSpec { name, path, kind: raw.kind, content_type, methods, statuses, params })
}

fn check_param(p: RawParam, types: &Types) -> Result<ParamSpec, String> {
    let type_name = p.ty.unwrap_or_else(|| "untyped".into());
    let object = types.objects.get(&type_name).cloned();
    let (ty, mut rules) = match Ty::parse(&type_name) {
        Some(ty) => (ty, Rules::default()),
        // An object arrives as JSON text; its fields are checked by `body`.
        None if object.is_some() => (Ty::Json, Rules::default()),
        None => {
            types.scalars.get(&type_name).cloned().ok_or_else(|| format!("{}: unknown type {type_name:?}", p.name))?
        }
    };
    let own = rules::check(ty, &p.rules.to_checked_form()).map_err(|e| format!("{}: {e}", p.name))?;
    // The parameter's own rules refine the named type's.
    rules = rules.refined_by(own);
    let default = match p.default {
        None => None,
        Some(v) => Some(validate::default_values(ty, &v).map_err(|e| format!("{}: default {e}", p.name))?),
    };
    let raw_rules = serde_json::to_value(RulesView(&rules)).unwrap_or(Value::Null);
    let label = match p.source {
        Source::Query => p.name.clone(),
        Source::Body => "body".to_owned(),
        Source::Token => "token".to_owned(),
        other => format!("{} {}", other.name(), p.name),
    };
    let spec = ParamSpec {
        name: p.name,
        source: p.source,
        label,
        ty,
        type_name,
        rules,
        default,
        raw_rules,
        object,
        signed: p.signed,
        token_cookie: p.cookie,
    };
    if let Some(values) = &spec.default {
        validate::check_default(spec.param(), values).map_err(|e| format!("default breaks its own rules: {e}"))?;
    }
    Ok(spec)
}

/// Rules as JSON, for the introspection endpoint.
pub struct RulesView<'a>(pub &'a Rules);

impl ParamSpec {
    /// What the validator needs of it.
    pub fn param(&self) -> Param<'_> {
        Param { label: &self.label, ty: self.ty, rules: &self.rules }
    }

    /// Its default as the JSON value of its type (manifests hold text):
    /// `3`, `true`, `"world"`, `["a", "b"]`; null without one.
    pub fn default_json(&self) -> Value {
        let Some(values) = &self.default else { return Value::Null };
        let one = |v: &str| -> Value {
            match self.ty {
                Ty::Integer | Ty::ListOfInteger => v.parse::<i64>().map_or_else(|_| v.into(), Value::from),
                Ty::Float => v.parse::<f64>().map_or_else(|_| v.into(), Value::from),
                Ty::Boolean => validate::parse_bool(v).unwrap_or_default().into(),
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
        check_handler(raw, &Types::default())
    }

    /// `statuses` as a module written by hand might give them: the host
    /// refuses at load what the macros refuse at compile time.
    #[test]
    fn refuses_bad_statuses() {
        let ok = handler(r#"{"name":"h","kind":"closing","statuses":[204,404]}"#).unwrap();
        assert_eq!(ok.statuses, [204, 404]);
        assert_eq!(
            handler(r#"{"name":"h","kind":"closing","statuses":[200,99]}"#).unwrap_err(),
            "handler h: status 99 is not between 100 and 599"
        );
        assert_eq!(
            handler(r#"{"name":"h","kind":"closing","statuses":[204,204]}"#).unwrap_err(),
            "handler h: status 204 is declared twice"
        );
        assert_eq!(
            handler(r#"{"name":"h","kind":"stream","statuses":[200]}"#).unwrap_err(),
            "handler h: a stream answers 200 and its events: statuses are for closing handlers"
        );
        assert!(handler(r#"{"name":"h","kind":"closing","statuses":[-1]}"#).is_err(), "not a status at all");
    }

    /// An object body or token takes neither a default nor rules of its
    /// own (its fields carry them), and an object type is for those only.
    #[test]
    fn object_parameters_are_bodies_or_tokens_without_rules() {
        let types = Types::read(&[(
            "Note".to_owned(),
            r#"{"base":"object","fields":[{"name":"text","type":"string"}]}"#.to_owned(),
        )])
        .unwrap();
        let with = |param: &str| {
            let raw: RawHandler =
                serde_json::from_str(&format!(r#"{{"name":"h","kind":"closing","params":[{param}]}}"#)).unwrap();
            check_handler(raw, &types).map(|_| ())
        };
        assert_eq!(with(r#"{"name":"body","in":"body","type":"Note"}"#), Ok(()));
        assert_eq!(
            with(r#"{"name":"body","in":"body","type":"Note","rules":{"chars":{"max":9}}}"#).unwrap_err(),
            "handler h: body: an object's rules are its fields' (its size is --max-body-bytes)"
        );
        assert_eq!(
            with(r#"{"name":"n","type":"Note"}"#).unwrap_err(),
            "handler h: n: an object type is for a body or a token"
        );
        assert_eq!(
            with(r#"{"name":"t","in":"token","type":"string"}"#).unwrap_err(),
            "handler h: t: a token's claims are an object type"
        );
        assert_eq!(
            with(r#"{"name":"s","in":"query","signed":true}"#).unwrap_err(),
            "handler h: s: only a cookie is signed"
        );
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
