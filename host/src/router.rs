//! The route table: path -> what answers it, and which methods it takes.
//!
//! A path is literal (`/index`) or a pattern whose segments may be
//! parameters (`/items/{id}`). Literal paths are one hash lookup; patterns
//! are grouped by their number of segments and the most specific match
//! wins: at the first segment where two candidates differ, a literal beats
//! a parameter (`/items/new` beats `/items/{id}`, which beats `/{a}/{b}`).
//! Two patterns of the same shape (`/items/{id}`, `/items/{key}`) would be
//! ambiguous: they are one route, keyed by the shape (`/items/{}`), so the
//! loader and the registry see the conflict as they see two equal paths.
//!
//! The guest registry builds a new table whenever the set of loaded modules
//! changes and hands it to the event loop whole, so a lookup never sees a
//! half-updated table.

use std::collections::HashMap;
use std::sync::Arc;

use crate::guests::Handler;
use crate::guests::statics::StaticFile;
use crate::websocket::MESSAGE;

/// A set of methods, as a bitset: routes take few and lookups are hot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods(u8);

const NAMES: [&str; 7] = house_abi::METHODS;

impl Methods {
    pub const GET: Methods = Methods(1);
    /// A message handler's (bit 7, past the HTTP methods).
    pub const MESSAGE: Methods = Methods(1 << 7);

    /// Parses a method name; `None` for one house does not know.
    pub fn parse(name: &str) -> Option<Methods> {
        NAMES.iter().position(|m| *m == name).map(|i| Methods(1 << i))
    }

    pub fn union(self, other: Methods) -> Methods {
        Methods(self.0 | other.0)
    }

    /// GET implies HEAD.
    pub fn allows(self, method: &str) -> bool {
        let get_or_head = self.0 & 1 != 0 && method == "HEAD";
        let message = self.0 & Methods::MESSAGE.0 != 0 && method == MESSAGE;
        get_or_head || message || Methods::parse(method).is_some_and(|m| self.0 & m.0 != 0)
    }

    /// The value of an `Allow` header.
    pub fn allow_header(self) -> String {
        let with_head = if self.0 & 1 != 0 { self.0 | 2 } else { self.0 };
        let names: Vec<&str> = (0..NAMES.len()).filter(|i| with_head & (1 << i) != 0).map(|i| NAMES[i]).collect();
        names.join(", ")
    }

    /// Its methods' names (`MESSAGE` for a message handler's).
    pub fn names(self) -> Vec<&'static str> {
        let mut names: Vec<&str> = (0..NAMES.len()).filter(|i| self.0 & (1 << i) != 0).map(|i| NAMES[i]).collect();
        if self.0 & Methods::MESSAGE.0 != 0 {
            names.push(MESSAGE);
        }
        names
    }
}

/// What answers a route.
#[derive(Clone)]
pub enum Target {
    Guest(Arc<Handler>),
    /// A static file a module ships, served without an instance.
    Static(Arc<StaticFile>),
    /// `GET /_house/guests`: what is loaded.
    GuestsIndex,
    /// `GET /_house/stats`: connections, channels, subscribers.
    Stats,
    /// `GET /_house/metrics`: the Prometheus exposition.
    Metrics,
    /// `GET /_house/openapi.json`: the served handlers, as OpenAPI 3.1.
    OpenApi,
    /// `GET /` when no guest claims it: the pages the guests serve.
    Home,
}

#[derive(Clone)]
pub struct Route {
    pub methods: Methods,
    pub target: Target,
}

/// A path's parameter segments by name (decoded).
pub type Captures<'a> = Vec<(&'a str, String)>;

pub enum Lookup<'a> {
    /// The route, and what the path's parameter segments hold.
    Found(&'a Route, Captures<'a>),
    NotFound,
    /// The methods the path takes, and one of its routes (all of them
    /// are the host's, or one module's).
    MethodNotAllowed(Methods, &'a Route),
}

pub use house_abi::path::{Segment, parse_pattern};

/// The key two paths share if they would answer the same requests:
/// parameters become `{}`.
pub fn shape(path: &str) -> String {
    // The same rule as the macros' compile-time check (`route_shape`), for
    // the patterns that parse; anything else is a literal path.
    if !path.contains('{') || parse_pattern(path).is_err() {
        return path.to_owned();
    }
    house_abi::route_shape(path)
}

