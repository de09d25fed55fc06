//! What a handler returns, and its encoding into the response block
//! (docs/ABI.md, "Response block").

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Display;

/// A response with a status, a content type and headers. Handlers can also
/// return a plain `String` or `&str` (200, the handler's content type), or
/// `()` (200, empty; for a stream, the default first event).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// 200 to 599.
    pub status: u16,
    /// `None`: the content type the handler declared.
    pub content_type: Option<String>,
    /// Extra headers, in order (one `Set-Cookie` per cookie).
    pub headers: Vec<(String, String)>,
    /// The body; for a stream's 200, its first event's data.
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with `body`.
    pub fn new(body: impl Into<Vec<u8>>) -> Response {
        Response { status: 200, content_type: None, headers: Vec::new(), body: body.into() }
    }

    /// A JSON body (already serialized: see [`crate::json`]).
    pub fn json(body: impl Into<String>) -> Response {
        Response::new(body.into()).content_type("application/json")
    }

    /// `303 See Other` to `location`: the answer to a form POST.
    pub fn redirect(location: &str) -> Response {
        Response::new("").status(303).header("Location", location)
    }

    /// A plain-text error, e.g. `Response::error(404, "no such room")`.
    pub fn error(status: u16, reason: impl Display) -> Response {
        let mut body = reason.to_string();
        body.push('\n');
        Response::new(body).status(status).content_type("text/plain; charset=utf-8")
    }

    /// The same response with another status.
    pub fn status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// The same response with another content type.
    pub fn content_type(mut self, content_type: &str) -> Response {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds a header. The host sets Content-Type, Content-Length,
    /// Connection, Date and Server itself, and refuses a response that sets
    /// them (or a header with CR/LF in it).
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl Response {
    /// Adds a `Set-Cookie` header; call it once per cookie.
    pub fn cookie(self, cookie: &Cookie<'_>) -> Response {
        let value = cookie.to_string();
        self.header("Set-Cookie", &value)
    }

    /// Adds a cookie the host signs (with its `--cookie-key-file`) before
    /// it sends it; a handler reads it back with `#[cookie("name", signed)]`,
    /// and an altered or made-up value arrives as absent. The guest never
    /// sees the key.
    pub fn signed_cookie(self, cookie: &Cookie<'_>) -> Response {
        let value = cookie.to_string();
        self.header(house_abi::SIGNED_COOKIE_HEADER, &value)
    }
}

/// A cookie to set, with its attributes (RFC 6265). The name must be an
/// HTTP token and the value cookie-safe (no spaces, `"`, `,`, `;` or `\`):
/// the host refuses control characters, the browser ignores the rest.
#[derive(Debug, Clone, Copy)]
pub struct Cookie<'a> {
    /// The cookie's name (an HTTP token).
    pub name: &'a str,
    /// Its value.
    pub value: &'a str,
    /// `Path=`; `Cookie::new` sets `/`.
    pub path: Option<&'a str>,
    /// Seconds; `Some(0)` deletes the cookie.
    pub max_age: Option<u64>,
    /// `HttpOnly`: the page's scripts cannot read it.
    pub http_only: bool,
    /// `Secure`: sent over HTTPS only.
    pub secure: bool,
    /// `Strict`, `Lax` or `None`.
    pub same_site: Option<&'a str>,
}

impl<'a> Cookie<'a> {
    /// `name=value; Path=/; HttpOnly; SameSite=Lax`: a session cookie the
    /// page's scripts cannot read.
    pub fn new(name: &'a str, value: &'a str) -> Cookie<'a> {
        Cookie { name, value, path: Some("/"), max_age: None, http_only: true, secure: false, same_site: Some("Lax") }
    }

    /// Kept this many seconds (0: deleted now).
    pub fn max_age(mut self, seconds: u64) -> Cookie<'a> {
        self.max_age = Some(seconds);
        self
    }

    /// Sent over HTTPS only.
    pub fn secure(mut self) -> Cookie<'a> {
        self.secure = true;
        self
    }
}

impl Display for Cookie<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}={}", self.name, self.value)?;
        if let Some(path) = self.path {
            write!(f, "; Path={path}")?;
        }
        if let Some(age) = self.max_age {
            write!(f, "; Max-Age={age}")?;
        }
        if self.http_only {
            f.write_str("; HttpOnly")?;
        }
        if self.secure {
            f.write_str("; Secure")?;
        }
        if let Some(same_site) = self.same_site {
            write!(f, "; SameSite={same_site}")?;
        }
        Ok(())
    }
}

/// Anything a handler may return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not something a handler can return",
    label = "a handler returns String, &str, (), Response, or a Result of one",
    note = "Err(e) answers 500 with e's text: its error type needs Display"
)]
pub trait IntoResponse {
    /// The response this value stands for.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl IntoResponse for &str {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new("")
    }
}

/// `Err(e)` answers 500 with `e` as its text, and logs it.
impl<T: IntoResponse, E: Display> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(r) => r.into_response(),
            Err(e) => {
                crate::log(&alloc::format!("handler error: {e}"));
                Response::error(500, e)
            }
        }
    }
}

impl Response {
    /// The response block.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let headers = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        house_abi::wire::encode_response(self.status, self.content_type.as_deref().unwrap_or(""), headers, &self.body)
    }
}
