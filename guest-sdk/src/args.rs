//! Decoding the argument block the host wrote (docs/ABI.md, "Arguments").
//! The host has already parsed and validated every value; decoding is
//! reading fixed-width integers and length-prefixed UTF-8.

use alloc::vec::Vec;
use core::fmt;

use core::ops::Deref;
use house_abi::wire::Reader;

/// The argument block of one call. It lives for the whole instance (one
/// request), hence the `'static` strings handed out.
#[doc(hidden)]
pub struct Args(Reader<'static>);

impl Args {
    /// # Safety contract (upheld by the host, docs/ABI.md)
    /// `ptr..ptr + len` is the block the host wrote into `house_args` or
    /// into memory it got from `house_alloc`, which is never freed.
    pub fn new(ptr: u32, len: u32) -> Args {
        let buf: &'static [u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the host wrote `len` bytes at `ptr`, inside the static
            // `house_args` or a leaked allocation from `house_alloc` (see
            // `crate::abi`); nothing else writes there during the call.
            unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) }
        };
        Args(Reader::new(buf))
    }

    /// Wraps bytes encoded by hand (for tests of decoding).
    pub fn from_bytes(buf: &'static [u8]) -> Args {
        Args(Reader::new(buf))
    }

    // The host encoded the block from the same manifest the decoders were
    // generated from: a short or malformed block is a broken host.
    const EARLY: &str = "house: argument block ends early";

    fn u32(&mut self) -> u32 {
        self.0.u32().expect(Self::EARLY)
    }

    fn text(&mut self) -> &'static str {
        core::str::from_utf8(self.0.bytes().expect(Self::EARLY)).expect("house: argument is not UTF-8")
    }
}

/// A type a parameter can have. Implemented for the built-in types; named
/// types from [`http_type!`](crate::http_type) are aliases of these.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a parameter type",
    label = "use &str, String, i64, f64, bool, Keyword, Json, Vec<Keyword>, Vec<i64>, a type defined with http_type!, or a #[derive(Body)] struct"
)]
pub trait FromArg: Sized {
    #[doc(hidden)]
    fn decode(args: &mut Args) -> Self;
}

impl FromArg for &'static str {
    fn decode(args: &mut Args) -> Self {
        args.text()
    }
}

impl FromArg for alloc::string::String {
    fn decode(args: &mut Args) -> Self {
        args.text().into()
    }
}

impl FromArg for i64 {
    fn decode(args: &mut Args) -> Self {
        args.0.i64().expect(Args::EARLY)
    }
}

impl FromArg for f64 {
    fn decode(args: &mut Args) -> Self {
        args.0.f64().expect(Args::EARLY)
    }
}

impl FromArg for bool {
    fn decode(args: &mut Args) -> Self {
        args.0.bool().expect(Args::EARLY)
    }
}

impl<T: FromArg> FromArg for Vec<T> {
    fn decode(args: &mut Args) -> Self {
        let n = args.u32() as usize;
        (0..n).map(|_| T::decode(args)).collect()
    }
}

/// An optional field of a body: a presence byte, then the value.
impl<T: FromArg> FromArg for Option<T> {
    fn decode(args: &mut Args) -> Self {
        if args.0.bool().expect(Args::EARLY) { Some(T::decode(args)) } else { None }
    }
}

/// A keyword: the article's `:keyword`. The host lower-cases it and checks
/// it is made of letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keyword(pub &'static str);

/// A JSON document the host has checked is well-formed, as its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Json(pub &'static str);

macro_rules! text_newtype {
    ($t:ident) => {
        impl FromArg for $t {
            fn decode(args: &mut Args) -> Self {
                $t(args.text())
            }
        }
        impl Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
    };
}
text_newtype!(Keyword);
text_newtype!(Json);