#[derive(Clone)]
struct Pattern {
    segments: Vec<Segment>,
    shape: String,
}

#[derive(Clone, Default)]
pub struct Router {
    /// Every route, by shape (a literal path is its own shape): one per
    /// set of methods (GET /todos and POST /todos may be two handlers).
    routes: HashMap<String, Vec<Route>>,
    /// The patterns among them, by number of segments.
    patterns: HashMap<usize, Vec<Pattern>>,
}

impl Router {
    /// The routes the host serves itself, before any guest is loaded.
    pub fn with_builtins() -> Router {
        let mut r = Router::default();
        r.insert("/_house/guests".into(), Route { methods: Methods::GET, target: Target::GuestsIndex });
        r.insert("/_house/stats".into(), Route { methods: Methods::GET, target: Target::Stats });
        r.insert("/_house/metrics".into(), Route { methods: Methods::GET, target: Target::Metrics });
        r.insert("/_house/openapi.json".into(), Route { methods: Methods::GET, target: Target::OpenApi });
        // A guest that serves `/` replaces it.
        r.insert("/".into(), Route { methods: Methods::GET, target: Target::Home });
        r
    }

    /// Adds a route, replacing whatever answered the same shape; returns
    /// what it replaced. A pattern that does not parse is a literal path
    /// (the manifest check refuses those before they get here).
    pub fn insert(&mut self, path: String, route: Route) -> Option<Vec<Route>> {
        let key = shape(&path);
        if key != path
            && let Ok(segments) = parse_pattern(&path)
        {
            let list = self.patterns.entry(segments.len()).or_default();
            list.retain(|p| p.shape != key);
            list.push(Pattern { segments, shape: key.clone() });
        }
        self.routes.insert(key, vec![route])
    }

    /// Adds a route beside those of the same shape (other methods of the
    /// same path, from the same module: the loader checked they do not
    /// overlap and spell the path alike).
    pub fn add(&mut self, path: String, route: Route) {
        match self.routes.get_mut(&shape(&path)) {
            Some(list) => list.push(route),
            None => {
                self.insert(path, route);
            }
        }
    }

    pub fn lookup<'a>(&'a self, path: &str, method: &str) -> Lookup<'a> {
        let (routes, captures) = match self.routes.get(path) {
            Some(routes) => (routes.as_slice(), Vec::new()),
            None => match self.pattern(path) {
                Some((routes, captures)) => (routes, captures),
                None => return Lookup::NotFound,
            },
        };
        match routes.iter().find(|r| r.methods.allows(method)) {
            Some(route) => Lookup::Found(route, captures),
            None => {
                Lookup::MethodNotAllowed(routes.iter().fold(Methods::default(), |m, r| m.union(r.methods)), &routes[0])
            }
        }
    }

    /// The most specific pattern matching `path`, and its captures.
    fn pattern<'a>(&'a self, path: &str) -> Option<(&'a [Route], Captures<'a>)> {
        if self.patterns.is_empty() {
            return None;
        }
        let parts: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let candidates = self.patterns.get(&parts.len())?;
        let fits = |p: &Pattern| {
            p.segments.iter().zip(&parts).all(|(seg, part)| match seg {
                Segment::Literal(l) => l == part,
                // A parameter takes a non-empty segment.
                Segment::Param(_) => !part.is_empty(),
            })
        };
        // Literal before parameter, segment by segment from the left.
        let rank = |p: &Pattern| -> Vec<bool> { p.segments.iter().map(|s| matches!(s, Segment::Param(_))).collect() };
        let best = candidates.iter().filter(|p| fits(p)).min_by_key(|p| rank(p))?;
        let captures = best
            .segments
            .iter()
            .zip(&parts)
            .filter_map(|(seg, part)| match seg {
                Segment::Param(name) => Some((name.as_str(), (*part).to_owned())),
                Segment::Literal(_) => None,
            })
            .collect();
        Some((self.routes.get(&best.shape)?.as_slice(), captures))
    }
}

/// What the watcher swaps in on a reload, and every loop reads per request:
/// the route table, the JSON of `/_house/guests` (made when asked: its
/// figures are live) and of `/_house/openapi.json`, and the page at `/`.
pub struct Routes {
    pub router: Router,
    pub home: Arc<str>,
    pub index: Box<dyn Fn() -> String + Send + Sync>,
    pub openapi: Arc<str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_implies_head() {
        let m = Methods::GET.union(Methods::parse("POST").unwrap());
        assert!(m.allows("HEAD") && m.allows("GET") && m.allows("POST") && !m.allows("PUT"));
        assert_eq!(m.allow_header(), "GET, HEAD, POST");
        assert!(!m.allows("BREW"));
    }

