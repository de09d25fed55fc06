//! The validator at a request: gathers each declared input from where it
//! comes from and has the ABI crate check and encode it into the argument
//! block a handler receives (docs/ABI.md, "Arguments"). A failure is a 400
//! naming the parameter and the rule, and no guest is instantiated for it.

use house_abi::shown;
use house_abi::validate::encode;

use super::manifest::{ParamSpec, Source};
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
        encode(spec.param(), &values, &mut out).map_err(|e| HttpError::new(ErrorKind::BadParameter, e))?;
    }
    Ok(out)
}
