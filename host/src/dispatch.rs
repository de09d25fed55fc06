//! From a complete request to what the connection should do: route lookup,
//! parameter decoding and validation, starting the guest call and turning
//! what it returned into a response.
//!
//! Validation happens here, in the host, before anything is instantiated: a
//! request that breaks a rule costs no guest instance.

use std::sync::Arc;

use crate::conn::Request;
use crate::guests::engine::{CallFuture, CallOutput, Failure};
use crate::guests::manifest::Source;
use crate::guests::statics::{self, StaticFile};
use crate::guests::validate::Inputs;
use crate::guests::{self, Handler, Kind, Publication};
use crate::http::request::Head;
use crate::http::{ErrorKind, HttpError};
use crate::log::Log;
use crate::metrics::CallResult;
use crate::router::{Lookup, Routes, Target};
use crate::websocket::{MESSAGE, handshake};

use arc_swap::ArcSwap;

/// What to send back.
pub enum Outcome {
    Reply {
        status: u16,
        content_type: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Open an SSE stream: write its head and `first` (an already framed
    /// event), then keep the connection subscribed to `channels`.
    Stream {
        first: Vec<u8>,
        channels: Vec<String>,
        /// (channel, info) of the subscriptions made as a member.
        members: Vec<(String, String)>,
        /// Events of the channels' history the handler asked to show first.
        backlog: usize,
    },
    /// The loop's own counters, which only the loop can fill in.
    Stats,
    /// The metrics, which the loop renders with its gauges.
    Metrics,
    /// A module's static file: 200 with it, or 304 when the client's copy
    /// is current (`If-None-Match`).
    Static {
        file: Arc<StaticFile>,
        not_modified: bool,
    },
}

/// What answered a request, for the metrics: a guest handler (its path
/// pattern), one of the host's routes, or nothing.
#[derive(Clone, Default)]
pub enum Route {
    Guest(Arc<Handler>),
    Static(Arc<StaticFile>),
    Host(&'static str),
    #[default]
    Unmatched,
}

impl Route {
    pub fn label(&self) -> &str {
        match self {
            Route::Guest(h) => &h.spec.path,
            Route::Static(f) => &f.path,
            Route::Host(path) => path,
            Route::Unmatched => "unmatched",
        }
    }
}

/// The result of a dispatch, and the events it published (applied by the
/// loop after the response is queued: a failed call publishes nothing).
pub struct Dispatched {
    pub outcome: Result<Outcome, HttpError>,
    pub publishes: Vec<Publication>,
    pub route: Route,
}

pub struct Dispatcher {
    /// The routes of the guests loaded now, swapped whole by a reload (one
    /// snapshot for every loop); a request holds the one it started with.
    pub routes: Arc<ArcSwap<Routes>>,
    pub runtime: Arc<guests::Runtime>,
    /// `--sse-buffer-bytes`, which a stream's first event must fit.
    pub sse_buffer: usize,
    /// `/_house/metrics` is served (not `--no-metrics`).
    pub metrics: bool,
    /// Which port answers what (`--admin-bind`).
    pub ports: Ports,
    /// The keys tokens and signed cookies are verified (and signed) with.
    pub identity: Arc<crate::identity::Identity>,
    /// `--ws-allowed-origins`.
    pub ws_origins: Vec<String>,
}

/// Which of the two listeners answers the host's own routes (`/_house/*`)
/// and which the guests'.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ports {
    /// The host's routes on the public port too (`house dev`).
    pub admin_public: bool,
    /// `/_house/openapi.json` on the public port too (`--public-openapi`).
    pub public_openapi: bool,
}

impl Ports {
    /// Whether a request that came in on the admin listener (`admin`) or
    /// the public one may reach `target`. The admin port serves the host's
    /// routes only; the public one the guests' (and what was opted in).
    fn serves(self, target: &Target, admin: bool) -> bool {
        match target {
            Target::Guest(_) | Target::Static(_) | Target::Home => !admin,
            Target::OpenApi => admin || self.admin_public || self.public_openapi,
            Target::GuestsIndex | Target::Stats | Target::Metrics => admin || self.admin_public,
        }
    }
}

/// Where a dispatch stands once the request has been looked at.
pub enum Begun {
    /// Answered without a guest: an error, an index, the stats.
    Done(Dispatched),
    /// A guest call to run (in slices, see `calls`), then [`Dispatcher::finish`].
    Call { handler: Arc<Handler>, call: CallFuture },
}

impl Dispatcher {
    /// Routes and validates `req`, which came in on the admin listener
    /// (`admin`) or the public one; a guest request becomes a call to run.
    pub fn begin(&self, req: &Request, admin: bool) -> Begun {
        let mut route = Route::Unmatched;
        let done = |outcome, route| Begun::Done(Dispatched { outcome, publishes: Vec::new(), route });
        match self.route(req, admin, &mut route) {
            Ok(Routed::Outcome(outcome)) => done(Ok(outcome), route),
            Ok(Routed::Call(handler, args)) => match self.runtime.call_async(handler.clone(), args) {
                Ok(call) => Begun::Call { handler, call },
                Err(failure) => done(Err(refusal(&handler, failure)), route),
            },
            Err(err) => done(Err(err), route),
        }
    }

    /// Routes and validates; `label` says what answered, from the moment
    /// that is known (a 400 of a guest route is that route's).
    fn route(&self, req: &Request, admin: bool, label: &mut Route) -> Result<Routed, HttpError> {
        let head = &req.head;
        let routes = self.routes.load();
        let (route, captures) = match routes.router.lookup(&head.path, &head.method) {
            // Another port's route is not there at all, as far as this
            // one can tell (a 404, not a 403 that says it exists).
            Lookup::Found(route, _) | Lookup::MethodNotAllowed(_, route)
                if !self.ports.serves(&route.target, admin) =>
            {
                let why = if admin { "; this is the admin port, which serves /_house/ only" } else { "" };
                return Err(HttpError::new(ErrorKind::NotFound, format!("no handler for {}{why}", head.path)));
            }
            Lookup::Found(route, captures) => (route, captures),
            Lookup::NotFound => {
                return Err(HttpError::new(ErrorKind::NotFound, format!("no handler for {}", head.path)));
            }
            Lookup::MethodNotAllowed(..) if head.method == MESSAGE => {
                return Err(HttpError::new(
                    ErrorKind::NotFound,
                    format!("no message handler at {}: this socket takes no messages", head.path),
                ));
            }
            Lookup::MethodNotAllowed(allowed, _) => {
                return Err(HttpError::method_not_allowed(&head.method, &head.path, allowed.allow_header()));
            }
        };
        *label = match &route.target {
            Target::Guest(handler) => Route::Guest(handler.clone()),
            Target::Static(file) => Route::Static(file.clone()),
            Target::GuestsIndex => Route::Host("/_house/guests"),
            Target::Stats => Route::Host("/_house/stats"),
            Target::Metrics => Route::Host("/_house/metrics"),
            Target::OpenApi => Route::Host("/_house/openapi.json"),
            Target::Home => Route::Host("/"),
        };
        if head.websocket && head.method != MESSAGE {
            self.upgrade(head, &route.target)?;
        }
        let handler = match &route.target {
            Target::Metrics if !self.metrics => {
                return Err(HttpError::new(ErrorKind::NotFound, "metrics are off (--no-metrics)"));
            }
            Target::Metrics => return Ok(Routed::Outcome(Outcome::Metrics)),
            Target::OpenApi => return Ok(json_reply(&routes.openapi)),
            Target::GuestsIndex => return Ok(json_reply(&(routes.index)())),
            Target::Stats => return Ok(Routed::Outcome(Outcome::Stats)),
            Target::Home => {
                return Ok(Routed::Outcome(Outcome::Reply {
                    status: 200,
                    content_type: "text/html; charset=utf-8".into(),
                    headers: vec![("Cache-Control".into(), "no-cache".into())],
                    body: routes.home.as_bytes().to_vec(),
                }));
            }
            Target::Static(file) => {
                let not_modified = header_fields(&head.raw_headers)
                    .filter(|(name, _)| name == "if-none-match")
                    .any(|(_, value)| std::str::from_utf8(value).is_ok_and(|v| statics::not_modified(v, &file.etag)));
                return Ok(Routed::Outcome(Outcome::Static { file: file.clone(), not_modified }));
            }
            Target::Guest(handler) => handler,
        };

        let spec = &handler.spec;
        let mut inputs = Inputs { path: captures, identity: Some(&self.identity), ..Inputs::default() };
        let bad = |e: String| HttpError::new(ErrorKind::BadParameter, e);
        inputs.params.extend_from_urlencoded(head.query.as_bytes()).map_err(bad)?;
        let body_param = spec.params.iter().find(|p| p.source == Source::Body);
        if body_param.is_some() {
            if !req.body.is_empty() && !head.json_body {
                return Err(HttpError::new(
                    ErrorKind::UnsupportedMediaType,
                    "the body must be Content-Type: application/json",
                ));
            }
            let text = std::str::from_utf8(&req.body).map_err(|_| bad("body: not valid UTF-8".into()))?;
            inputs.body = Some(text);
        } else if head.form_body {
            inputs.params.extend_from_urlencoded(&req.body).map_err(bad)?;
        }
        // A message handler shares its socket's query with the stream
        // handler that opened it: it takes what it declares of it.
        if head.method != MESSAGE {
            guests::validate::check_known(&spec.params, &inputs.params)?;
        }
        let wants = |source| spec.params.iter().any(|p| p.source == source);
        let token = wants(Source::Token);
        if wants(Source::Header) || wants(Source::Cookie) || token {
            // Only what is declared is looked at (an undeclared header that
            // is not UTF-8 is none of our business).
            let declared = |name: &str| spec.params.iter().any(|p| p.source == Source::Header && p.name == name);
            for (name, value) in header_fields(&head.raw_headers) {
                let cookie = name == "cookie" && (wants(Source::Cookie) || token);
                let authorization = token && name == "authorization";
                if !cookie && !authorization && !declared(&name) {
                    continue;
                }
                let value = std::str::from_utf8(value).map_err(|_| bad(format!("header {name}: not valid UTF-8")))?;
                if cookie {
                    inputs.cookies.extend(cookies(value));
                }
                if authorization {
                    // RFC 6750: `Bearer` (any case), one space, the token.
                    let bearer = value.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer"));
                    inputs.bearer = bearer.map(|(_, t)| t.trim());
                }
                if declared(&name) {
                    inputs.headers.push((name, value.to_owned()));
                }
            }
        }
        let args = guests::validate::encode_args(&spec.params, &inputs)?;
        let args_budget = self.runtime.limits().budgets.args_bytes;
        if args.len() > args_budget {
            return Err(HttpError::new(
                ErrorKind::ArgsTooLarge,
                format!("the parameters take {} bytes, over this server's limit of {args_budget}", args.len()),
            ));
        }
        Ok(Routed::Call(handler.clone(), args))
    }

    /// Whether `head` may become a WebSocket on `target`: a stream
    /// handler's path, and a good handshake (before the guest runs).
    fn upgrade(&self, head: &Head, target: &Target) -> Result<(), HttpError> {
        if !matches!(target, Target::Guest(h) if h.spec.kind == Kind::Stream) {
            return Err(HttpError::new(
                ErrorKind::BadUpgrade,
                format!("{} is not a stream: it does not open a WebSocket", head.path),
            ));
        }
        self.handshake(head).map(drop)
    }

    /// The handshake's `Sec-WebSocket-Accept`, or why it is refused.
    pub fn handshake(&self, head: &Head) -> Result<String, HttpError> {
        let fields: Vec<(String, String)> = header_fields(&head.raw_headers)
            .map(|(name, value)| (name, String::from_utf8_lossy(value).into_owned()))
            .collect();
        let fields = fields.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        handshake::accept(&head.method, fields, &self.ws_origins).map_err(|refusal| {
            let kind = match refusal.status {
                403 => ErrorKind::OriginNotAllowed,
                426 => ErrorKind::UpgradeRequired,
                _ => ErrorKind::BadUpgrade,
            };
            HttpError::new(kind, refusal.reason)
        })
    }

    /// What of an upgrade request's header lines its socket keeps for its
    /// messages: those the path's message handler may read (its declared
    /// headers, and `Cookie` and `Authorization` for its cookies and token),
    /// not the browser's few hundred bytes of others, for every idle socket.
    pub fn socket_headers(&self, head: &Head) -> Vec<u8> {
        let routes = self.routes.load();
        let Lookup::Found(route, _) = routes.router.lookup(&head.path, MESSAGE) else { return Vec::new() };
        let Target::Guest(handler) = &route.target else { return Vec::new() };
        let params = &handler.spec.params;
        let wanted = |name: &str| {
            name == "cookie"
                || name == "authorization"
                || params.iter().any(|p| p.source == Source::Header && p.name == name)
        };
        let mut kept = Vec::new();
        for line in head.raw_headers.split_inclusive(|&b| b == b'\n') {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            if std::str::from_utf8(name).is_ok_and(|n| wanted(&n.to_ascii_lowercase())) {
                kept.extend_from_slice(line);
            }
        }
        kept
    }

    /// Turns what a guest call returned into what to send and publish.
    pub fn finish(&self, handler: &Arc<Handler>, result: Result<CallOutput, Failure>, log: &mut Log) -> Dispatched {
        let mut publishes = Vec::new();
        let outcome = self.outcome(handler, result, log, &mut publishes);
        Dispatched { outcome, publishes, route: Route::Guest(handler.clone()) }
    }

    fn outcome(
        &self,
        handler: &Handler,
        result: Result<CallOutput, Failure>,
        log: &mut Log,
        publishes: &mut Vec<Publication>,
    ) -> Result<Outcome, HttpError> {
        let out = result.map_err(|failure| {
            if let Failure::Failed(e) = &failure {
                for line in &e.logs {
                    log.line(format_args!("guest {}: {}: {line}", handler.module.file, handler.spec.name));
                }
                log.line(format_args!("guest {}: {}: {}", handler.module.file, handler.spec.name, e.reason));
            }
            refusal(handler, failure)
        })?;
        for line in &out.logs {
            log.line(format_args!("guest {}: {}: {line}", handler.module.file, handler.spec.name));
        }
        let content_type = out.content_type.unwrap_or_else(|| handler.spec.content_type.clone());
        let outcome = match handler.spec.kind {
            // A stream handler may refuse with a status of its own; then it
            // is an ordinary response and subscribes nothing.
            Kind::Stream if out.status == 200 => {
                // The runtime checked that it is UTF-8 and fits a buffer.
                let data = String::from_utf8_lossy(&out.body).into_owned();
                let data = if data.is_empty() { "Listening...".to_owned() } else { data };
                let first = crate::sse::Event { data, ..Default::default() };
                let first = crate::sse::frame(&first);
                Outcome::Stream { first, channels: out.subscriptions, members: out.members, backlog: out.backlog }
            }
            _ => {
                let headers = self.sign_cookies(out.headers);
                Outcome::Reply { status: out.status, content_type, headers, body: out.body }
            }
        };
        // A call that answered a server error has failed: what it published
        // is dropped with it (its writes were, by the runtime).
        if !matches!(&outcome, Outcome::Reply { status: 500.., .. }) {
            *publishes = out.publishes;
        }
        Ok(outcome)
    }

    /// A handler's `House-Signed-Cookie: name=value; attributes` becomes
    /// `Set-Cookie: name=value.SIGNATURE; attributes`.
    fn sign_cookies(&self, mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
        for (name, value) in &mut headers {
            if !name.eq_ignore_ascii_case(house_abi::SIGNED_COOKIE_HEADER) {
                continue;
            }
            let (pair, attributes) = value.split_once(';').map_or((value.as_str(), ""), |(p, a)| (p, a));
            let (cookie, plain) = pair.split_once('=').unwrap_or((pair, ""));
            let signed = self.identity.cookies.sign(cookie.trim(), plain.trim());
            let sep = if attributes.is_empty() { "" } else { ";" };
            *value = format!("{}={signed}{sep}{attributes}", cookie.trim());
            *name = "Set-Cookie".to_owned();
        }
        headers
    }
}

/// A 200 of JSON the route table holds ready.
fn json_reply(json: &str) -> Routed {
    Routed::Outcome(Outcome::Reply {
        status: 200,
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: json.as_bytes().to_vec(),
    })
}

/// The header fields of a raw head (lines `Name: value`, already checked
/// by httparse), names in lower case.
fn header_fields(raw: &[u8]) -> impl Iterator<Item = (String, &[u8])> {
    raw.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&line[..colon]).ok()?.to_ascii_lowercase();
        Some((name, line[colon + 1..].trim_ascii()))
    })
}

