//! Key-value data as the imports carry it (docs/ABI.md, "Key-value data"):
//! the refusals a guest can be told, with their codes, and the block
//! `kv_list` leaves for `kv_read`. The host encodes, the SDK decodes, both
//! from here.

use alloc::vec::Vec;
use core::fmt;

use crate::status::{KV_BUDGET, KV_NOT_INTEGER, KV_TOO_LARGE, KV_UNAVAILABLE, OK};

/// Why the host refused a key-value operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvError {
    /// The key (empty, or over the host's `--kv-key-bytes`) or the value
    /// (over `--kv-value-bytes`) is too large.
    TooLarge,
    /// Over the operations one call may make, or the bytes this module may
    /// keep.
    Budget,
    /// An increment of a value that is not a decimal integer.
    NotInteger,
    /// The host's store failed (its log says why).
    Unavailable,
    /// A code this side does not know (a newer host?).
    Other(i64),
}

impl KvError {
    /// The import's return code for it.
    pub fn code(self) -> i64 {
        match self {
            KvError::TooLarge => i64::from(KV_TOO_LARGE),
            KvError::Budget => i64::from(KV_BUDGET),
            KvError::NotInteger => i64::from(KV_NOT_INTEGER),
            KvError::Unavailable => i64::from(KV_UNAVAILABLE),
            KvError::Other(c) => c,
        }
    }

    /// An import's return code: success (0), or the refusal it says.
    pub fn check(code: i64) -> Result<(), KvError> {
        match i32::try_from(code).unwrap_or(i32::MIN) {
            OK => Ok(()),
            KV_TOO_LARGE => Err(KvError::TooLarge),
            KV_BUDGET => Err(KvError::Budget),
            KV_NOT_INTEGER => Err(KvError::NotInteger),
            KV_UNAVAILABLE => Err(KvError::Unavailable),
            _ => Err(KvError::Other(code)),
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::TooLarge => f.write_str("key or value too large"),
            KvError::Budget => f.write_str("over this call's or this module's key-value budget"),
            KvError::NotInteger => f.write_str("the value is not an integer"),
            KvError::Unavailable => f.write_str("the key-value store is unavailable"),
            KvError::Other(c) => write!(f, "key-value error {c}"),
        }
    }
}

/// `kv_list`'s block: a `u32` count, then per entry the key (`u32` length
/// and bytes) and, with `values`, the value the same way; little-endian.
pub fn encode_list<'a>(entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>, values: bool) -> Vec<u8> {
    let mut out = Vec::new();
    crate::wire::push_u32(&mut out, entries.len() as u32);
    for (key, value) in entries {
        crate::wire::push_bytes(&mut out, key);
        if values {
            crate::wire::push_bytes(&mut out, value);
        }
    }
    out
}

/// Decodes [`encode_list`]'s block; a block that ends early gives the
/// entries before.
pub fn decode_list(raw: &[u8], values: bool) -> Vec<(&[u8], &[u8])> {
    let mut r = crate::wire::Reader::new(raw);
    let count = r.u32().unwrap_or(0);
    let mut out = Vec::new();
    for _ in 0..count {
        let Ok(key) = r.bytes() else { break };
        let value = if values {
            match r.bytes() {
                Ok(v) => v,
                Err(_) => break,
            }
        } else {
            &[][..]
        };
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_lists_round_trip() {
        for e in [KvError::TooLarge, KvError::Budget, KvError::NotInteger, KvError::Unavailable, KvError::Other(-99)] {
            assert_eq!(KvError::check(e.code()), Err(e));
        }
        assert_eq!(KvError::check(0), Ok(()));
        let entries: [(&[u8], &[u8]); 2] = [(b"a", b"1"), (b"bc", b"")];
        for values in [true, false] {
            let block = encode_list(entries.iter().copied(), values);
            let back = decode_list(&block, values);
            let want: Vec<(&[u8], &[u8])> =
                entries.iter().map(|&(k, v)| (k, if values { v } else { &[][..] })).collect();
            assert_eq!(back, want);
            assert_eq!(decode_list(&block[..block.len() - 1], values).len(), 1, "cut short: the whole entries");
        }
    }
}
