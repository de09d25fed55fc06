//! Request parameters: the query string and `application/x-www-form-urlencoded`
//! bodies, percent-decoded strictly.
//!
//! `percent-encoding` decodes, but passes a broken escape (`%zz`, a lone `%`)
//! through unchanged and never checks UTF-8; both must be a 400 here, so the
//! input is checked first and then handed to the crate.

use percent_encoding::percent_decode;

/// Parameters in the order they arrived: query first, then body. Repeated
/// names are kept, in order (list types are built from them).
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Adds every `name=value` pair of `input` (`a=1&b=2`).
    pub fn extend_from_urlencoded(&mut self, input: &[u8]) -> Result<(), String> {
        for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let name = decode_component(name, true).map_err(|e| format!("parameter name: {e}"))?;
            let value = decode_component(value, true).map_err(|e| format!("{name}: {e}"))?;
            self.pairs.push((name, value));
        }
        Ok(())
    }

    /// Every name given, in order, repeats included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(n, _)| n.as_str())
    }

    /// Every value given for `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Percent-decodes one component; `+` means a space in form encoding.
pub fn decode_component(raw: &[u8], plus_as_space: bool) -> Result<String, &'static str> {
    const NOT_UTF8: &str = "not valid UTF-8 once decoded";
    // Most components have nothing to decode: one scan and one copy.
    if !raw.iter().any(|&b| b == b'%' || (plus_as_space && b == b'+')) {
        return std::str::from_utf8(raw).map(str::to_owned).map_err(|_| NOT_UTF8);
    }
    let mut i = 0;
    while let Some(off) = raw[i..].iter().position(|&b| b == b'%') {
        let at = i + off;
        let hex = raw.get(at + 1..at + 3).ok_or("incomplete percent-escape")?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err("invalid percent-escape");
        }
        i = at + 3;
    }
    let mut out = Vec::with_capacity(raw.len());
    if plus_as_space {
        for (n, piece) in raw.split(|&b| b == b'+').enumerate() {
            if n > 0 {
                out.push(b' ');
            }
            out.extend(percent_decode(piece));
        }
    } else {
        out.extend(percent_decode(raw));
    }
    String::from_utf8(out).map_err(|_| NOT_UTF8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<Vec<(String, String)>, String> {
        let mut p = Params::default();
        p.extend_from_urlencoded(input.as_bytes())?;
        Ok(p.pairs)
    }

    #[test]
    fn decodes_plus_and_escapes() {
        let got = parse("a=1+2&b=%2B%20x&a=%E2%82%AC").unwrap();
        assert_eq!(got, [("a", "1 2"), ("b", "+ x"), ("a", "€")].map(|(a, b)| (a.into(), b.into())));
    }

    #[test]
    fn refuses_broken_escapes_and_bad_utf8() {
        assert_eq!(parse("a=%zz").unwrap_err(), "a: invalid percent-escape");
        assert_eq!(parse("a=%4").unwrap_err(), "a: incomplete percent-escape");
        assert_eq!(parse("a=%ff").unwrap_err(), "a: not valid UTF-8 once decoded");
    }

    #[test]
    fn keeps_empty_values_and_order() {
        let got = parse("x&y=&x=2").unwrap();
        assert_eq!(got, [("x", ""), ("y", ""), ("x", "2")].map(|(a, b)| (a.into(), b.into())));
    }
}
