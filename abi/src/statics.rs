//! Static files a module ships for the host to serve itself, without
//! instantiating anything: each is a custom section of the module named
//! `house.static:PATH CONTENT-TYPE` holding the file's bytes (custom
//! sections are not part of the instance's memory image, so they cost a
//! request to a handler nothing). The SDK's `static_files!` writes them;
//! any toolchain that can add a custom section can too.

pub use crate::check_content_type;
use alloc::format;
use alloc::string::String;

/// The prefix of a static file's custom section name.
pub const SECTION_PREFIX: &str = "house.static:";

/// The custom section name for a file served at `path` as `content_type`.
pub fn section_name(path: &str, content_type: &str) -> String {
    format!("{SECTION_PREFIX}{path} {content_type}")
}

/// The path and content type a custom section name gives, if it is a
/// static file's (the path has no space; the content type may).
pub fn parse_section_name(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(SECTION_PREFIX)?.split_once(' ')
}

/// Checks a static file's path: absolute, not under `/_house/`, no empty,
/// `.` or `..` segment, nothing a request path could not spell plainly
/// (`%`, `?`, `#`, `{`, `}`, `\`, spaces, control characters).
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("static path {path:?} must start with /"));
    }
    if path.len() > crate::MAX_PATH {
        return Err(format!("static path is {} bytes long; at most {}", path.len(), crate::MAX_PATH));
    }
    if path.starts_with("/_house/") {
        return Err(format!("static path {path:?} is under /_house/, which the host keeps"));
    }
    if let Some(c) = path.chars().find(|c| c.is_control() || c.is_whitespace() || "%?#{}\\".contains(*c)) {
        return Err(format!("static path {path:?} contains {c:?}"));
    }
    if path != "/" && path[1..].split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(format!("static path {path:?} has an empty, '.' or '..' segment"));
    }
    Ok(())
}

/// The content type of a file by its extension, for the common web types.
pub fn content_type_for(file: &str) -> Option<&'static str> {
    let ext = file.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "wasm" => "application/wasm",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "webmanifest" => "application/manifest+json",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_plain() {
        for ok in ["/", "/index", "/css/app.css", "/a-b_c.~d"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for bad in
            ["index", "/../etc/passwd", "/a/../b", "/a//b", "/a/", "/./a", "/%2e%2e/x", "/a b", "/_house/x", "/a?b"]
        {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        let name = section_name("/index", "text/html; charset=utf-8");
        assert_eq!(parse_section_name(&name), Some(("/index", "text/html; charset=utf-8")));
        assert_eq!(content_type_for("chat.CSS"), Some("text/css; charset=utf-8"));
        assert_eq!(content_type_for("README"), None);
    }
}
