//! Decoding the argument block the host wrote (docs/ABI.md, "Arguments").
//! The host has already parsed and validated every value; decoding is
//! reading fixed-width integers and length-prefixed UTF-8.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;

/// The argument block of one call. It lives for the whole instance (one
/// request), hence the `'static` strings handed out.
#[doc(hidden)]
pub struct Args {
    buf: &'static [u8],
    pos: usize,
}

impl Args {
    /// # Safety contract (upheld by the host, docs/ABI.md)
    /// `ptr..ptr + len` is the block the host wrote into memory it got from
    /// `house_alloc`, which is never freed.
    pub fn new(ptr: u32, len: u32) -> Args {
        let buf: &'static [u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the host wrote `len` bytes at `ptr`, inside a leaked
            // allocation from `house_alloc` (see `crate::abi::house_alloc`).
            unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) }
        };
        Args { buf, pos: 0 }
    }

    /// Wraps bytes encoded by hand (for tests of decoding).
    pub fn from_bytes(buf: &'static [u8]) -> Args {
        Args { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> &'static [u8] {
        let bytes = self.buf.get(self.pos..self.pos + n).expect("house: argument block ends early");
        self.pos += n;
        bytes
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn text(&mut self) -> &'static str {
        let n = self.u32() as usize;
        core::str::from_utf8(self.take(n)).expect("house: argument is not UTF-8")
    }
}

/// A type a parameter can have. Implemented for the built-in types; named
/// types from [`http_type!`](crate::http_type) are aliases of these.
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
        i64::from_le_bytes(args.take(8).try_into().expect("8 bytes"))
    }
}

impl FromArg for f64 {
    fn decode(args: &mut Args) -> Self {
        f64::from_le_bytes(args.take(8).try_into().expect("8 bytes"))
    }
}

impl FromArg for bool {
    fn decode(args: &mut Args) -> Self {
        args.take(1)[0] != 0
    }
}

impl<T: FromArg> FromArg for Vec<T> {
    fn decode(args: &mut Args) -> Self {
        let n = args.u32() as usize;
        (0..n).map(|_| T::decode(args)).collect()
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
