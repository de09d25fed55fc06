//! How the embedded store lays out a key and its record in redb: the key
//! is the module's namespace, a zero byte and the guest's key; the record
//! is its expiry (ms since the epoch, 0: none, 8 bytes LE), its version
//! (8 bytes LE) and its value (format 2; format 1 had no version).

use redb::{ReadableTable, Table};

use super::Version;

/// Bytes a record takes besides its value.
pub(super) const HEADER: usize = 16;

/// Records of the first format (expiry + value) get a version (1: older
/// than any commit since).
pub(super) fn upgrade(data: &mut Table<'_, &'static [u8], &'static [u8]>) -> anyhow::Result<()> {
    let old: Vec<(Vec<u8>, Vec<u8>)> =
        data.iter()?.map(|e| e.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))).collect::<Result<_, _>>()?;
    for (key, r) in old {
        let (expires, value) = (expiry(&r), r.get(8..).unwrap_or_default());
        data.insert(key.as_slice(), record(expires, 1, value).as_slice())?;
    }
    Ok(())
}

pub(super) fn namespaced(namespace: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(namespace.len() + 1 + key.len());
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

pub(super) fn expiry_key(expires: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&expires.to_be_bytes());
    k.extend_from_slice(key);
    k
}

pub(super) fn record(expires: u64, version: Version, value: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(HEADER + value.len());
    r.extend_from_slice(&expires.to_le_bytes());
    r.extend_from_slice(&version.to_le_bytes());
    r.extend_from_slice(value);
    r
}

pub(super) fn expiry(record: &[u8]) -> u64 {
    record.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

pub(super) fn version(record: &[u8]) -> Version {
    record.get(8..16).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// The value of a record, unless it has expired.
pub(super) fn live(record: &[u8], now: u64) -> Option<&[u8]> {
    let expires = expiry(record);
    (expires == 0 || expires > now).then(|| record.get(HEADER..).unwrap_or_default())
}