    #[test]
    fn lookup_tells_404_from_405() {
        let r = Router::with_builtins();
        assert!(matches!(r.lookup("/_house/guests", "GET"), Lookup::Found(_, _)));
        assert!(matches!(r.lookup("/_house/guests", "POST"), Lookup::MethodNotAllowed(..)));
        assert!(matches!(r.lookup("/nope", "GET"), Lookup::NotFound));
    }

    /// A route told apart from the others by its methods (tests need no guest).
    fn route(extra: &str) -> Route {
        Route { methods: Methods::GET.union(Methods::parse(extra).unwrap()), target: Target::Stats }
    }

    /// Which route answered (by its methods) and what it captured.
    type Routed = (Vec<&'static str>, Vec<(String, String)>);

    fn routed(r: &Router, path: &str) -> Option<Routed> {
        match r.lookup(path, "GET") {
            Lookup::Found(route, captures) => {
                Some((route.methods.names(), captures.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
            }
            _ => None,
        }
    }

    fn caps(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn literal_segments_beat_parameters_from_the_left() {
        let mut r = Router::default();
        r.insert("/items/{id}".into(), route("POST"));
        r.insert("/items/new".into(), route("PUT"));
        r.insert("/{kind}/{id}".into(), route("DELETE"));
        r.insert("/items/{id}/tags/{tag}".into(), route("PATCH"));
        assert_eq!(routed(&r, "/items/new"), Some((vec!["GET", "PUT"], vec![])));
        assert_eq!(routed(&r, "/items/42"), Some((vec!["GET", "POST"], caps(&[("id", "42")]))));
        assert_eq!(routed(&r, "/users/7"), Some((vec!["GET", "DELETE"], caps(&[("kind", "users"), ("id", "7")]))));
        assert_eq!(
            routed(&r, "/items/42/tags/red"),
            Some((vec!["GET", "PATCH"], caps(&[("id", "42"), ("tag", "red")])))
        );
        assert_eq!(routed(&r, "/items/"), None, "a parameter takes a non-empty segment");
        assert_eq!(routed(&r, "/items"), None);
        assert_eq!(routed(&r, "/items/1/2"), None);
        assert!(matches!(r.lookup("/items/42", "PUT"), Lookup::MethodNotAllowed(..)));
    }

    #[test]
    fn patterns_of_one_shape_are_one_route() {
        assert_eq!(shape("/items/{id}"), "/items/{}");
        assert_eq!(shape("/items/{key}"), "/items/{}");
        assert_eq!(shape("/plain"), "/plain");
        let mut r = Router::default();
        assert!(r.insert("/items/{id}".into(), route("POST")).is_none());
        assert!(r.insert("/items/{key}".into(), route("PUT")).is_some(), "the second replaces the first");
        assert_eq!(routed(&r, "/items/9"), Some((vec!["GET", "PUT"], caps(&[("key", "9")]))));
    }

    #[test]
    fn one_path_may_have_a_route_per_method() {
        let mut r = Router::default();
        let only = |m: &str| Route { methods: Methods::parse(m).unwrap(), target: Target::Stats };
        r.insert("/todos/{id}".into(), only("PATCH"));
        r.add("/todos/{id}".into(), only("DELETE"));
        assert!(matches!(r.lookup("/todos/3", "PATCH"), Lookup::Found(route, _) if route.methods.names() == ["PATCH"]));
        assert!(
            matches!(r.lookup("/todos/3", "DELETE"), Lookup::Found(route, _) if route.methods.names() == ["DELETE"])
        );
        match r.lookup("/todos/3", "GET") {
            Lookup::MethodNotAllowed(m, _) => assert_eq!(m.allow_header(), "DELETE, PATCH"),
            _ => panic!("405"),
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(parse_pattern("/a/{}").is_err());
        assert!(parse_pattern("/a/{b c}").is_err());
        assert!(parse_pattern("/a/x{b}").is_err());
        assert!(parse_pattern("/a/{b}/{b}").is_err());
        assert_eq!(parse_pattern("/a/{b}").unwrap(), [Segment::Literal("a".into()), Segment::Param("b".into())]);
    }
}