/// The `name=value` pairs of a `Cookie` header (RFC 6265: `; `-separated;
/// a value may be quoted; nothing is decoded).
fn cookies(value: &str) -> impl Iterator<Item = (String, String)> + '_ {
    value.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        Some((name.trim().to_owned(), value.to_owned()))
    })
}

/// A request routed to something.
enum Routed {
    Outcome(Outcome),
    /// A guest handler and its encoded arguments.
    Call(Arc<Handler>, Vec<u8>),
}

/// The answer to a call that failed or never ran (the reason of a failure
/// goes to the log, not to the client).
fn refusal(handler: &Handler, failure: Failure) -> HttpError {
    match failure {
        Failure::Suspended(left) => HttpError::new(
            ErrorKind::Suspended,
            format!(
                "handler {} is suspended for {} s: it kept overrunning its CPU deadline or budgets",
                handler.spec.name,
                left.as_secs().max(1)
            ),
        ),
        Failure::Busy(max) => {
            HttpError::new(ErrorKind::Unavailable, format!("server is at its limit of {max} guest calls in flight"))
        }
        Failure::Failed(e) => match e.kind {
            CallResult::Conflict => HttpError::new(
                ErrorKind::TxConflict,
                "too many concurrent writes to the same data: nothing was changed; try again",
            ),
            CallResult::Unavailable => {
                HttpError::new(ErrorKind::EngineDown, "the data store is unavailable: nothing was changed; try again")
            }
            CallResult::Unknown => HttpError::new(
                ErrorKind::OutcomeUnknown,
                "the data store did not confirm the change: it may or may not have been made",
            ),
            _ => HttpError::new(ErrorKind::Guest, format!("handler {} failed", handler.spec.name)),
        },
    }
}
