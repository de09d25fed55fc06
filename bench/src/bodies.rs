//! Typed inputs (issue 25's figures): a flood of bodies the host refuses
//! against the floor (17); the host's validation of a valid 10-field body
//! (18); verifying an HS256 (19) and an EdDSA (20) token; and a call taking
//! a typed body against the same handler taking `Json` and parsing it with
//! serde in the guest, with both modules' sizes (21).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use house_abi::body::{self, Named};
use house_abi::manifest::Type;
use house_host::guests::{Handler, Runtime, validate};
use house_host::identity::TokenKeys;
use serde_json::json;

use crate::guestcall::{alternated, runtime};
use crate::report::{Report, Row};
use crate::{servers, wrk};

/// The order of scenarios 18 and 21: 10 fields, 2 of them objects.
pub const ORDER: &str = r#"{"id": 7, "customer": "Ada Lovelace", "qty": 3, "discount": 0.25, "gift": false,
  "via": "courier", "note": "ring twice", "priority": 2,
  "ship_to": {"city": "Lyon", "country": "FR"}, "bill_to": {"city": "Nice", "country": "FR"}}"#;

/// The same order with one rule broken deep inside: what the flood sends.
const BAD_ORDER: &str = r#"{"order-id": 7, "lines": [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 0}],
  "ship_to": {"city": "Lyon", "country": "FR"}, "discount": 0.25}"#;

pub fn run(report: &mut Report, guests: &Path, cache: &Path, work: &Path, iters: u32) -> anyhow::Result<()> {
    flood(report, guests, cache, work)?;
    validation(report, iters)?;
    tokens(report, work, iters)?;
    typed_against_serde(report, work, iters)
}

/// 17: the board's `/order` with a line's quantity 0, every request a 400
/// from the host (no instance), against the floor's 404s.
fn flood(report: &mut Report, guests: &Path, cache: &Path, work: &Path) -> anyhow::Result<()> {
    const ROUNDS: usize = 3;
    let secs = wrk::seconds();
    eprintln!("bench: a flood of invalid bodies, {ROUNDS} rounds of {secs} s");
    let floor = servers::baseline("floor")?;
    let house = servers::house(guests, cache, &work.join("bodies.log"), &["--threads", "1"])?;
    let script = work.join("post.lua");
    let (mut base, mut flood, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        base.push(wrk::run(&floor, "/", secs)?);
        flood.push(wrk::post_json(&house, "/order", BAD_ORDER, secs, &script)?);
        // The same requests to a path nobody serves: their bytes, framed
        // and answered (404), without the body's check.
        bytes.push(wrk::post_json(&house, "/nope", BAD_ORDER, secs, &script)?);
    }
    let (base, flood, bytes) = (wrk::Load::median(&base), wrk::Load::median(&flood), wrk::Load::median(&bytes));
    if flood.non_2xx < flood.requests {
        bail!("the invalid bodies were not all refused: {flood:?}");
    }
    let name = "17. flood of 400s (a JSON body breaking a nested rule)";
    let floor_name = "bare mio+httparse floor";
    report.row(Row::higher(name, "requests/s", flood.rps, base.rps, floor_name, Some(0.95)));
    report.row(Row::lower(name, "server CPU µs/request", flood.cpu_us, base.cpu_us, floor_name, Some(1.2)));
    report.row(Row::lower(name, "p99 latency µs", flood.p99_us, base.p99_us, floor_name, None));
    let same = "the same POSTs to a path nobody serves (404)";
    report.row(Row::lower(name, "server CPU µs/request vs the same bytes", flood.cpu_us, bytes.cpu_us, same, None));
    Ok(())
}

fn order_type() -> anyhow::Result<body::Object> {
    let types: std::collections::BTreeMap<String, Type> = serde_json::from_value(json!({
        "Order": {"base": "object", "fields": [
            {"name": "id", "type": "integer", "rules": {"range": {"min": 1}}},
            {"name": "customer", "type": "string", "rules": {"chars": {"min": 1, "max": 64}}},
            {"name": "qty", "type": "integer", "rules": {"range": {"min": 1, "max": 99}}},
            {"name": "discount", "type": "float", "rules": {"range": {"min": 0.0, "max": 1.0}}},
            {"name": "gift", "type": "boolean"},
            {"name": "via", "type": "keyword", "rules": {"one_of": ["post", "courier"]}},
            {"name": "note", "type": "string", "rules": {"chars": {"max": 200}}},
            {"name": "priority", "type": "integer", "rules": {"range": {"min": 1, "max": 5}}},
            {"name": "ship_to", "type": "Address"},
            {"name": "bill_to", "type": "Address"}
        ]},
        "Address": {"base": "object", "fields": [
            {"name": "city", "type": "string", "rules": {"chars": {"min": 1, "max": 40}}},
            {"name": "country", "type": "string", "rules": {"chars": {"min": 2, "max": 2}}}
        ]}
    }))?;
    body::resolve("Order", &|n| types.get(n).map(Named::Object)).map_err(anyhow::Error::msg)
}

/// 18: parse, check and encode the order, against parsing it alone
/// (`serde_json::Value`, what any JSON handling costs).
fn validation(report: &mut Report, iters: u32) -> anyhow::Result<()> {
    let order = order_type()?;
    let mut out = Vec::with_capacity(256);
    let (host, parse) = alternated(
        iters,
        || {
            out.clear();
            body::validate(&order, "body", ORDER, &mut out).map_err(anyhow::Error::msg)?;
            Ok(out.len())
        },
        || Ok(serde_json::from_str::<serde_json::Value>(ORDER)?.as_object().map_or(0, |m| m.len())),
    )?;
    report.row(
        Row::time(
            "18. a valid body of 10 fields (2 nested) validated by the host",
            "time per body",
            host,
            parse,
            "parsing it alone (serde_json::Value)",
            None,
        )
        .at_most(Duration::from_micros(2)),
    );
    Ok(())
}

