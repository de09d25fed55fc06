//! The guest registry: which module files are loaded, what went wrong with
//! the ones that were refused, and the route table built from them.
//!
//! Route conflicts between modules are resolved the same way whatever order
//! the files arrived in: the module whose file name sorts last (byte order)
//! wins, as the later definition wins in the article, and a warning names
//! both files and the path.

use crate::metrics::{LoadResult, METRICS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Handler;
use super::engine::Runtime;
use super::loader::{self, LoadedModule, Loading};
use super::manifest::{Kind, RulesView};
use super::warm::Instances;
use crate::router::{Methods, Route, Router, Routes, Target};

#[derive(Default)]
struct Entry {
    module: Option<Arc<LoadedModule>>,
    /// The module's handlers, made once per load: route tables rebuilt for
    /// another file's sake keep them, and with them their health.
    handlers: Vec<Arc<Handler>>,
    /// Why the last attempt to load this file failed, if it did.
    error: Option<String>,
}

/// Files loaded at once: a module that is slow to compile holds one slot,
/// and the others keep loading.
pub const PARALLEL_LOADS: usize = 4;

/// One file's load, done on any thread, applied on the registry's.
pub struct Loaded {
    pub name: String,
    result: Result<LoadedModule, String>,
    took: Duration,
}

/// Loads the file `name` of `dir`. `None`: the file is empty, a writer has
/// just created it (its close or rename brings it back).
pub fn load_file(dir: &Path, loading: &Loading, runtime: &Runtime, name: &str) -> Option<Loaded> {
    let started = Instant::now();
    let result = match read_settled(&dir.join(name), loading.limits.module_bytes) {
        Ok(bytes) if bytes.is_empty() => return None,
        Ok(bytes) => loader::load(runtime, loading, name, &bytes),
        Err(e) => Err(e),
    };
    Some(Loaded { name: name.to_owned(), result, took: started.elapsed() })
}

pub struct Registry {
    dir: PathBuf,
    loading: Arc<Loading>,
    entries: BTreeMap<String, Entry>,
    /// The conflicts of the current route table, already warned about.
    warned: BTreeSet<String>,
    /// "loaded", "refused", "unloaded" lines, said once the routes they
    /// describe are in place (see `announce`).
    news: Vec<String>,
}

/// Is `name` a file the registry cares about?
pub fn is_guest_file(name: &str) -> bool {
    name.ends_with(".wasm") && !name.starts_with('.')
}

impl Registry {
    pub fn new(dir: PathBuf, loading: Loading) -> Registry {
        Registry {
            dir,
            loading: Arc::new(loading),
            entries: BTreeMap::new(),
            warned: BTreeSet::new(),
            news: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn loading(&self) -> &Arc<Loading> {
        &self.loading
    }

    /// Brings the registry in line with the folder: loads every `.wasm` in
    /// it, forgets files that are gone. Returns whether anything changed.
    pub fn rescan(&mut self, runtime: &Runtime) -> bool {
        let gone: Vec<String> = self.entries.keys().filter(|name| !self.dir.join(name).exists()).cloned().collect();
        let mut changed = false;
        for name in gone {
            changed |= self.remove(&name);
        }
        self.load_all(runtime) || changed
    }

    /// Loads every `.wasm` in the folder. Returns whether any loaded.
    pub fn load_all(&mut self, runtime: &Runtime) -> bool {
        let names: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(dir) => {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| is_guest_file(n)).collect()
            }
            Err(e) => {
                eprintln!("house: cannot read guests folder {}: {e}", self.dir.display());
                return false;
            }
        };
        let mut changed = false;
        for batch in names.chunks(PARALLEL_LOADS) {
            let loaded: Vec<Option<Loaded>> = std::thread::scope(|scope| {
                let jobs: Vec<_> = batch
                    .iter()
                    .map(|name| scope.spawn(|| load_file(&self.dir, &self.loading, runtime, name)))
                    .collect();
                jobs.into_iter().map(|job| job.join().unwrap_or(None)).collect()
            });
            for loaded in loaded.into_iter().flatten() {
                changed |= self.apply(loaded);
            }
        }
        changed
    }

    /// (Re)loads one file, on this thread.
    pub fn load(&mut self, runtime: &Runtime, name: &str) -> bool {
        match load_file(&self.dir, &self.loading, runtime, name) {
            Some(loaded) => self.apply(loaded),
            None => false,
        }
    }

    /// Takes in one file's load. A refused file keeps its earlier version
    /// serving. Returns whether the route table must be rebuilt (a refusal
    /// changes `/_house/guests` too).
    pub fn apply(&mut self, loaded: Loaded) -> bool {
        let Loaded { name, result, took } = loaded;
        let entry = self.entries.entry(name.clone()).or_default();
        match result {
            Ok(module) => {
                let verb = if entry.module.is_some() { "reloaded" } else { "loaded" };
                METRICS.load(if entry.module.is_some() { LoadResult::Reloaded } else { LoadResult::Loaded });
                let paths: Vec<&str> = module.handlers.iter().map(|(h, _)| h.path.as_str()).collect();
                let how = match module.source {
                    super::cache::Source::Cached => ", from cache",
                    super::cache::Source::Compiled => "",
                };
                self.news.push(format!(
                    "house: {verb} {name} ({} bytes, {:.1} ms{how}): {}",
                    module.size,
                    took.as_secs_f64() * 1e3,
                    paths.join(" ")
                ));
                let module = Arc::new(module);
                entry.handlers = module
                    .handlers
                    .iter()
                    .enumerate()
                    .map(|(index, (spec, export))| {
                        Arc::new(Handler {
                            spec: spec.clone(),
                            module: module.clone(),
                            index,
                            export: *export,
                            health: Default::default(),
                        })
                    })
                    .collect();
                entry.module = Some(module);
                entry.error = None;
                true
            }
            Err(reason) => {
                let keeps = if entry.module.is_some() { "; the earlier version keeps serving" } else { "" };
                self.news.push(format!("house: refused {name}: {reason}{keeps}"));
                METRICS.load(LoadResult::Refused);
                entry.error = Some(reason);
                true
            }
        }
    }

    /// Says what changed since the last time: call it once the routes from
    /// [`Registry::routes`] serve, so that a reader of the log who sends a
    /// request at once finds what the line says.
    pub fn announce(&mut self) {
        for line in self.news.drain(..) {
            // One write(2) per line: a reader never sees half of one.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
        }
    }

    /// The file is gone: its routes go with it.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.entries.remove(name) {
            Some(entry) => {
                if entry.module.is_some() {
                    self.news.push(format!("house: unloaded {name}"));
                    METRICS.load(LoadResult::Unloaded);
                }
                entry.module.is_some()
            }
            None => false,
        }
    }

    /// The route table for what is loaded now, its JSON description and
    /// its OpenAPI document.
    pub fn routes(&mut self) -> Routes {
        let mut router = Router::with_builtins();
        let mut owner: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut warnings = BTreeSet::new();
        for (file, entry) in &self.entries {
            // What this module claims: its handlers, then its static files
            // (GET and HEAD at their paths).
            let handlers = entry.handlers.iter().map(|h| {
                let route = Route { methods: h.spec.methods, target: Target::Guest(h.clone()) };
                (h.spec.path.as_str(), h.spec.name.as_str(), route)
            });
            let files = entry.module.iter().flat_map(|m| &m.statics).map(|f| {
                (f.path.as_str(), "static file", Route { methods: Methods::GET, target: Target::Static(f.clone()) })
            });
            for (path, name, route) in handlers.chain(files) {
                // Two patterns of one shape answer the same requests.
                let shape = crate::router::shape(path);
                // Another method of a path this module already serves.
                if owner.get(&shape).is_some_and(|(f, _)| f == file) {
                    router.add(path.to_owned(), route);
                    continue;
                }
                if let Some((other_file, other_handler)) = owner.get(&shape) {
                    let warning = format!(
                        "house: warning: {path} is claimed by {other_file} ({other_handler}) and {file} ({name}); \
                         {file} wins (the file name that sorts last)"
                    );
                    if !self.warned.contains(&warning) {
                        eprintln!("{warning}");
                    }
                    warnings.insert(warning);
                }
                owner.insert(shape, (file.clone(), name.to_owned()));
                router.insert(path.to_owned(), route);
            }
        }
        // A conflict is warned about when it appears, not at every rebuild.
        self.warned = warnings;
        let index = self.describe(&owner);
        let serving = self.entries.iter().flat_map(|(file, entry)| {
            let owner = &owner;
            entry.handlers.iter().filter_map(move |h| {
                let mine = owner.get(&crate::router::shape(&h.spec.path)).is_some_and(|(f, _)| f == file);
                mine.then_some((file.as_str(), &h.spec))
            })
        });
        let files = self.entries.iter().flat_map(|(file, entry)| {
            let owner = &owner;
            entry.module.iter().flat_map(|m| &m.statics).filter_map(move |f| {
                let mine = owner.get(&crate::router::shape(&f.path)).is_some_and(|(o, _)| o == file);
                mine.then_some((file.as_str(), &**f))
            })
        });
        let openapi = super::openapi::document(serving, files);
        // The idle instances change with every call: counted when asked.
        let warm: Vec<(usize, Arc<LoadedModule>)> = self
            .entries
            .values()
            .enumerate()
            .filter_map(|(i, entry)| entry.module.clone().filter(|m| m.instances.warm().is_some()).map(|m| (i, m)))
            .collect();
        let index = move || {
            let mut index = index.clone();
            for (i, m) in &warm {
                if let Some(w) = m.instances.warm() {
                    index["guests"][*i]["instances"]["idle"] = w.idle().into();
                }
            }
            index.to_string()
        };
        let home = self.home(&owner).into();
        Routes { router, home, index: Box::new(index), openapi: openapi.to_string().into() }
    }

    /// The page at `/` (unless a guest serves `/`): a link to each HTML
    /// page the guests serve, so that a visitor who types the host's
    /// address finds the apps instead of a 404. Only pages, which are
    /// meant to be visited; the rest of the routes are on the admin port.
    fn home(&self, owner: &BTreeMap<String, (String, String)>) -> String {
        let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        let mut items = String::new();
        for (file, entry) in &self.entries {
            for f in entry.module.iter().flat_map(|m| &m.statics) {
                let serving = owner.get(&crate::router::shape(&f.path)).is_some_and(|(o, _)| o == file);
                if serving && f.content_type.starts_with("text/html") && !f.path.contains('{') {
                    let (path, module) = (escape(&f.path), escape(file.trim_end_matches(".wasm")));
                    items.push_str(&format!("<li><a href=\"{path}\">{path}</a> <small>{module}</small></li>\n"));
                }
            }
        }
        if items.is_empty() {
            items.push_str("<li>No guest serves a page yet.</li>\n");
        }
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>house</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;\
             padding:0 1rem}}small{{color:#666}}</style></head>\n<body><h1>house</h1><p>The pages served here:</p>\
             \n<ul>\n{items}</ul></body></html>\n"
        )
    }

    fn describe(&self, owner: &BTreeMap<String, (String, String)>) -> Value {
        let guests: Vec<Value> = self
            .entries
            .iter()
            .map(|(file, entry)| {
                let Some(m) = &entry.module else {
                    return json!({"file": file, "loaded": false, "error": entry.error});
                };
                let handlers: Vec<Value> = m
                    .handlers
                    .iter()
                    .map(|(h, _)| {
                        let params: Vec<Value> = h
                            .params
                            .iter()
                            .map(|p| {
                                let mut d = json!({"name": p.name, "in": p.source.name(), "type": p.type_name,
                                       "base": p.ty.name(), "rules": p.raw_rules, "required": p.default.is_none(),
                                       "default": p.default_json()});
                                if let Some(o) = &p.object {
                                    d["base"] = json!(house_abi::body::OBJECT);
                                    d["schema"] = house_abi::body::json_schema(o);
                                }
                                if p.signed {
                                    d["signed"] = json!(true);
                                }
                                if let Some(c) = &p.token_cookie {
                                    d["cookie"] = json!(c);
                                }
                                d
                            })
                            .collect();
                        let serving = owner.get(&crate::router::shape(&h.path)).is_some_and(|(f, _)| f == file);
                        // What the client gets: a stream is always SSE.
                        let content_type = match h.kind {
                            Kind::Stream => "text/event-stream; charset=utf-8",
                            Kind::Closing | Kind::Message => h.content_type.as_str(),
                        };
                        json!({"name": h.name, "path": h.path, "kind": h.kind, "methods": h.methods.names(),
                               "content_type": content_type, "statuses": h.statuses, "params": params,
                               "serving": serving})
                    })
                    .collect();
                let types: Vec<Value> = m
                    .types
                    .iter()
                    .map(|(n, ty, rules)| json!({"name": n, "base": ty.name(), "rules": RulesView(rules)}))
                    .chain(m.objects.iter().map(|o| {
                        let mut d = house_abi::body::describe(o);
                        d["base"] = json!(house_abi::body::OBJECT);
                        d
                    }))
                    .collect();
                let statics: Vec<Value> = m
                    .statics
                    .iter()
                    .map(|f| {
                        let serving = owner.get(&crate::router::shape(&f.path)).is_some_and(|(o, _)| o == file);
                        json!({"path": f.path, "content_type": f.content_type, "size": f.body.len(), "etag": f.etag,
                               "serving": serving})
                    })
                    .collect();
                let instances = match &m.instances {
                    Instances::Reused(w) => json!({"reused": true, "idle": 0, "restores": w.restores()}),
                    Instances::New { why } => json!({"reused": false, "why_not": why}),
                };
                json!({"file": file, "loaded": true, "size": m.size, "loaded_at": httpdate::fmt_http_date(m.loaded_at),
                       "memory_reset": m.reset.name(), "instances": instances, "error": entry.error,
                       "handlers": handlers, "types": types, "static_files": statics})
            })
            .collect();
        json!({ "guests": guests })
    }
}

/// Reads a file that is not being written: its length must be the same
/// before and after the read (a writer still at work shows up here, and is
/// also caught by validation: a truncated module does not parse). A file
/// over `max` bytes is refused unread.
fn read_settled(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    let before = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if before.len() > max as u64 {
        return Err(format!("the file is {} bytes, over --max-module-bytes {max}", before.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let after = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if before.len() != after.len()
        || after.len() != bytes.len() as u64
        || before.modified().ok() != after.modified().ok()
    {
        return Err("the file changed while it was read; waiting for the writer".into());
    }
    Ok(bytes)
}
