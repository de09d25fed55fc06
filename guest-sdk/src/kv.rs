//! Key-value data that outlives a call (docs/ABI.md, "Key-value data").
//!
//! Each module file has its own keys. What a call writes is seen by its own
//! later reads at once and by other calls once it returns successfully: a
//! call that fails (a trap, an overrun, an `Err`, any 5xx) writes nothing.
//! Increments from many concurrent calls lose no update.
//!
//! Compiled for anything but wasm32, the store is an in-memory map of this
//! thread, so handlers that use it stay testable as plain functions.

use alloc::string::String;
use alloc::vec::Vec;

/// Why the host refused a key-value operation (the ABI crate's, shared
/// with the host).
pub use house_abi::kv::KvError;

fn status(code: i64) -> Result<(), KvError> {
    KvError::check(code)
}

/// The value of `key`, if there is one (and it has not expired).
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    imp::get(key.as_bytes())
}

/// [`get`], as UTF-8 text (a value that is not is `None`).
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    Ok(get(key)?.and_then(|v| String::from_utf8(v).ok()))
}

/// Sets `key` to `value`, for good.
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    status(imp::set(key.as_bytes(), value, -1))
}

/// Sets `key` to `value` for `ttl_ms` milliseconds; then it is gone.
pub fn set_with_ttl(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), KvError> {
    status(imp::set(key.as_bytes(), value, ttl_ms.min(i64::MAX as u64) as i64))
}

/// Removes `key` (absent already: fine).
pub fn delete(key: &str) -> Result<(), KvError> {
    status(imp::delete(key.as_bytes()))
}

/// Adds `delta` to the decimal integer at `key` (absent: 0) and returns the
/// result as this call sees it. Concurrent increments all count.
pub fn incr(key: &str, delta: i64) -> Result<i64, KvError> {
    imp::incr(key.as_bytes(), delta)
}

/// Keys starting with `prefix`, in byte order, at most `limit` (and the
/// host's `--kv-list-keys`). The call's own uncommitted writes are not in it.
pub fn list(prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
    let raw = imp::list(prefix.as_bytes(), limit.min(i32::MAX as u32) as i32, false)?;
    Ok(entries(&raw, false).into_iter().map(|(k, _)| k).collect())
}

/// [`list`] with each key's value: one operation, however many keys.
pub fn scan(prefix: &str, limit: u32) -> Result<Vec<(String, Vec<u8>)>, KvError> {
    let raw = imp::list(prefix.as_bytes(), limit.min(i32::MAX as u32) as i32, true)?;
    Ok(entries(&raw, true))
}

/// Decodes `kv_list`'s block (the ABI crate's encoding).
fn entries(raw: &[u8], values: bool) -> Vec<(String, Vec<u8>)> {
    house_abi::kv::decode_list(raw, values)
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
        .collect()
}

