//! Loading one module: compile it (or take it from the cache), check its
//! imports and exports against the ABI, read and check its manifest. A
//! module that fails any check is refused whole, with one reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use house_abi::{ARGS_EXPORT, ARGS_SIZE_EXPORT};
use wasmtime::{ExternType, InstancePre, ModuleExport, Store};

use super::abi::CallCtx;
use super::compile::first_line;
use super::engine::{Reset, Runtime, run_here};
use super::manifest::{self, ABI_VERSION, HandlerSpec, Kind, Rules, Ty};
use super::statics::StaticFile;
use super::warm::{Instances, Plan, Warm};

use house_abi::exports;
pub use house_abi::exports::{HANDLER_PREFIX, META_PREFIX, TYPE_PREFIX};

/// A module that passed every check, ready to instantiate per request.
pub struct LoadedModule {
    /// The file name in the guests folder (`chat.wasm`).
    pub file: String,
    pub pre: InstancePre<CallCtx>,
    /// How its instances' memory is reset (which engine it runs in).
    pub reset: Reset,
    /// Whether its instances are reset and kept (`warm`), or why not.
    pub instances: Instances,
    pub memory: ModuleExport,
    pub alloc: Option<ModuleExport>,
    /// The module's argument buffer (`house_args`): where and how many
    /// bytes, checked to be inside its initial memory.
    pub args_buffer: Option<(u32, u32)>,
    pub handlers: Vec<(HandlerSpec, ModuleExport)>,
    /// Named types, for the introspection endpoint: (name, base, rules).
    pub types: Vec<(String, Ty, Rules)>,
    /// Object types (JSON bodies, token claims), for the same.
    pub objects: Vec<std::sync::Arc<house_abi::body::Object>>,
    /// The files the host serves for it, by path.
    pub statics: Vec<Arc<StaticFile>>,
    pub size: usize,
    pub loaded_at: SystemTime,
    pub source: super::cache::Source,
}

/// How modules are loaded: where compiled code is cached, who compiles it,
/// and the limits a module must stay within.
#[derive(Debug, Clone)]
pub struct Loading {
    pub cache: Option<super::cache::Cache>,
    pub compiler: super::compile::Compiler,
    pub limits: crate::config::LoadLimits,
}

