//! The contract between the house host and its guests, in one place
//! (docs/ABI.md is its prose): the parameter types and rules with their
//! checks and 400 texts, the import status codes and bounds, and the wire
//! encoding of the argument and response blocks.
//!
//! Both sides use it: the host checks manifests and validates requests with
//! [`rules`] and [`validate`], the SDK's macros refuse at compile time what
//! the host would refuse at load with the same functions, and the SDK reads
//! arguments and writes responses with [`wire`]. Adding a type or a rule
//! touches this crate (and the macros' attribute syntax), nothing else.
//!
//! `no_std` (with `alloc`): it is linked into every Rust guest.

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(feature = "validate")]
pub mod body;
pub mod kv;
#[cfg(feature = "validate")]
pub mod manifest;
pub mod path;
pub mod rules;
pub mod statics;
pub mod types;
#[cfg(feature = "validate")]
pub mod validate;
pub mod wire;

pub use path::route_shape;
pub use rules::{Bounds, Rules};
pub use types::{Kind, Source, Ty};

/// The ABI version this crate describes; a module exports it as
/// `house_abi_version`. Additions are additive: version-1 modules load.
pub const ABI_VERSION: i32 = 1;

/// The optional export (a data symbol: an immutable i32 global holding its
/// address) of a buffer the host writes the argument block into when it
/// fits, instead of calling `house_alloc` first: one call fewer per request.
pub const ARGS_EXPORT: &str = "house_args";

/// The export (as [`ARGS_EXPORT`]) of the u32 that says how many bytes the
/// buffer holds. Both are read once, at load, from a fresh instance.
pub const ARGS_SIZE_EXPORT: &str = "house_args_size";

/// The size of the SDK's argument buffer: larger blocks go through
/// `house_alloc`.
pub const ARGS_BUFFER_BYTES: usize = 4096;

/// The longest path a handler may claim, in bytes.
pub const MAX_PATH: usize = 2048;

/// The longest channel name, in bytes.
pub const MAX_CHANNEL: usize = 256;

/// The most bytes one `random` call returns.
pub const MAX_RANDOM: usize = 1024;

/// The longest `id: HI-LO\n` line the host adds to an event (two u64s).
pub const ID_LINE_MAX: usize = "id: ".len() + 20 + 1 + 20 + 1;

/// A handler's content type when its manifest names none.
pub const DEFAULT_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Headers the host sets itself; a response that sets one is refused.
pub const RESERVED_HEADERS: [&str; 6] =
    ["content-length", "transfer-encoding", "connection", "content-type", "date", "server"];

/// The response header (consumed by the host, never sent) by which a
/// handler sets a cookie the host signs: its value is a `Set-Cookie`
/// value, `name=value; attributes`. Since ABI 1 (additive).
pub const SIGNED_COOKIE_HEADER: &str = "house-signed-cookie";

/// The methods a handler may declare, in the order an `Allow` lists them.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// A handler's methods when its manifest names none (GET implies HEAD).
pub fn default_methods(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Closing => &["GET", "POST"],
        Kind::Stream => &["GET"],
        // Reached by a WebSocket message, never by an HTTP method.
        Kind::Message => &[],
    }
}

/// The names a module exports for the host (docs/ABI.md, "Exports"): the
/// loader looks for them, the SDK's macros and `house.h` write them.
pub mod exports {
    /// `() -> i32`: the ABI version the module speaks ([`ABI_VERSION`](crate::ABI_VERSION)).
    pub const ABI_VERSION: &str = "house_abi_version";
    /// `(size: i32) -> i32`: memory for an argument block.
    pub const ALLOC: &str = "house_alloc";
    /// `house_handler.NAME`: `(args: i32, len: i32) -> i64`, the handler.
    pub const HANDLER_PREFIX: &str = "house_handler.";
    /// `house_meta.NAME`: `() -> i64`, its manifest entry (JSON).
    pub const META_PREFIX: &str = "house_meta.";
    /// `house_type.NAME`: `() -> i64`, a named type's manifest entry.
    pub const TYPE_PREFIX: &str = "house_type.";
}

