//! Write handlers for house, the event-driven HTTP server whose handlers
//! are WebAssembly modules (the contract they follow is `docs/ABI.md` in the
//! house repository).
//!
//! A handler is one declaration: an ordinary Rust function under
//! `#[handler(...)]`, whose parameters carry their rules. The macro writes
//! the manifest entry the host reads at load time and all the ABI glue; the
//! host decodes and validates every parameter **before** your function runs,
//! so the function receives typed values and never parses.
//!
//! ```
//! use house_sdk::prelude::*;
//!
//! // Served at /send-message (the name, with `_` as `-`), GET or POST.
//! #[handler(closing)]
//! fn send_message(
//!     #[param(chars(max = 16))] room: &str,
//!     #[param(chars(min = 1, max = 64))] name: &str,
//!     #[param(chars(min = 5, max = 256))] message: &str,
//! ) -> Result<(), HostError> {
//!     publish(room, &json::Object::new().str("name", name).str("message", message).build())
//! }
//!
//! // A stream handler answers with Server-Sent Events and keeps the
//! // connection subscribed to the channels it named.
//! #[handler(stream)]
//! fn source(#[param(chars(max = 16))] room: &str) -> Result<(), HostError> {
//!     subscribe(room)
//! }
//!
//! // Outside wasm32 the host imports are recorded, so a handler is testable
//! // as a plain function:
//! send_message("lobby", "ada", "hello there").unwrap();
//! let calls = house_sdk::testing::take();
//! assert_eq!(calls.published[0].channel, "lobby");
//! assert_eq!(calls.published[0].data, r#"{"name":"ada","message":"hello there"}"#);
//! ```
//!
//! # The declaration
//!
//! `#[handler(closing)]`, `#[handler(stream)]` or `#[handler(message)]`,
//! then optionally `path = "/explicit"`, `content_type = "text/plain"`
//! (default `text/html; charset=utf-8`) and `methods(GET, POST)` (default:
//! GET and POST for closing handlers, GET for streams; GET implies HEAD). A
//! function named `root` is served at `/`.
//!
//! A stream's path also takes a WebSocket, subscribed as the SSE stream
//! would be; a `message` handler at the same path answers what its client
//! sends, each message validated by the host as a request body is (a
//! `#[body]` of a `#[derive(Body)]` type), the socket's query, cookies and
//! token as its other inputs. It takes no `methods(..)`. docs/WEBSOCKET.md
//! has the protocol.
//!
//! # Parameter types
//!
//! | Rust type | manifest type | from the request |
//! |---|---|---|
//! | `&str`, `String` | `string` | any text |
//! | `&str` with `#[param(untyped)]` | `untyped` | only has to be present |
//! | `i64` | `integer` | `-12` |
//! | `f64` | `float` | `2.5` (finite) |
//! | `bool` | `boolean` | `true/false, 1/0, on/off, yes/no` |
//! | [`Keyword`] | `keyword` | letters, digits, `-_.`; lower-cased |
//! | [`Json`] | `json` | well-formed JSON text |
//! | `Vec<Keyword>`, `Vec<i64>` | `list-of-keyword`, `list-of-integer` | the name repeated: `?t=a&t=b` |
//! | a name from [`http_type!`] | that name | its base type, with its rules |
//!
//! # Rules
//!
//! Inside `#[param(...)]`: `chars(min = .., max = ..)` (length in
//! characters, not bytes), `range(min = .., max = ..)` (numbers; for a list,
//! each element), `one_of("a", "b")`, `items(min = .., max = ..)` (list
//! length), `default = ..` (the parameter becomes optional), and
//! `name = "wire-name"` when the request's name is not a Rust identifier.
//! A rule that cannot apply, or `min > max`, is a compile error:
//!
//! ```compile_fail
//! use house_sdk::prelude::*;
//! #[handler(closing)]
//! fn hello(#[param(chars(min = 70, max = 64))] name: &str) -> String { name.into() }
//! ```
//!
//! ```compile_fail
//! use house_sdk::prelude::*;
//! #[handler(closing)]
//! fn add(#[param(chars(max = 3))] n: i64) -> String { n.to_string() }
//! ```
//!
//! # Headers, cookies, path segments and JSON bodies
//!
//! A parameter comes from the query string (or a form body) unless it says
//! otherwise; it has the same types, rules and defaults wherever it comes
//! from, and nothing a handler does not declare reaches it:
//!
//! ```
//! use house_sdk::prelude::*;
//!
//! // GET /items/42 with `User-Agent` and a `sid` cookie.
//! #[handler(closing, path = "/items/{id}", content_type = "text/plain")]
//! fn item(
//!     #[param(range(min = 1))] id: i64,                          // a `{id}` path segment
//!     #[header("user-agent")] #[param(chars(max = 200))] agent: &str,
//!     #[cookie("sid")] #[param(default = "")] sid: &str,
//! ) -> String {
//!     format!("{id} for {agent} ({sid})")
//! }
//!
//! // POST /notes with `Content-Type: application/json` (anything else: 415).
//! #[handler(closing, methods(POST))]
//! fn notes(#[body] #[param(chars(max = 2000))] body: Json) -> Response {
//!     Response::json(body.0).status(201)
//! }
//! ```
//!
//! # Typed JSON bodies and verified identity
//!
//! A `#[derive(Body)]` struct is a JSON object the host checks field by
//! field before the call (every type and rule above; `Option` fields may be
//! absent or null, `Vec` fields are lists, another `Body` struct nests) and
//! hands over filled in: the guest parses no JSON. A 400 names the path,
//! `body.lines[1].qty: 0 is below the minimum 1`. `#[token]` takes a bearer
//! token's claims, verified by the host (401 otherwise), and
//! `#[cookie("sid", signed)]` a cookie the host signed for
//! [`Response::signed_cookie`]:
//!
//! ```
//! use house_sdk::prelude::*;
//!
//! #[derive(Body)]
//! struct Line {
//!     #[field(chars(min = 1, max = 12))]
//!     sku: Keyword,
//!     #[field(range(min = 1, max = 99))]
//!     qty: i64,
//! }
//!
//! #[derive(Body)]
//! struct Order {
//!     #[field(items(min = 1, max = 4))]
//!     lines: Vec<Line>,
//!     note: Option<String>,
//! }
//!
//! #[derive(Body)]
//! struct Claims {
//!     sub: &'static str,
//! }
//!
//! #[handler(closing, methods(POST))]
//! fn order(#[body] o: Order, #[token] who: Claims) -> String {
//!     format!("{} lines for {}", o.lines.len(), who.sub)
//! }
//!
//! #[handler(closing, methods(POST))]
//! fn hello(#[cookie("sid", signed)] #[param(default = "")] sid: &str) -> Response {
//!     if sid.is_empty() { Response::new("").signed_cookie(&Cookie::new("sid", "s1")) } else { Response::new(sid) }
//! }
//! ```
//!
//! # What a guest keeps
//!
//! Nothing between requests: every request runs in a fresh instance's
//! state (a new instance, or one reset whole), so statics start at their
//! initial values each time. What must last goes to
//! the host: channels ([`publish`], [`subscribe`]) and the key-value store
//! ([`kv`]: `get`, `set`, `set_with_ttl`, `delete`, `incr`, `list`; one
//! namespace per module file; a call that fails writes nothing).
//!
//! # Static files
//!
//! A page, its styles, scripts and images ship inside the module and are
//! served by the host itself (ETag, `304`, HEAD), without an instance, and
//! outside the memory image every handler call starts from:
//!
//! ```ignore
//! static_files! {
//!     "/index" => "index.html",                     // text/html, by extension
//!     "/data" => "data.bin" as "application/octet-stream",
//! }
//! ```
//!
//! Files are read at compile time, relative to the source file. A path that
//! is not plain (`..`, `%`, `//`, under `/_house/`), or that a GET handler of
//! the module also claims, is a compile error.
//!
//! # Named types
//!
//! The article's `define-http-type`: define a type once, with its rules, and
//! use it in any handler of the module. The manifest carries it.
//!
//! ```
//! use house_sdk::prelude::*;
//!
//! http_type! {
//!     /// A chat room: at most 16 characters.
//!     pub Room: string(chars(min = 1, max = 16));
//!     pub Percent: integer(range(min = 0, max = 100));
//! }
//!
//! #[handler(closing, content_type = "text/plain")]
//! fn progress(room: Room, #[param(default = 0)] done: Percent) -> String {
//!     format!("{room}: {done}%")
//! }
//! assert_eq!(progress("lobby", 40), "lobby: 40%");
//! ```
//!
//! # Responses
//!
//! Return a `String` or `&str` (200, the declared content type), `()`, a
//! [`Response`] (status, content type, headers; [`Response::json`],
//! [`Response::redirect`], [`Response::error`]), or a `Result` of any of these
//! (`Err(e)` is a 500 whose text is `e`). A stream handler's return value is
//! its first event (`()`: the host sends `Listening...`); returning a status
//! other than 200 refuses the stream with that response.
//!
//! ```
//! use house_sdk::prelude::*;
//!
//! #[handler(closing, methods(POST))]
//! fn login(#[param(chars(min = 1))] user: &str) -> Response {
//!     if user == "root" {
//!         return Response::error(403, "not you");
//!     }
//!     Response::redirect("/welcome").header("Set-Cookie", &format!("user={user}"))
//! }
//! assert_eq!(login("root").status, 403);
//! assert_eq!(login("ada").status, 303);
//! ```
//!
//! # Building
//!
//! A guest is a `cdylib` built for `wasm32-unknown-unknown`; see the README
//! for the profile that keeps it small. Guests should not depend on WASI: the
//! host provides nothing but its own imports.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;
// On wasm32, std only for the panic hook (default feature `panic-message`).
#[cfg(any(not(target_arch = "wasm32"), feature = "panic-message"))]
extern crate std;