/// Fills `out` with random bytes from the host's kernel (session ids,
/// tokens; a guest has no entropy of its own). At most 1024 bytes a call.
pub fn random(out: &mut [u8]) -> Result<(), KvError> {
    status(imp::random(out))
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{KvError, status};
    use alloc::vec::Vec;

    #[link(wasm_import_module = "house")]
    unsafe extern "C" {
        fn kv_get(key: *const u8, key_len: usize) -> i64;
        fn kv_read(ptr: *mut u8, len: usize) -> i32;
        fn kv_set(key: *const u8, key_len: usize, value: *const u8, value_len: usize, ttl_ms: i64) -> i32;
        fn kv_delete(key: *const u8, key_len: usize) -> i32;
        fn kv_incr(key: *const u8, key_len: usize, delta: i64, out: *mut i64) -> i32;
        fn kv_list(prefix: *const u8, prefix_len: usize, limit: i32, values: i32) -> i64;
        #[link_name = "random"]
        fn house_random(ptr: *mut u8, len: usize) -> i32;
    }

    pub fn random(out: &mut [u8]) -> i64 {
        // SAFETY: the host writes `out.len()` bytes into `out`.
        i64::from(unsafe { house_random(out.as_mut_ptr(), out.len()) })
    }

    /// Fetches what the last `kv_get` / `kv_list` left, `n` bytes.
    fn read(n: i64) -> Vec<u8> {
        let mut buf = alloc::vec![0u8; n as usize];
        // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
        let got = unsafe { kv_read(buf.as_mut_ptr(), buf.len()) };
        buf.truncate(got.max(0) as usize);
        buf
    }

    pub fn get(key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        // SAFETY: (pointer, length) of a live slice.
        match unsafe { kv_get(key.as_ptr(), key.len()) } {
            house_abi::status::KV_ABSENT => Ok(None),
            n if n >= 0 => Ok(Some(read(n))),
            code => status(code).map(|()| None),
        }
    }

    pub fn set(key: &[u8], value: &[u8], ttl_ms: i64) -> i64 {
        // SAFETY: (pointer, length) pairs of live slices.
        i64::from(unsafe { kv_set(key.as_ptr(), key.len(), value.as_ptr(), value.len(), ttl_ms) })
    }

    pub fn delete(key: &[u8]) -> i64 {
        // SAFETY: (pointer, length) of a live slice.
        i64::from(unsafe { kv_delete(key.as_ptr(), key.len()) })
    }

    pub fn incr(key: &[u8], delta: i64) -> Result<i64, KvError> {
        let mut out = 0i64;
        // SAFETY: a live slice, and `out` is 8 writable bytes.
        status(i64::from(unsafe { kv_incr(key.as_ptr(), key.len(), delta, &mut out) }))?;
        Ok(out)
    }

    pub fn list(prefix: &[u8], limit: i32, values: bool) -> Result<Vec<u8>, KvError> {
        // SAFETY: (pointer, length) of a live slice.
        match unsafe { kv_list(prefix.as_ptr(), prefix.len(), limit, i32::from(values)) } {
            n if n >= 0 => Ok(read(n)),
            code => status(code).map(|()| Vec::new()),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::KvError;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    std::thread_local! {
        static STORE: RefCell<BTreeMap<Vec<u8>, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn get(key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(STORE.with(|s| s.borrow().get(key).cloned()))
    }

    pub fn set(key: &[u8], value: &[u8], _ttl_ms: i64) -> i64 {
        STORE.with(|s| s.borrow_mut().insert(key.to_vec(), value.to_vec()));
        0
    }

    pub fn delete(key: &[u8]) -> i64 {
        STORE.with(|s| s.borrow_mut().remove(key));
        0
    }

    pub fn incr(key: &[u8], delta: i64) -> Result<i64, KvError> {
        STORE.with(|s| {
            let mut s = s.borrow_mut();
            let current = match s.get(key) {
                None => 0,
                Some(v) => core::str::from_utf8(v).ok().and_then(|t| t.parse().ok()).ok_or(KvError::NotInteger)?,
            };
            let n: i64 = current + delta;
            s.insert(key.to_vec(), alloc::string::ToString::to_string(&n).into_bytes());
            Ok(n)
        })
    }

    pub fn list(prefix: &[u8], limit: i32, values: bool) -> Result<Vec<u8>, KvError> {
        STORE.with(|s| {
            let s = s.borrow();
            let found: Vec<(&Vec<u8>, &Vec<u8>)> =
                s.iter().filter(|(k, _)| k.starts_with(prefix)).take(limit.max(0) as usize).collect();
            Ok(house_abi::kv::encode_list(found.into_iter().map(|(k, v)| (&k[..], &v[..])), values))
        })
    }

    /// Not cryptographic outside wasm32: tests only need distinct values.
    pub fn random(out: &mut [u8]) -> i64 {
        use std::hash::{BuildHasher, Hasher};
        for chunk in out.chunks_mut(8) {
            let n = std::collections::hash_map::RandomState::new().build_hasher().finish().to_le_bytes();
            chunk.copy_from_slice(&n[..chunk.len()]);
        }
        0
    }
}
