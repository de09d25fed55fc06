//! The validator at a request: gathers each declared input from where it
//! comes from and has the ABI crate check and encode it into the argument
//! block a handler receives (docs/ABI.md, "Arguments"). A failure is a 400
//! naming the parameter and the rule, and no guest is instantiated for it.

use house_abi::shown;
use house_abi::validate::encode;

use super::manifest::{ParamSpec, Source};
use crate::http::params::Params;
use crate::http::{ErrorKind, HttpError};
use crate::identity::{self, Identity, REGISTERED_CLAIMS};

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
    /// The credentials of `Authorization: Bearer`, when a token is declared.
    pub bearer: Option<&'a str>,
    /// The keys that tokens and signed cookies are verified with.
    pub identity: Option<&'a Identity>,
}

impl Inputs<'_> {
    fn values<'s>(&'s self, spec: &'s ParamSpec, out: &mut Vec<&'s str>) {
        let pick = |list: &'s [(String, String)]| list.iter().filter(|(n, _)| *n == spec.name).map(|(_, v)| v.as_str());
        match spec.source {
            Source::Query => out.extend(self.params.all(&spec.name)),
            Source::Path => out.extend(self.path.iter().filter(|(n, _)| *n == spec.name).map(|(_, v)| v.as_str())),
            Source::Header => out.extend(pick(&self.headers)),
            // A signed cookie whose signature does not verify is absent,
            // never a value.
            Source::Cookie if spec.signed => {
                let Some(id) = self.identity else { return };
                out.extend(pick(&self.cookies).filter_map(|v| id.cookies.verify(&spec.name, v)));
            }
            Source::Cookie => out.extend(pick(&self.cookies)),
            Source::Body => out.extend(self.body.filter(|b| !b.is_empty())),
            Source::Token => {}
        }
    }

    /// The token's verified claims, encoded into `out` (401 if not).
    fn token(&self, spec: &ParamSpec, out: &mut Vec<u8>) -> Result<(), HttpError> {
        let from_cookie = || {
            let name = spec.token_cookie.as_deref()?;
            self.cookies.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        };
        let Some(token) = self.bearer.or_else(from_cookie) else {
            let where_ = match &spec.token_cookie {
                Some(c) => format!("Authorization: Bearer or cookie {c}"),
                None => "Authorization: Bearer".to_owned(),
            };
            return Err(HttpError::unauthorized(None, format!("token: missing ({where_})")));
        };
        let keys = self.identity.map(|id| &id.tokens);
        let claims = match keys {
            Some(keys) => keys.verify(token, identity::now()),
            None => Err("no key is configured"),
        }
        .map_err(|why| HttpError::unauthorized(Some("invalid_token"), format!("token: {why}")))?;
        let object = spec.object.as_deref().expect("a token's type is an object (checked at load)");
        house_abi::body::validate_claims(object, "token", &claims, &REGISTERED_CLAIMS, out)
            .map_err(|e| HttpError::unauthorized(Some("invalid_token"), e))
    }
}

/// A query or form parameter the handler does not declare: a 400, so
/// that a misspelt optional parameter is not silently its default.
pub fn check_known(specs: &[ParamSpec], params: &Params) -> Result<(), HttpError> {
    let declared = |name: &str| specs.iter().any(|s| s.source == Source::Query && s.name == name);
    let Some(unknown) = params.names().find(|n| !declared(n)) else { return Ok(()) };
    let known: Vec<&str> = specs.iter().filter(|s| s.source == Source::Query).map(|s| s.name.as_str()).collect();
    // A handler whose inputs are all elsewhere (a header, a cookie, a
    // body) takes "none" of these, which reads as if it took nothing.
    let takes = if known.is_empty() { "no query parameters".to_owned() } else { known.join(", ") };
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
        if spec.source == Source::Token {
            inputs.token(spec, &mut out)?;
            continue;
        }
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
                        other => format!("a required {} {}", spec.type_name, other.noun()),
                    };
                    return Err(HttpError::new(ErrorKind::BadParameter, format!("{}: missing ({what})", spec.label)));
                }
            }
        }
        let encoded = match (&spec.object, values.as_slice()) {
            (Some(object), [text]) => house_abi::body::validate(object, "body", text, &mut out),
            _ => encode(spec.param(), &values, &mut out),
        };
        encoded.map_err(|e| HttpError::new(ErrorKind::BadParameter, e))?;
    }
    Ok(out)
}