mod abi;
mod args;
#[cfg(all(target_arch = "wasm32", feature = "bump-alloc"))]
mod bump;
mod host;
pub mod json;
pub mod kv;
mod response;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use abi::ABI_VERSION;
pub use args::{FromArg, Json, Keyword};
pub use host::{
    Event, HostError, log, presence, publish, publish_event, subscribe, subscribe_as, subscribe_with_backlog,
};
pub use house_sdk_macros::{Body, handler, http_type, static_files};
pub use response::{Cookie, IntoResponse, Response};

/// Everything a handler module usually needs.
pub mod prelude {
    pub use crate::json;
    pub use crate::kv;
    pub use crate::{
        Body, Cookie, Event, HostError, IntoResponse, Json, Keyword, Response, handler, http_type, log, presence,
        publish, publish_event, static_files, subscribe, subscribe_as, subscribe_with_backlog,
    };
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
}

/// Used by the macros' expansions; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::abi::{respond, text};

    /// Called first by every handler export: a panic's message and place
    /// go to the host's log (`log` import) before the trap that ends the
    /// call; without it the host sees only "unreachable executed". Set per
    /// call because each call starts from a fresh instance's state.
    #[inline]
    pub fn catch_panics() {
        #[cfg(all(target_arch = "wasm32", feature = "panic-message"))]
        std::panic::set_hook(alloc::boxed::Box::new(|info| crate::log(&alloc::format!("{info}"))));
    }
    pub use crate::args::{Args, FromArg};
    pub use alloc::vec::Vec;
}
