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
    pub status: u16,
    /// `None`: the content type the handler declared.
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
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

    pub fn status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

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

/// Anything a handler may return.
pub trait IntoResponse {
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
        let mut out = Vec::with_capacity(self.body.len() + 32);
        let text = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        out.extend_from_slice(&u32::from(self.status).to_le_bytes());
        text(&mut out, self.content_type.as_deref().unwrap_or("").as_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (name, value) in &self.headers {
            text(&mut out, name.as_bytes());
            text(&mut out, value.as_bytes());
        }
        text(&mut out, &self.body);
        out
    }
}
