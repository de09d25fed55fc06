//! Every error the host answers with, and the one place that maps it to a
//! status code, a reason phrase and whether the connection survives.
//!
//! Errors found while *framing* a request (malformed head, bad lengths,
//! smuggling shapes, limits) close the connection: once framing is in doubt,
//! the next byte cannot be trusted to start a request. Errors found after a
//! request was framed cleanly (404, 405, a rejected parameter, a failing
//! guest) leave a keep-alive connection open.

use std::borrow::Cow;

/// What went wrong, at the granularity a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request line or a header is not valid HTTP/1.1 (400, close).
    Malformed,
    /// A declared parameter is missing or breaks its rule (400, keep-alive).
    BadParameter,
    /// A declared token is missing, malformed, forged or expired (401, with
    /// `WWW-Authenticate`, keep-alive).
    Unauthorized,
    /// A WebSocket upgrade that is not a good one, or to a path that is
    /// not a stream's (400, keep-alive: the request was framed cleanly).
    BadUpgrade,
    /// A WebSocket upgrade from an `Origin` not in `--ws-allowed-origins`
    /// (403, keep-alive).
    OriginNotAllowed,
    /// No route for the path (404).
    NotFound,
    /// The route exists but does not take this method (405, with `Allow`).
    MethodNotAllowed,
    /// The request did not complete within the request timeout (408, close).
    Timeout,
    /// The body is larger than the cap (413, close).
    BodyTooLarge,
    /// The request's parameters encode to more than the guest may be handed
    /// (413, keep-alive: the request itself was framed cleanly).
    ArgsTooLarge,
    /// The handler takes a JSON body and the request's is of another type
    /// (415, keep-alive).
    UnsupportedMediaType,
    /// The request target is longer than the head limit (414, close).
    TargetTooLong,
    /// The request head is too large or has too many headers (431, close).
    HeadTooLarge,
    /// The guest trapped, overran its deadline or returned garbage (500).
    Guest,
    /// A transfer coding we do not implement (501, close).
    NotImplemented,
    /// The server is at its connection limit, or shutting down (503, close).
    Unavailable,
    /// The handler is suspended after overrunning its deadline (503).
    Suspended,
    /// The call's transaction stayed in conflict through its re-runs: nothing
    /// of it happened (503, Retry-After).
    TxConflict,
    /// The engine could not be reached for the call's commit: nothing of it
    /// happened (503, Retry-After).
    EngineDown,
    /// The call's commit was sent and its outcome is not known (503,
    /// Retry-After, `House-Outcome: unknown`).
    OutcomeUnknown,
    /// A WebSocket upgrade of another protocol version (426, with
    /// `Sec-WebSocket-Version: 13`, keep-alive).
    UpgradeRequired,
    /// Not HTTP/1.0 or HTTP/1.1 (505, close).
    Version,
}

/// An error response: its kind plus a one-line reason for the client.
#[derive(Debug, Clone)]
pub struct HttpError {
    pub kind: ErrorKind,
    pub reason: Cow<'static, str>,
    /// For 405: the methods the route does take.
    pub allow: Option<String>,
    /// For 401: the `WWW-Authenticate` challenge.
    pub challenge: Option<String>,
}

impl HttpError {
    pub fn new(kind: ErrorKind, reason: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError { kind, reason: reason.into(), allow: None, challenge: None }
    }

    /// A 401 for a bearer token: `error` is RFC 6750's code (`None` when no
    /// token was given), `why` the short description.
    pub fn unauthorized(error: Option<&str>, why: impl Into<Cow<'static, str>>) -> HttpError {
        let why = why.into();
        let challenge = match error {
            // A claim's refusal may quote what the token said: inside the
            // quoted string its quotes and backslashes become apostrophes
            // (RFC 6750 3: error_description is %x20-21 / %x23-5B / %x5D-7E).
            Some(code) => {
                let text: String = why
                    .chars()
                    .map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c })
                    .collect();
                format!("Bearer realm=\"house\", error=\"{code}\", error_description=\"{text}\"")
            }
            None => "Bearer realm=\"house\"".to_owned(),
        };
        HttpError { kind: ErrorKind::Unauthorized, reason: why, allow: None, challenge: Some(challenge) }
    }

    pub fn malformed(reason: impl Into<Cow<'static, str>>) -> HttpError {
        HttpError::new(ErrorKind::Malformed, reason)
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: String) -> HttpError {
        HttpError {
            kind: ErrorKind::MethodNotAllowed,
            reason: format!("{path} does not take {method}; it takes {allow}").into(),
            allow: Some(allow),
            challenge: None,
        }
    }

    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::Malformed | ErrorKind::BadParameter | ErrorKind::BadUpgrade => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::OriginNotAllowed => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Timeout => 408,
            ErrorKind::BodyTooLarge | ErrorKind::ArgsTooLarge => 413,
            ErrorKind::TargetTooLong => 414,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::UpgradeRequired => 426,
            ErrorKind::HeadTooLarge => 431,
            ErrorKind::Guest => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::Unavailable
            | ErrorKind::Suspended
            | ErrorKind::TxConflict
            | ErrorKind::EngineDown
            | ErrorKind::OutcomeUnknown => 503,
            ErrorKind::Version => 505,
        }
    }

    /// Whether the connection must close after this response.
    pub fn closes(&self) -> bool {
        !matches!(
            self.kind,
            ErrorKind::BadParameter
                | ErrorKind::Unauthorized
                | ErrorKind::BadUpgrade
                | ErrorKind::OriginNotAllowed
                | ErrorKind::UpgradeRequired
                | ErrorKind::UnsupportedMediaType
                | ErrorKind::ArgsTooLarge
                | ErrorKind::NotFound
                | ErrorKind::MethodNotAllowed
                | ErrorKind::Guest
                | ErrorKind::Suspended
                | ErrorKind::TxConflict
                | ErrorKind::EngineDown
                | ErrorKind::OutcomeUnknown
        )
    }

    /// The headers that go with it: `Allow` for a 405; `Retry-After` (in
    /// seconds) where trying again later may succeed, and what became of
    /// the request where that is unknown.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(allow) = &self.allow {
            headers.push(("Allow".to_owned(), allow.clone()));
        }
        if let Some(challenge) = &self.challenge {
            headers.push(("WWW-Authenticate".to_owned(), challenge.clone()));
        }
        if matches!(self.kind, ErrorKind::TxConflict | ErrorKind::EngineDown | ErrorKind::OutcomeUnknown) {
            headers.push(("Retry-After".to_owned(), "1".to_owned()));
        }
        if self.kind == ErrorKind::UpgradeRequired {
            headers.push(("Sec-WebSocket-Version".to_owned(), "13".to_owned()));
        }
        if self.kind == ErrorKind::OutcomeUnknown {
            headers.push(("House-Outcome".to_owned(), "unknown".to_owned()));
        }
        headers
    }
}

/// The reason phrase for the status codes house sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
