//! Keys and tokens as an identity provider would make them: key files in
//! the format `--auth-key-file`, `--auth-public-key-file` and
//! `--cookie-key-file` read, and compact JWS tokens signed with them
//! (written here from RFC 7515, independently of the host's verifier).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// 32 bytes no other test shares (a counter and the clock, hashed).
pub fn secret() -> [u8; 32] {
    use sha2::Digest;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    Sha256::digest(format!("{n} {t} {}", std::process::id())).into()
}

/// Writes a key file of `lines` (`[KID] BASE64`) into `dir`.
pub fn key_file(dir: &Path, name: &str, lines: &[(Option<&str>, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines
        .iter()
        .map(|(kid, key)| match kid {
            Some(kid) => format!("{kid} {}\n", STANDARD.encode(key)),
            None => format!("{}\n", STANDARD.encode(key)),
        })
        .collect();
    std::fs::write(&path, format!("# test keys\n{text}")).unwrap();
    path
}

/// A cookie key file of one fresh key, as a flag's value.
pub fn cookie_key_file(dir: &Path) -> String {
    key_file(dir, "cookie.key", &[(None, &secret())]).to_str().unwrap().to_owned()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn compact(header: &serde_json::Value, claims: &serde_json::Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{head}.{body}");
    let sig = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// An HS256 token of `claims`, signed with `key` (and naming `kid`).
pub fn hs256(key: &[u8], kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    compact(&header, claims, |input| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    })
}

/// An EdDSA (Ed25519) token of `claims`.
pub fn eddsa(key: &SigningKey, claims: &serde_json::Value) -> String {
    compact(&serde_json::json!({"alg": "EdDSA", "typ": "JWT"}), claims, |input| key.sign(input).to_bytes().to_vec())
}

/// A signing key from 32 fresh bytes.
pub fn ed25519_key() -> SigningKey {
    SigningKey::from_bytes(&secret())
}

/// A header and claims signed with nothing (`alg: none`).
pub fn unsigned(claims: &serde_json::Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    format!("{head}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
}
