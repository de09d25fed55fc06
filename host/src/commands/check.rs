//! `house check FILE.wasm...`: loads each module the way the server does
//! (the same compiler process and bounds, the same manifest checks, one
//! instantiation), with nothing served, and prints what it would serve or
//! the precise refusal.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::config::Config;
use crate::guests::Runtime;
use crate::guests::compile::Compiler;
use crate::guests::loader::{self, LoadedModule, Loading};
use crate::guests::manifest::{Kind, RulesView};

/// Checks every file; `Ok(true)` if all of them would load.
pub fn run(cfg: &Config, files: &[std::path::PathBuf]) -> anyhow::Result<bool> {
    let runtime = Runtime::new(cfg.guest.clone(), cfg.limits.sse_buffer)?;
    let loading = Loading {
        cache: None,
        compiler: Compiler::child(cfg.load.compile_time, cfg.load.compile_memory)?,
        limits: cfg.load.clone(),
    };
    let mut all = true;
    for path in files {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        match check(&runtime, &loading, path, &name) {
            // A closed pipe (`| head`) is not an error worth a panic.
            Ok(module) => drop(std::io::stdout().write_all(describe(&module).as_bytes())),
            Err(reason) => {
                all = false;
                let _ = writeln!(std::io::stderr(), "{name}: refused: {reason}");
            }
        }
    }
    Ok(all)
}

fn check(runtime: &Runtime, loading: &Loading, path: &Path, name: &str) -> Result<LoadedModule, String> {
    let max = loading.limits.module_bytes;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > max {
        return Err(format!("the file is {} bytes, over --max-module-bytes {max}", bytes.len()));
    }
    loader::load(runtime, loading, name, &bytes)
}

/// What the module serves, one handler per paragraph, one input per line.
fn describe(m: &LoadedModule) -> String {
    let mut out =
        format!("{}: ok, {} bytes, {} handlers, {} static files\n", m.file, m.size, m.handlers.len(), m.statics.len());
    for (name, ty, rules) in &m.types {
        let rules = serde_json::to_value(RulesView(rules)).unwrap_or_default();
        let _ = writeln!(out, "  type {name}: {}, rules {}", ty.name(), without_nulls(&rules));
    }
    for o in &m.objects {
        let _ = writeln!(out, "  type {}: object, fields {}", o.name, house_abi::body::describe(o)["fields"]);
    }
    for (h, _) in &m.handlers {
        let methods = h.methods.names().join("|");
        let kind = match h.kind {
            Kind::Closing => "closing",
            Kind::Stream => "stream, text/event-stream or WebSocket",
            Kind::Message => "message, a WebSocket message",
        };
        let mut shown_type = if h.kind == Kind::Stream { String::new() } else { format!(", {}", h.content_type) };
        if !h.statuses.is_empty() {
            let list: Vec<String> = h.statuses.iter().map(u16::to_string).collect();
            shown_type.push_str(&format!(", answers {}", list.join(" ")));
        }
        let _ = writeln!(out, "  {methods} {}  (handler {}, {kind}{shown_type})", h.path, h.name);
        for p in &h.params {
            let mut line = format!("    {} ({}): {}", p.name, p.source.name(), p.type_name);
            if p.signed {
                line.push_str(", signed");
            }
            if let Some(c) = &p.token_cookie {
                let _ = write!(line, ", or cookie {c}");
            }
            let rules = without_nulls(&p.raw_rules);
            if rules.as_object().is_some_and(|r| !r.is_empty()) {
                let _ = write!(line, ", rules {rules}");
            }
            match p.default {
                Some(_) => {
                    let _ = write!(line, ", default {}", p.default_json());
                }
                None => line.push_str(", required"),
            }
            let _ = writeln!(out, "{line}");
        }
    }
    for f in &m.statics {
        let _ = writeln!(
            out,
            "  GET {}  (static file, {}, {} bytes, ETag {})",
            f.path,
            f.content_type,
            f.body.len(),
            f.etag
        );
    }
    out
}

/// Rules as the manifest has them, without the bounds that are absent.
fn without_nulls(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect()
        }
        other => other.clone(),
    }
}