/// Compiles (or takes from the cache) and checks `bytes` as the module `file`.
pub fn load(runtime: &Runtime, loading: &Loading, file: &str, bytes: &[u8]) -> Result<LoadedModule, String> {
    let initial_memory = super::compile::check_shape(bytes, runtime.limits().memory)?;
    let reset = Reset::for_memory(initial_memory);
    let engine = runtime.engine(reset);
    let plan = match runtime.limits().warm {
        0 => Plan::Fresh("--guest-warm-instances is 0".into()),
        _ => super::warm::plan(bytes),
    };
    // A reusable module is compiled with its mutable globals exported.
    let code = match &plan {
        Plan::Reuse { bytes, .. } => bytes,
        Plan::Fresh(_) => bytes,
    };
    let (module, source) = super::cache::load(engine, code, loading.cache.as_ref(), &loading.compiler)?;
    for import in module.imports() {
        // The ABI crate's list: the one the linker defines.
        if import.module() != house_abi::imports::MODULE || house_abi::imports::find(import.name()).is_none() {
            let names: Vec<&str> = house_abi::imports::ALL.iter().map(|i| i.name).collect();
            return Err(format!(
                "imports {}.{}, but a guest may import only house.{{{}}}",
                import.module(),
                import.name(),
                names.join(",")
            ));
        }
    }
    let mut handler_names = Vec::new();
    let mut type_names = Vec::new();
    let mut metas = HashMap::new();
    for export in module.exports() {
        let name = export.name();
        if let Some(h) = name.strip_prefix(HANDLER_PREFIX) {
            expect_func(&export.ty(), name)?;
            handler_names.push(h.to_owned());
        } else if let Some(h) = name.strip_prefix(META_PREFIX) {
            expect_func(&export.ty(), name)?;
            metas.insert(h.to_owned(), name.to_owned());
        } else if let Some(t) = name.strip_prefix(TYPE_PREFIX) {
            expect_func(&export.ty(), name)?;
            type_names.push(t.to_owned());
        }
    }
    let statics: Vec<Arc<StaticFile>> = super::statics::read(bytes)?.into_iter().map(Arc::new).collect();
    if handler_names.is_empty() && statics.is_empty() {
        return Err(format!("exports no handlers (no {HANDLER_PREFIX}* function) and has no static files"));
    }
    let memory = module.get_export_index("memory").ok_or("does not export its memory as \"memory\"")?;
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err("export \"memory\" is not a memory".into());
    }
    if module.get_export(exports::ABI_VERSION).is_none() {
        return Err(format!("does not export {}: not a house guest", exports::ABI_VERSION));
    }
    let alloc = module.get_export_index(exports::ALLOC);
    let pre = runtime.linker(reset).instantiate_pre(&module).map_err(|e| format!("cannot link: {}", first_line(&e)))?;

    // The manifest is code, not a custom section (linkers drop those):
    // run the module once to read it.
    let mut store = runtime.store(reset, Kind::Closing);
    // Async: a module importing an async host function (the key-value
    // reads) can only be instantiated and called so.
    let instance = run_here(pre.instantiate_async(&mut store))
        .map_err(|e| format!("cannot instantiate: {}", runtime.describe(e)))?;
    // A fresh instance's state, before anything runs in it.
    let instances = match plan {
        Plan::Reuse { globals, chunks, .. } => {
            let memory = instance.get_memory(&mut store, "memory").ok_or("no memory")?;
            let record = (&globals[..], chunks);
            Instances::Reused(Box::new(Warm::new(
                &mut store,
                &instance,
                memory,
                &module,
                record,
                runtime.warm().clone(),
            )?))
        }
        Plan::Fresh(why) => Instances::New { why },
    };
    let version = instance
        .get_typed_func::<(), i32>(&mut store, exports::ABI_VERSION)
        .and_then(|f| run_here(f.call_async(&mut store, ())))
        .map_err(|e| format!("{}: {}", exports::ABI_VERSION, runtime.describe(e)))?;
    if version != ABI_VERSION {
        return Err(format!("speaks house ABI version {version}, this host speaks {ABI_VERSION}"));
    }
    let args_buffer = args_buffer(&instance, &mut store)?;
    let mut read_json = |export: &str| -> Result<String, String> {
        let packed = instance
            .get_typed_func::<(), u64>(&mut store, export)
            .and_then(|f| run_here(f.call_async(&mut store, ())))
            .map_err(|e| format!("{export}: {}", runtime.describe(e)))?;
        let len = (packed >> 32) as usize;
        let max = loading.limits.manifest_bytes;
        if len > max {
            return Err(format!("{export}: a manifest entry of {len} bytes, over --max-manifest-bytes {max}"));
        }
        let mem = instance.get_memory(&mut store, "memory").ok_or("no memory")?;
        let bytes = super::abi::slice(mem.data(&store), packed as u32, (packed >> 32) as u32)
            .map_err(|e| format!("{export}: {e}"))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{export}: manifest is not UTF-8"))
    };

    let mut entries = Vec::with_capacity(type_names.len());
    for t in &type_names {
        entries.push((t.clone(), read_json(&format!("{TYPE_PREFIX}{t}"))?));
    }
    let types = manifest::Types::read(&entries)?;
    let type_list = types.list();
    let objects = types.object_list();
    let mut handlers: Vec<(HandlerSpec, ModuleExport)> = Vec::new();
    for h in &handler_names {
        let meta = metas.get(h).ok_or_else(|| format!("handler {h} has no {META_PREFIX}{h} export"))?;
        let json = read_json(meta)?;
        let spec = manifest::read_handler(h, &json, &types)?;
        // One path may have a handler per method; the same shape spelt
        // another way would capture under other names.
        let shape = crate::router::shape(&spec.path);
        for (other, _) in handlers.iter().filter(|(o, _)| crate::router::shape(&o.path) == shape) {
            let both = spec.methods.names().into_iter().filter(|m| other.methods.allows(m)).collect::<Vec<_>>();
            if !both.is_empty() || other.path != spec.path {
                return Err(format!("handlers {} and {} both claim {}", other.name, spec.name, spec.path));
            }
        }
        if !spec.params.is_empty() && alloc.is_none() {
            return Err(format!("handler {h} takes parameters but house_alloc is not exported"));
        }
        let export = module.get_export_index(&format!("{HANDLER_PREFIX}{h}")).ok_or("export vanished")?;
        handlers.push((spec, export));
    }
    // A message comes in on a socket a stream handler opened.
    for (h, _) in handlers.iter().filter(|(h, _)| h.kind == Kind::Message) {
        if !handlers.iter().any(|(s, _)| s.kind == Kind::Stream && s.path == h.path) {
            return Err(format!(
                "message handler {} has no stream handler at {} to open its WebSocket",
                h.name, h.path
            ));
        }
    }
    handlers.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    // A static file answers GET and HEAD at its path: a handler of the
    // module may take other methods there, not those.
    for file in &statics {
        let shape = crate::router::shape(&file.path);
        if let Some((h, _)) =
            handlers.iter().find(|(h, _)| crate::router::shape(&h.path) == shape && h.methods.allows("GET"))
        {
            return Err(format!("static file {} and handler {} both claim GET {}", file.path, h.name, file.path));
        }
    }
    Ok(LoadedModule {
        file: file.to_owned(),
        pre,
        reset,
        instances,
        memory,
        alloc,
        args_buffer,
        handlers,
        types: type_list,
        objects,
        statics,
        size: bytes.len(),
        loaded_at: SystemTime::now(),
        source,
    })
}

