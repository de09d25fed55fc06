//! Identity the host verifies before a call (docs/ABI.md, "Bodies and
//! tokens"): signed tokens (JWS compact form, HS256 or EdDSA) whose claims
//! a handler declares as `#[token]`, and cookies the host signs for a
//! handler and checks for `#[cookie("sid", signed)]`.
//!
//! Keys come from files (one key per line, `#` comments): never from the
//! command line, never into a log, an error text or `/_house/*`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The shortest HMAC key accepted (RFC 7518 3.2: at least the hash's size).
pub const MIN_SECRET_BYTES: usize = 32;

/// The registered claims the host checks itself; a claims type need not
/// declare them.
pub const REGISTERED_CLAIMS: [&str; 7] = ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"];

/// The longest token looked at, in bytes (a header line is bounded anyway;
/// this bounds the work of a forged one).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The claims the host checks itself, read from the claims without
/// building the rest (serde skips the other fields).
#[derive(serde::Deserialize)]
struct Registered {
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
}

/// How tokens are checked (`--auth-*`).
#[derive(Clone, Default)]
pub struct TokenKeys {
    /// HS256 secrets, each with its `kid` if the file gave one.
    hs256: Vec<(Option<String>, Vec<u8>)>,
    /// Ed25519 public keys.
    eddsa: Vec<(Option<String>, VerifyingKey)>,
    /// `iss` a token must carry (`--auth-issuer`).
    pub issuer: Option<String>,
    /// `aud` a token must carry (`--auth-audience`).
    pub audience: Option<String>,
    /// Clock skew allowed for `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
}

/// Keys that sign cookies (`--cookie-key-file`): the first signs, every one
/// verifies (rotation).
#[derive(Clone)]
pub struct CookieKeys(Vec<Vec<u8>>);

/// Everything the host verifies identity with.
#[derive(Clone)]
pub struct Identity {
    pub tokens: TokenKeys,
    pub cookies: CookieKeys,
}

impl std::fmt::Debug for Identity {
    // Never the keys: only how many there are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Identity {{ hs256 keys: {}, eddsa keys: {}, cookie keys: {} }}",
            self.tokens.hs256.len(),
            self.tokens.eddsa.len(),
            self.cookies.0.len()
        )
    }
}

impl Identity {
    /// The keys `cfg` names, read and checked (an error names the file and
    /// the line, never a key).
    pub fn load(cfg: &crate::config::AuthConfig) -> anyhow::Result<Identity> {
        let mut tokens = TokenKeys {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: cfg.leeway_s,
            ..TokenKeys::default()
        };
        if let Some(path) = &cfg.key_file {
            tokens.add_secrets(path)?;
        }
        if let Some(path) = &cfg.public_key_file {
            tokens.add_public_keys(path)?;
        }
        let cookies = match &cfg.cookie_key_file {
            Some(path) => CookieKeys::from_file(path)?,
            None => CookieKeys::ephemeral()?,
        };
        Ok(Identity { tokens, cookies })
    }
}

/// The lines of a key file: `[KID] BASE64`, blank lines and `#` comments
/// skipped. Errors name the file and line, never the key.
fn key_lines(path: &Path) -> anyhow::Result<Vec<(Option<String>, Vec<u8>)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kid, b64) = match line.split_once(char::is_whitespace) {
            Some((kid, key)) => (Some(kid.to_owned()), key.trim()),
            None => (None, line),
        };
        let key = STANDARD
            .decode(b64)
            .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')))
            .map_err(|_| anyhow::anyhow!("{}: line {}: the key is not base64", path.display(), n + 1))?;
        keys.push((kid, key));
    }
    if keys.is_empty() {
        bail!("{}: no key in it", path.display());
    }
    Ok(keys)
}

impl TokenKeys {
    /// Reads `--auth-key-file` (HS256 secrets).
    pub fn add_secrets(&mut self, path: &Path) -> anyhow::Result<()> {
        for (kid, key) in key_lines(path)? {
            if key.len() < MIN_SECRET_BYTES {
                bail!("{}: a secret of {} bytes; HS256 needs {MIN_SECRET_BYTES} or more", path.display(), key.len());
            }
            self.hs256.push((kid, key));
        }
        Ok(())
    }

