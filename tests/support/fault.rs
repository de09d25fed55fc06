//! Hand-written guests in WAT, for the faults a well-behaved SDK guest cannot
//! produce: loops, traps, runaway memory, garbage returns, bad manifests.

/// A handler written in WAT: its manifest JSON and the body of its
/// `(func (param i32 i32) (result i64))`.
pub struct WatHandler<'a> {
    pub name: &'a str,
    pub manifest: String,
    pub body: &'a str,
}

impl<'a> WatHandler<'a> {
    /// A closing handler without parameters.
    pub fn closing(name: &'a str, body: &'a str) -> WatHandler<'a> {
        WatHandler { name, manifest: format!(r#"{{"name":"{name}","kind":"closing"}}"#), body }
    }
}

/// The WAT text of a response block saying `body` with status 200.
pub fn ok_block(body: &str) -> String {
    let mut bytes = vec![0u8; 12];
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(body.as_bytes());
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A module exporting `handlers`, with `abi` as its ABI version. Handler
/// bodies may return `(global.get $ok)`: a 200 saying "ok".
pub fn module(abi: i32, handlers: &[WatHandler<'_>]) -> Vec<u8> {
    module_with(abi, handlers, "")
}

/// As [`module`], with extra top-level WAT (imports go first in `extra`).
pub fn module_with(abi: i32, handlers: &[WatHandler<'_>], extra: &str) -> Vec<u8> {
    build(abi, handlers, extra, "")
}

/// As [`module`], with extra top-level WAT after the memory (data segments).
pub fn module_after(abi: i32, handlers: &[WatHandler<'_>], extra: &str) -> Vec<u8> {
    build(abi, handlers, "", extra)
}

/// As [`module`], with top-level WAT both before the memory (imports) and
/// after it (data segments).
pub fn module_parts(abi: i32, handlers: &[WatHandler<'_>], before: &str, after: &str) -> Vec<u8> {
    build(abi, handlers, before, after)
}

/// The imports of the house ABI, as WAT, for [`module_parts`]' `before`.
pub const IMPORTS: &str = r#"
    (import "house" "subscribe" (func $subscribe (param i32 i32) (result i32)))
    (import "house" "publish" (func $publish (param i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)))
    (import "house" "log" (func $log (param i32 i32)))"#;

fn build(abi: i32, handlers: &[WatHandler<'_>], before: &str, after: &str) -> Vec<u8> {
    let ok = ok_block("ok");
    let ok_len = 16 + 2;
    let mut offset = 4096u64;
    let mut items = String::new();
    for h in handlers {
        let json = h.manifest.replace('\\', "\\\\").replace('"', "\\\"");
        let packed = ((h.manifest.len() as u64) << 32) | offset;
        items.push_str(&format!(
            "(data (i32.const {offset}) \"{json}\")\n\
             (func (export \"house_meta.{name}\") (result i64) i64.const {packed})\n\
             (func (export \"house_handler.{name}\") (param $ptr i32) (param $len i32) (result i64) {body})\n",
            name = h.name,
            body = h.body,
        ));
        offset += h.manifest.len() as u64 + 16;
    }
    let text = format!(
        "(module
           {before}
           (memory (export \"memory\") 1)
           {after}
           (global $ok i64 (i64.const {ok_packed}))
           (data (i32.const 1024) \"{ok}\")
           (func (export \"house_abi_version\") (result i32) i32.const {abi})
           (func (export \"house_alloc\") (param i32) (result i32) i32.const 8192)
           {items})",
        ok_packed = ((ok_len as u64) << 32) | 1024,
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad test WAT: {e}\n{text}"))
}
