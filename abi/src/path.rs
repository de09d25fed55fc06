//! Handler paths: what a manifest's `path` may be, and its `{name}`
//! segments. The host checks every path at load with these, the macros at
//! compile time, and the router matches requests by the same segments.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Checks a handler's path: absolute, at most `MAX_PATH` bytes, no `?`,
/// `#` or spaces, not under `/_house/`, and its `{name}` segments well
/// formed (`parse_pattern`).
pub fn check_handler_path(path: &str) -> Result<(), String> {
    if path.len() > crate::MAX_PATH {
        return Err(format!("its path is {} bytes long; at most {}", path.len(), crate::MAX_PATH));
    }
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.starts_with("/_house/") {
        return Err(format!("invalid path {path:?} (must start with /, no ?, # or spaces, not under /_house/)"));
    }
    parse_pattern(path).map(drop)
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matched as written.
    Literal(String),
    /// `{name}`: any non-empty segment, captured under `name`.
    Param(String),
}

/// Splits `path` into segments: `{name}` is a parameter (letters, digits,
/// `_`, `-`), anything else with no `{` or `}` a literal.
pub fn parse_pattern(path: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for seg in path.strip_prefix('/').unwrap_or(path).split('/') {
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(format!(
                        "path segment {seg:?}: a parameter is {{NAME}}, NAME of letters, digits, '_', '-'"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("path parameter {name} appears twice"));
                }
                names.push(name);
                segments.push(Segment::Param(name.to_owned()));
            }
            None if seg.contains(['{', '}']) => {
                return Err(format!("path segment {seg:?}: braces only around a whole segment, {{NAME}}"));
            }
            None => segments.push(Segment::Literal(seg.to_owned())),
        }
    }
    Ok(segments)
}

/// A route's shape: its path with every `{name}` segment as `{}`. Two
/// handlers of one module with the same shape and a shared method are
/// refused (at compile time by the macros, at load by the host).
pub fn route_shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if seg.starts_with('{') && seg.ends_with('}') { "{}" } else { seg });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_patterns() {
        assert_eq!(route_shape("/todos/{id}/x"), "/todos/{}/x");
        assert!(check_handler_path("/items/{id}").is_ok());
        for bad in ["items", "/a b", "/a?b", "/_house/x", "/a/{b", "/{a}/{a}", "/{}"] {
            assert!(check_handler_path(bad).is_err(), "{bad}");
        }
    }
}