    /// Reads `--auth-public-key-file` (raw 32-byte Ed25519 public keys).
    pub fn add_public_keys(&mut self, path: &Path) -> anyhow::Result<()> {
        for (kid, key) in key_lines(path)? {
            let bytes: [u8; 32] = key.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!("{}: a key of {} bytes; an Ed25519 public key is 32", path.display(), key.len())
            })?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| anyhow::anyhow!("{}: a key that is not an Ed25519 point", path.display()))?;
            self.eddsa.push((kid, key));
        }
        Ok(())
    }

    /// Whether any key is configured.
    pub fn any(&self) -> bool {
        !self.hs256.is_empty() || !self.eddsa.is_empty()
    }

    /// Verifies a compact JWS and its registered claims at `now` (seconds
    /// since the epoch); its claims as JSON text, or why not (a 401's
    /// description).
    pub fn verify(&self, token: &str, now: u64) -> Result<String, &'static str> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("token too long");
        }
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("malformed token (not three parts)");
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| "malformed token (not base64url)");
        let header: Value = serde_json::from_slice(&decode(head)?).map_err(|_| "malformed token header")?;
        let alg = header.get("alg").and_then(Value::as_str).ok_or("malformed token header (no alg)")?;
        if header.get("crit").is_some() {
            return Err("token has critical extensions");
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err("malformed token header (kid)"),
        };
        let sig = decode(sig)?;
        let signed = &token.as_bytes()[..head.len() + 1 + body.len()];
        let fits = |k: &Option<String>| kid.is_none() || k.is_none() || k.as_deref() == kid;
        let ok = match alg {
            "HS256" => {
                if self.hs256.is_empty() {
                    return Err("no HS256 key is configured");
                }
                self.hs256.iter().filter(|(k, _)| fits(k)).any(|(_, key)| {
                    let Ok(mut mac) = HmacSha256::new_from_slice(key) else { return false };
                    mac.update(signed);
                    mac.verify_slice(&sig).is_ok()
                })
            }
            "EdDSA" => {
                if self.eddsa.is_empty() {
                    return Err("no EdDSA key is configured");
                }
                let Ok(sig) = Signature::from_slice(&sig) else { return Err("bad signature") };
                self.eddsa.iter().filter(|(k, _)| fits(k)).any(|(_, key)| key.verify_strict(signed, &sig).is_ok())
            }
            // "none" above all: an unsigned token is never an identity.
            _ => return Err("unsupported alg (HS256 or EdDSA)"),
        };
        if !ok {
            return Err("bad signature");
        }
        let claims = String::from_utf8(decode(body)?).map_err(|_| "malformed token claims")?;
        // The registered claims only: the others are the handler's type's,
        // checked (once, while parsed) by the body checker.
        if !claims.trim_start().starts_with('{') {
            return Err("malformed token claims");
        }
        let registered: Registered = serde_json::from_str(&claims).map_err(|_| "malformed token claims")?;
        self.check_claims(&registered, now)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Registered, now: u64) -> Result<(), &'static str> {
        let time = |claim: &Option<Value>| -> Result<Option<u64>, &'static str> {
            match claim {
                None => Ok(None),
                Some(v) => v.as_f64().filter(|t| *t >= 0.0).map(|t| Some(t as u64)).ok_or("malformed time claim"),
            }
        };
        // A token without an expiry would be good forever: refused.
        let exp = time(&claims.exp)?.ok_or("token has no exp")?;
        if now > exp.saturating_add(self.leeway) {
            return Err("token expired");
        }
        if time(&claims.nbf)?.is_some_and(|nbf| now.saturating_add(self.leeway) < nbf) {
            return Err("token not yet valid");
        }
        if time(&claims.iat)?.is_some_and(|iat| now.saturating_add(self.leeway) < iat) {
            return Err("token issued in the future");
        }
        if let Some(iss) = &self.issuer
            && claims.iss.as_ref().and_then(Value::as_str) != Some(iss)
        {
            return Err("wrong issuer");
        }
        if let Some(aud) = &self.audience {
            let ok = match &claims.aud {
                Some(Value::String(a)) => a == aud,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err("wrong audience");
            }
        }
        Ok(())
    }
}