/// 19, 20: a token's whole verification (header, signature, times, claims
/// as JSON), against the signature's primitive alone.
fn tokens(report: &mut Report, work: &Path, iters: u32) -> anyhow::Result<()> {
    let secret = [7u8; 32];
    let signing = SigningKey::from_bytes(&[9u8; 32]);
    let hs_file = work.join("hs.keys");
    std::fs::write(&hs_file, format!("k1 {}\n", STANDARD.encode(secret)))?;
    let ed_file = work.join("ed.keys");
    std::fs::write(&ed_file, format!("e1 {}\n", STANDARD.encode(signing.verifying_key().to_bytes())))?;
    let mut keys = TokenKeys::default();
    keys.leeway = 60;
    keys.add_secrets(&hs_file)?;
    keys.add_public_keys(&ed_file)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let claims = json!({"sub": "ada", "rooms": ["lobby"], "can": ["read", "write"], "exp": now + 3600, "iat": now});
    let compact = |alg: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>| {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = sign(input.as_bytes());
        (format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)), input)
    };
    let (hs, hs_input) = compact("HS256", &|m| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).expect("any key length");
        mac.update(m);
        mac.finalize().into_bytes().to_vec()
    });
    let (ed, ed_input) = compact("EdDSA", &|m| signing.sign(m).to_bytes().to_vec());
    keys.verify(&hs, now).map_err(anyhow::Error::msg).context("the HS256 token")?;
    keys.verify(&ed, now).map_err(anyhow::Error::msg).context("the EdDSA token")?;
    let (verify, hmac_alone) = alternated(
        iters,
        || Ok(keys.verify(&hs, now).map_err(anyhow::Error::msg)?.len()),
        || {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret)?;
            mac.update(hs_input.as_bytes());
            Ok(mac.finalize().into_bytes().len())
        },
    )?;
    report.row(
        Row::time(
            "19. HS256 token verified (signature, exp/iat, claims)",
            "time per token",
            verify,
            hmac_alone,
            "HMAC-SHA-256 of its input alone",
            None,
        )
        .at_most(Duration::from_micros(3)),
    );
    let signature =
        ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(ed.rsplit('.').next().unwrap_or(""))?)?;
    let public = signing.verifying_key();
    let (verify, ed_alone) = alternated(
        iters / 10,
        || Ok(keys.verify(&ed, now).map_err(anyhow::Error::msg)?.len()),
        || Ok(usize::from(public.verify_strict(ed_input.as_bytes(), &signature).is_ok())),
    )?;
    report.row(
        Row::time(
            "20. EdDSA token verified (signature, exp/iat, claims)",
            "time per token",
            verify,
            ed_alone,
            "Ed25519 verify_strict alone",
            None,
        )
        .at_most(Duration::from_micros(60)),
    );
    Ok(())
}

/// The `/order` handler of `file` (a test guest), loaded as the server does.
fn order_handler(runtime: &Arc<Runtime>, work: &Path, file: &str) -> anyhow::Result<Arc<Handler>> {
    let dir = work.join(file.trim_end_matches(".wasm"));
    std::fs::create_dir_all(&dir)?;
    let source = crate::repo().join("target/test-guests").join(file);
    std::fs::copy(&source, dir.join(file)).with_context(|| format!("{} (run make guests)", source.display()))?;
    crate::guestcall::handler(runtime, &dir, "/order", "POST")
}

/// 21: a request's validation and call, typed body against `Json` parsed
/// by the guest with serde (the same order, the same answer).
fn typed_against_serde(report: &mut Report, work: &Path, iters: u32) -> anyhow::Result<()> {
    let runtime = runtime(true)?;
    let typed = order_handler(&runtime, work, "order_typed.wasm")?;
    let serde = order_handler(&runtime, work, "order_serde.wasm")?;
    let inputs = validate::Inputs { body: Some(ORDER), ..Default::default() };
    let answer = |h: &Arc<Handler>| -> anyhow::Result<Vec<u8>> {
        let args = validate::encode_args(&h.spec.params, &inputs).map_err(|e| anyhow::anyhow!("{}", e.reason))?;
        let out = runtime.call(h, &args).map_err(|f| anyhow::anyhow!("guest call: {f}"))?;
        Ok(out.body)
    };
    let (a, b) = (answer(&typed)?, answer(&serde)?);
    if a != b {
        bail!(
            "the two guests answer differently: {:?} and {:?}",
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
    }
    let (t_typed, t_serde) = alternated(iters, || Ok(answer(&typed)?.len()), || Ok(answer(&serde)?.len()))?;
    report.row(Row::time(
        "21. a call taking a typed 10-field body",
        "time per request (validation + call)",
        t_typed,
        t_serde,
        "the same handler taking Json, parsed and checked with serde in the guest",
        Some(1.0),
    ));
    let size = |f: &str| std::fs::metadata(crate::repo().join("target/test-guests").join(f)).map(|m| m.len() as f64);
    report.row(Row::bytes(
        "21. a call taking a typed 10-field body",
        "module size",
        size("order_typed.wasm")?,
        size("order_serde.wasm")?,
        "the serde twin",
    ));
    Ok(())
}
