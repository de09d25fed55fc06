//! The route table: path -> what answers it, and which methods it takes.
//!
//! The guest registry builds a new table whenever the set of loaded modules
//! changes and hands it to the event loop whole, so a lookup never sees a
//! half-updated table.

use std::collections::HashMap;
use std::sync::Arc;

use crate::guests::Handler;

/// A set of methods, as a bitset: routes take few and lookups are hot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods(u8);

const NAMES: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

impl Methods {
    pub const GET: Methods = Methods(1);

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
        get_or_head || Methods::parse(method).is_some_and(|m| self.0 & m.0 != 0)
    }

    /// The value of an `Allow` header.
    pub fn allow_header(self) -> String {
        let with_head = if self.0 & 1 != 0 { self.0 | 2 } else { self.0 };
        let names: Vec<&str> = (0..NAMES.len()).filter(|i| with_head & (1 << i) != 0).map(|i| NAMES[i]).collect();
        names.join(", ")
    }

    pub fn names(self) -> Vec<&'static str> {
        (0..NAMES.len()).filter(|i| self.0 & (1 << i) != 0).map(|i| NAMES[i]).collect()
    }
}

/// What answers a route.
#[derive(Clone)]
pub enum Target {
    Guest(Arc<Handler>),
    /// `GET /_house/guests`: what is loaded.
    GuestsIndex,
    /// `GET /_house/stats`: connections, channels, subscribers.
    Stats,
}

#[derive(Clone)]
pub struct Route {
    pub methods: Methods,
    pub target: Target,
}

pub enum Lookup<'a> {
    Found(&'a Route),
    NotFound,
    MethodNotAllowed(Methods),
}

#[derive(Clone, Default)]
pub struct Router {
    routes: HashMap<String, Route>,
}

impl Router {
    /// The routes the host serves itself, before any guest is loaded.
    pub fn with_builtins() -> Router {
        let mut r = Router::default();
        r.insert("/_house/guests".into(), Route { methods: Methods::GET, target: Target::GuestsIndex });
        r.insert("/_house/stats".into(), Route { methods: Methods::GET, target: Target::Stats });
        r
    }

    /// Adds a route; the previous one for the path, if any, is returned.
    pub fn insert(&mut self, path: String, route: Route) -> Option<Route> {
        self.routes.insert(path, route)
    }

    pub fn lookup(&self, path: &str, method: &str) -> Lookup<'_> {
        match self.routes.get(path) {
            None => Lookup::NotFound,
            Some(r) if r.methods.allows(method) => Lookup::Found(r),
            Some(r) => Lookup::MethodNotAllowed(r.methods),
        }
    }
}

/// What the watcher swaps in on a reload, and every loop reads per request:
/// the route table and the JSON of `/_house/guests`.
pub struct Routes {
    pub router: Router,
    pub index: Arc<str>,
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
        assert!(matches!(r.lookup("/_house/guests", "GET"), Lookup::Found(_)));
        assert!(matches!(r.lookup("/_house/guests", "POST"), Lookup::MethodNotAllowed(_)));
        assert!(matches!(r.lookup("/nope", "GET"), Lookup::NotFound));
    }
}