/// The functions the host offers (docs/ABI.md, "Imports"), in import
/// module [`MODULE`](imports::MODULE): each name and its wasm signature.
/// The host's linker defines exactly these (a test checks it), and so do
/// the SDK and `house.h` (tests check them).
pub mod imports {
    /// The wasm value types the imports take and return.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Val {
        /// A 32-bit integer (pointers and lengths too: wasm32).
        I32,
        /// A 64-bit integer.
        I64,
    }

    /// One import: its name, parameters and results.
    #[derive(Debug, Clone, Copy)]
    pub struct Import {
        /// Its name in the import module.
        pub name: &'static str,
        /// Its parameters, in order.
        pub params: &'static [Val],
        /// Its result, if it has one.
        pub results: &'static [Val],
    }

    /// The import module every one of them is in.
    pub const MODULE: &str = "house";

    use Val::{I32, I64};
    const fn f(name: &'static str, params: &'static [Val], results: &'static [Val]) -> Import {
        Import { name, params, results }
    }

    /// Every import. Strings are (pointer, length) pairs of UTF-8.
    pub const ALL: [Import; 13] = [
        f("subscribe", &[I32, I32], &[I32]),
        f("subscribe_as", &[I32, I32, I32, I32], &[I32]),
        f("presence", &[I32, I32, I32], &[I64]),
        f("backlog", &[I32], &[I32]),
        f("publish", &[I32, I32, I32, I32, I32, I32, I32, I32, I64], &[I32]),
        f("random", &[I32, I32], &[I32]),
        f("log", &[I32, I32], &[]),
        f("kv_get", &[I32, I32], &[I64]),
        f("kv_read", &[I32, I32], &[I32]),
        f("kv_set", &[I32, I32, I32, I32, I64], &[I32]),
        f("kv_delete", &[I32, I32], &[I32]),
        f("kv_incr", &[I32, I32, I64, I32], &[I32]),
        f("kv_list", &[I32, I32, I32, I32], &[I64]),
    ];

    /// The import called `name`, if the host offers one.
    pub fn find(name: &str) -> Option<&'static Import> {
        ALL.iter().find(|i| i.name == name)
    }
}

/// What the imports return: 0 is success, negative values say what the
/// guest asked for wrongly (bad pointers and bad UTF-8 trap instead).
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// A channel name over [`MAX_CHANNEL`](crate::MAX_CHANNEL) bytes.
    pub const BAD_CHANNEL: i32 = -1;
    /// An event field with a line break (or an id that is not one).
    pub const BAD_FIELD: i32 = -2;
    /// `subscribe` or `backlog` from a handler that is not a stream.
    pub const NOT_A_STREAM: i32 = -3;
    /// A key or value over its bound (`--kv-key-bytes`, `--kv-value-bytes`).
    pub const KV_TOO_LARGE: i32 = -4;
    /// Over the operations of one call (`--kv-ops`) or the module's bytes
    /// (`--kv-module-mb`).
    pub const KV_BUDGET: i32 = -5;
    /// An increment of a value that is not a decimal integer.
    pub const KV_NOT_INTEGER: i32 = -6;
    /// The store failed (the host's log says why).
    pub const KV_UNAVAILABLE: i32 = -7;
    /// `subscribe_as`: member info over `--presence-info-bytes`, or with
    /// CR, LF or NUL. Since ABI 1 (additive).
    pub const PRESENCE_INFO: i32 = -8;
    /// `kv_get`: no such key.
    pub const KV_ABSENT: i64 = -1;
}

/// The path the article derives from a handler's name:
/// `send_message` -> `/send-message`, `root` -> `/`.
pub fn path_from_name(name: &str) -> alloc::string::String {
    if name == "root" {
        return "/".into();
    }
    alloc::format!("/{}", name.replace('_', "-"))
}

/// Checks a content type (a handler's, a static file's): not empty, no
/// control characters.
pub fn check_content_type(ct: &str) -> Result<(), alloc::string::String> {
    if ct.is_empty() || ct.bytes().any(|b| b.is_ascii_control()) {
        return Err(alloc::format!("invalid content type {ct:?}"));
    }
    Ok(())
}

/// Statuses one handler may declare at most (`statuses(..)`).
pub const MAX_STATUSES: usize = 16;

/// Checks a closing handler's declared statuses (`statuses(201, 409)`):
/// each a real status (100-599), none twice, at most [`MAX_STATUSES`].
/// They document what it answers (OpenAPI, `house check`); the host
/// does not refuse another one at run time.
pub fn check_statuses(statuses: &[u16]) -> Result<(), alloc::string::String> {
    if statuses.len() > MAX_STATUSES {
        return Err(alloc::format!("at most {MAX_STATUSES} statuses, not {}", statuses.len()));
    }
    for (i, s) in statuses.iter().enumerate() {
        if !(100..=599).contains(s) {
            return Err(alloc::format!("status {s} is not between 100 and 599"));
        }
        if statuses[..i].contains(s) {
            return Err(alloc::format!("status {s} is declared twice"));
        }
    }
    Ok(())
}

/// A byte of an HTTP token (RFC 9110): header names, cookie names.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty HTTP token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Checks a keyword (already lower-cased): letters, digits, `-`, `_`, `.`;
/// why not, quoting it as a 400 would.
pub fn validate_keyword(keyword: &str) -> Result<(), alloc::string::String> {
    if !keyword.is_empty() && keyword.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Ok(());
    }
    Err(alloc::format!("{} is not a keyword (letters, digits, '-', '_', '.')", shown(keyword)))
}

/// A client's value quoted in an error, cut short: errors are one line.
pub fn shown(raw: &str) -> alloc::string::String {
    match raw.char_indices().nth(32) {
        Some((i, _)) => alloc::format!("{:?}...", &raw[..i]),
        None => alloc::format!("{raw:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_paths_like_the_article() {
        assert_eq!(path_from_name("send_message"), "/send-message");
        assert_eq!(path_from_name("root"), "/");
        assert_eq!(path_from_name("index"), "/index");
    }
}
