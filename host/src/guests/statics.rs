//! A module's static files: read from its `house.static:` custom sections
//! at load (docs/ABI.md, "Static files"), served by the host itself with an
//! ETag, `304 Not Modified` and HEAD, without instantiating anything. The
//! paths are exact route keys, never joined to a directory: there is no
//! file system under them to traverse.

use std::sync::Arc;

use house_abi::statics::{check_content_type, check_path, parse_section_name};
use sha2::{Digest, Sha256};
use wasmparser::{Parser, Payload};

/// One file, ready to serve.
#[derive(Debug)]
pub struct StaticFile {
    pub path: String,
    pub content_type: String,
    pub body: Arc<[u8]>,
    /// A strong validator of the content: `"` + 16 hex digits of its
    /// SHA-256 + `"`.
    pub etag: String,
    /// `ETag` and `Cache-Control`, sent with the 200 and the 304 alike.
    pub headers: Vec<(String, String)>,
}

/// Browsers revalidate on every use (a 304 costs one round trip and no
/// body): a hot reload must show the new page at once, and a path names
/// whatever the module serves now, not one version forever.
const CACHE_CONTROL: &str = "no-cache";

/// The static files of a module, checked; an error refuses the module.
pub fn read(module: &[u8]) -> Result<Vec<StaticFile>, String> {
    let mut files: Vec<StaticFile> = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        let Ok(Payload::CustomSection(section)) = payload else { continue };
        let Some(rest) = section.name().strip_prefix(house_abi::statics::SECTION_PREFIX) else { continue };
        let (path, content_type) = parse_section_name(section.name())
            .ok_or_else(|| format!("static file section {rest:?}: no content type"))?;
        check_path(path)?;
        check_content_type(content_type).map_err(|e| format!("static file {path}: {e}"))?;
        if files.iter().any(|f| f.path == path) {
            return Err(format!("static file {path} is in the module twice"));
        }
        let digest = Sha256::digest(section.data());
        let etag: String = format!("\"{}\"", digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>());
        files.push(StaticFile {
            path: path.to_owned(),
            content_type: content_type.to_owned(),
            body: section.data().into(),
            headers: vec![("ETag".into(), etag.clone()), ("Cache-Control".into(), CACHE_CONTROL.into())],
            etag,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Whether an `If-None-Match` value matches `etag` (RFC 9110 13.1.2: a
/// list of entity tags or `*`, compared weakly).
pub fn not_modified(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_etags_weakly() {
        assert!(not_modified("\"ab\"", "\"ab\""));
        assert!(not_modified("\"x\", W/\"ab\"", "\"ab\""));
        assert!(not_modified("*", "\"ab\""));
        assert!(!not_modified("\"abc\"", "\"ab\""));
        assert!(!not_modified("", "\"ab\""));
    }
}