/// Seconds since the epoch, for token times.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl CookieKeys {
    /// Reads `--cookie-key-file`.
    pub fn from_file(path: &Path) -> anyhow::Result<CookieKeys> {
        let mut keys = Vec::new();
        for (_, key) in key_lines(path)? {
            if key.len() < MIN_SECRET_BYTES {
                bail!("{}: a key of {} bytes; at least {MIN_SECRET_BYTES}", path.display(), key.len());
            }
            keys.push(key);
        }
        Ok(CookieKeys(keys))
    }

    /// A random key for this process only: what it signs does not verify
    /// after a restart or on another host (`--cookie-key-file` for that).
    pub fn ephemeral() -> anyhow::Result<CookieKeys> {
        let mut key = vec![0u8; 32];
        crate::random::fill(&mut key).context("cannot read /dev/urandom")?;
        Ok(CookieKeys(vec![key]))
    }

    fn mac(key: &[u8], name: &str, value: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        // The name is signed too: a value signed for one cookie is not
        // good for another.
        mac.update(b"house-cookie\0");
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(value.as_bytes());
        mac
    }

    /// `value.SIGNATURE`, what goes in the `Set-Cookie`.
    pub fn sign(&self, name: &str, value: &str) -> String {
        let tag = Self::mac(&self.0[0], name, value).finalize().into_bytes();
        format!("{value}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The value a signed cookie carries, if its signature verifies under
    /// one of the keys.
    pub fn verify<'a>(&self, name: &str, signed: &'a str) -> Option<&'a str> {
        let (value, tag) = signed.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.0.iter().any(|k| Self::mac(k, name, value).verify_slice(&tag).is_ok()).then_some(value)
    }
}

/// Makes `path` a new cookie key file (0600) if it does not exist: for
/// `house new` and `make run`.
pub fn ensure_key_file(path: &Path) -> anyhow::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    let mut key = [0u8; 32];
    crate::random::fill(&mut key).context("cannot read /dev/urandom")?;
    writeln!(file, "# a cookie-signing key (house --cookie-key-file): keep it secret\n{}", STANDARD.encode(key))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(claims: &str, key: &[u8]) -> String {
        let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn tokens() {
        let key = [7u8; 32];
        let keys = TokenKeys { hs256: vec![(None, key.to_vec())], leeway: 60, ..TokenKeys::default() };
        let t = hs(r#"{"sub":"ada","exp":1000}"#, &key);
        assert_eq!(keys.verify(&t, 1000).unwrap(), r#"{"sub":"ada","exp":1000}"#);
        assert_eq!(keys.verify(&t, 1061), Err("token expired"));
        assert_eq!(keys.verify(&hs(r#"{"sub":"ada"}"#, &key), 0), Err("token has no exp"));
        assert_eq!(keys.verify(&hs(r#"{"exp":9}"#, &[8u8; 32]), 0), Err("bad signature"));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert_eq!(keys.verify(&none, 0), Err("unsupported alg (HS256 or EdDSA)"));
        assert_eq!(keys.verify("a.b", 0), Err("malformed token (not three parts)"));
    }

    #[test]
    fn cookies() {
        let keys = CookieKeys(vec![vec![1u8; 32]]);
        let s = keys.sign("sid", "abc");
        assert_eq!(keys.verify("sid", &s), Some("abc"));
        assert_eq!(keys.verify("other", &s), None, "signed for another cookie");
        assert_eq!(keys.verify("sid", &s.replace("abc", "abd")), None);
        assert_eq!(keys.verify("sid", "abc"), None);
        let rotated = CookieKeys(vec![vec![2u8; 32], vec![1u8; 32]]);
        assert_eq!(rotated.verify("sid", &s), Some("abc"), "an older key still verifies");
    }
}
