//! The names a manifest uses: parameter types, handler kinds, and where a
//! parameter's value comes from.

/// The built-in parameter types (docs/ABI.md, "Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Any text, unchecked.
    Untyped,
    /// UTF-8 text.
    String,
    /// A signed 64-bit integer.
    Integer,
    /// A finite 64-bit float.
    Float,
    /// `true/false`, `1/0`, `on/off`, `yes/no`.
    Boolean,
    /// Lower-cased letters, digits, `-`, `_`, `.`.
    Keyword,
    /// A well-formed JSON document, as its text.
    Json,
    /// A repeated parameter of keywords.
    ListOfKeyword,
    /// A repeated parameter of integers.
    ListOfInteger,
}

/// Every built-in type, in the order the docs list them.
pub const ALL_TYPES: [Ty; 9] = [
    Ty::Untyped,
    Ty::String,
    Ty::Integer,
    Ty::Float,
    Ty::Boolean,
    Ty::Keyword,
    Ty::Json,
    Ty::ListOfKeyword,
    Ty::ListOfInteger,
];

impl Ty {
    /// The type a manifest names (`list-of-keyword`), exactly.
    pub fn parse(name: &str) -> Option<Ty> {
        ALL_TYPES.into_iter().find(|t| t.name() == name)
    }

    /// Its name in a manifest.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Untyped => "untyped",
            Ty::String => "string",
            Ty::Integer => "integer",
            Ty::Float => "float",
            Ty::Boolean => "boolean",
            Ty::Keyword => "keyword",
            Ty::Json => "json",
            Ty::ListOfKeyword => "list-of-keyword",
            Ty::ListOfInteger => "list-of-integer",
        }
    }

    /// A list: the parameter may be repeated; its block is a count, then
    /// the elements.
    pub fn is_list(self) -> bool {
        matches!(self, Ty::ListOfKeyword | Ty::ListOfInteger)
    }

    /// The type of one element (of a list; itself otherwise).
    pub fn element(self) -> Ty {
        match self {
            Ty::ListOfKeyword => Ty::Keyword,
            Ty::ListOfInteger => Ty::Integer,
            t => t,
        }
    }

    /// Text on the wire (`chars` applies).
    pub fn is_text(self) -> bool {
        matches!(self, Ty::Untyped | Ty::String | Ty::Keyword | Ty::Json)
    }
}

/// What a handler answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize), serde(rename_all = "lowercase"))]
pub enum Kind {
    /// Answer, then keep the connection for the next request (or close).
    Closing,
    /// Answer with an SSE stream and keep the connection subscribed.
    Stream,
    /// Answer a message a WebSocket client sent on the path of a stream
    /// handler of the same module (the socket that handler opened). Since
    /// ABI 1 (additive).
    Message,
}

impl Kind {
    /// Its name in a manifest.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Closing => "closing",
            Kind::Stream => "stream",
            Kind::Message => "message",
        }
    }
}

/// Where a parameter's value comes from (the manifest's `"in"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize), serde(rename_all = "lowercase"))]
pub enum Source {
    /// The query string, then an `application/x-www-form-urlencoded` body.
    #[default]
    Query,
    /// A `{name}` segment of the handler's path.
    Path,
    /// A request header (the name, case-insensitive).
    Header,
    /// A cookie of the `Cookie` header.
    Cookie,
    /// The whole request body, `application/json` (type `json`, or an
    /// object type the host validates field by field).
    Body,
    /// A signed token's claims (an object type): `Authorization: Bearer`,
    /// or a cookie; the host verifies it before the call (401 if not).
    Token,
}

impl Source {
    /// Its name in a manifest.
    pub fn name(self) -> &'static str {
        match self {
            Source::Query => "query",
            Source::Path => "path",
            Source::Header => "header",
            Source::Cookie => "cookie",
            Source::Body => "body",
            Source::Token => "token",
        }
    }

    /// What a missing value is called in its 400.
    pub fn noun(self) -> &'static str {
        match self {
            Source::Query | Source::Path => "parameter",
            Source::Header => "header",
            Source::Cookie => "cookie",
            Source::Body => "body",
            Source::Token => "token",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in ALL_TYPES {
            assert_eq!(Ty::parse(t.name()), Some(t));
        }
        assert_eq!(Ty::parse("list_of_integer"), None, "a manifest spells it list-of-integer");
        assert_eq!(Ty::parse("char"), None);
    }
}