/// The argument buffer a module offers (docs/ABI.md, "Exports"): both
/// exports or neither, each an i32 global (a data symbol's address), the
/// size a u32 in memory, the buffer inside the initial memory.
fn args_buffer(instance: &wasmtime::Instance, store: &mut Store<CallCtx>) -> Result<Option<(u32, u32)>, String> {
    let mut address = |name: &str| -> Result<Option<u32>, String> {
        match instance.get_export(&mut *store, name) {
            None => Ok(None),
            Some(wasmtime::Extern::Global(g)) => {
                g.get(&mut *store).i32().map(|v| Some(v as u32)).ok_or_else(|| format!("export {name} is not an i32"))
            }
            Some(_) => Err(format!("export {name} is not a global")),
        }
    };
    let (buffer, size) = (address(ARGS_EXPORT)?, address(ARGS_SIZE_EXPORT)?);
    let (buffer, size_at) = match (buffer, size) {
        (None, None) => return Ok(None),
        (Some(b), Some(s)) => (b, s),
        _ => return Err(format!("exports one of {ARGS_EXPORT} and {ARGS_SIZE_EXPORT} without the other")),
    };
    let memory = instance.get_memory(&mut *store, "memory").ok_or("no memory")?;
    let data = memory.data(&*store);
    let size = super::abi::slice(data, size_at, 4).map_err(|e| format!("{ARGS_SIZE_EXPORT}: {e}"))?;
    let size = u32::from_le_bytes(size.try_into().expect("4 bytes"));
    super::abi::slice(data, buffer, size).map_err(|e| format!("{ARGS_EXPORT} of {size} bytes: {e}"))?;
    Ok(Some((buffer, size)))
}

fn expect_func(ty: &ExternType, name: &str) -> Result<(), String> {
    match ty {
        ExternType::Func(_) => Ok(()),
        _ => Err(format!("export {name} is not a function")),
    }
}
