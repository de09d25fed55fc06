//! The linker every call links against: the imports that never wait
//! (`abi`'s, with a call's context) and here those that may wait on a
//! store (docs/ABI.md, "Imports"): the key-value operations and
//! `presence`. On Redis each is a round trip: the call is parked (its loop
//! serving others) until the reply.

use wasmtime::{Caller, Engine, Linker};

use super::abi::{
    BAD_CHANNEL, CallCtx, KV_ABSENT, KV_UNAVAILABLE, OK, read_bytes, read_str, sync_imports, valid_channel, write_bytes,
};
use crate::engine::kv::{KvError, Pending};

/// Every import of the ABI.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<CallCtx>> {
    let mut linker = sync_imports(engine)?;
    kv_imports(&mut linker)?;
    presence_import(&mut linker)?;
    Ok(linker)
}

/// The key-value imports (docs/ABI.md, "Key-value data"). Those that may
/// read the store are async: on Redis a read is a round trip, and the call
/// is parked (its loop serving others) until the reply.
fn kv_imports(linker: &mut Linker<CallCtx>) -> anyhow::Result<()> {
    linker.func_wrap_async("house", "kv_get", |mut caller: Caller<'_, CallCtx>, (key, key_len): (u32, u32)| {
        Box::new(async move {
            let key = read_bytes(&mut caller, key, key_len)?;
            Ok(match with_kv(&mut caller, async |kv| kv.get(&key).await).await? {
                Ok(Some(value)) => {
                    let n = value.len() as i64;
                    caller.data_mut().stash = value;
                    n
                }
                Ok(None) => KV_ABSENT,
                Err(c) => i64::from(c),
            })
        })
    })?;
    linker.func_wrap("house", "kv_read", |mut caller: Caller<'_, CallCtx>, ptr: u32, len: u32| {
        let stash = std::mem::take(&mut caller.data_mut().stash);
        let n = stash.len().min(len as usize);
        write_bytes(&mut caller, ptr, &stash[..n])?;
        Ok(n as i32)
    })?;
    linker.func_wrap_async(
        "house",
        "kv_set",
        |mut caller: Caller<'_, CallCtx>, (key, key_len, value, value_len, ttl_ms): (u32, u32, u32, u32, i64)| {
            Box::new(async move {
                let key = read_bytes(&mut caller, key, key_len)?;
                let value = read_bytes(&mut caller, value, value_len)?;
                let ttl = u64::try_from(ttl_ms).ok().filter(|&t| t > 0).map(std::time::Duration::from_millis);
                Ok(with_kv(&mut caller, async |kv| kv.set(&key, &value, ttl).await).await?.map_or_else(|c| c, |()| OK))
            })
        },
    )?;
    linker.func_wrap("house", "kv_delete", |mut caller: Caller<'_, CallCtx>, key: u32, key_len: u32| {
        let key = read_bytes(&mut caller, key, key_len)?;
        Ok(match caller.data_mut().kv.as_mut() {
            Some(pending) => pending.delete(&key).map_or_else(code, |()| OK),
            None => KV_UNAVAILABLE,
        })
    })?;
    linker.func_wrap_async(
        "house",
        "kv_incr",
        |mut caller: Caller<'_, CallCtx>, (key, key_len, delta, out): (u32, u32, i64, u32)| {
            Box::new(async move {
                let key = read_bytes(&mut caller, key, key_len)?;
                match with_kv(&mut caller, async |kv| kv.incr(&key, delta).await).await? {
                    Ok(n) => {
                        write_bytes(&mut caller, out, &n.to_le_bytes())?;
                        Ok(OK)
                    }
                    Err(c) => Ok(c),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        "house",
        "kv_list",
        |mut caller: Caller<'_, CallCtx>, (prefix, prefix_len, limit, values): (u32, u32, i32, i32)| {
            Box::new(async move {
                let prefix = read_bytes(&mut caller, prefix, prefix_len)?;
                let limit = limit.max(0) as usize;
                Ok(match with_kv(&mut caller, async |kv| kv.list(&prefix, limit, values != 0).await).await? {
                    Ok(entries) => {
                        let pairs = entries.iter().map(|(k, v)| (&k[..], &v[..]));
                        let out = house_abi::kv::encode_list(pairs, values != 0);
                        let n = out.len() as i64;
                        caller.data_mut().stash = out;
                        n
                    }
                    Err(c) => i64::from(c),
                })
            })
        },
    )?;
    Ok(())
}

/// An import's code for a refused operation.
/// What a guest is told of a refusal: the ABI crate's code for it.
fn code(e: KvError) -> i32 {
    use house_abi::kv::KvError as Told;
    let told = match e {
        KvError::TooLarge => Told::TooLarge,
        KvError::Budget => Told::Budget,
        KvError::NotInteger => Told::NotInteger,
        // A conflict stops the call (`with_kv`): no guest sees it.
        KvError::Unavailable | KvError::Conflict => Told::Unavailable,
    };
    told.code() as i32
}

/// Runs `op` on the call's key-value state, taken out of the call's
/// context while it may wait (the context is the store's, which the fiber
/// gives up at a wait), and put back; `KV_UNAVAILABLE` if there is none.
/// A conflict (what the call read before has changed: its view of the
/// store is no longer one state) traps with `KvError::Conflict`, which the
/// runtime answers by running the call again.
async fn with_kv<R>(
    caller: &mut Caller<'_, CallCtx>,
    op: impl AsyncFnOnce(&mut Pending) -> Result<R, KvError>,
) -> wasmtime::Result<Result<R, i32>> {
    let Some(mut pending) = caller.data_mut().kv.take() else { return Ok(Err(KV_UNAVAILABLE)) };
    let result = op(&mut pending).await;
    caller.data_mut().kv = Some(pending);
    match result {
        Err(KvError::Conflict) => Err(wasmtime::Error::new(KvError::Conflict)),
        result => Ok(result.map_err(code)),
    }
}

/// `presence(channel, len, limit)`: the members, as a block for `kv_read`.
fn presence_import(linker: &mut Linker<CallCtx>) -> anyhow::Result<()> {
    // Async: on Redis the members are every host's, a round trip away;
    // the call waits for them without holding its loop.
    linker.func_wrap_async(
        "house",
        "presence",
        |mut caller: Caller<'_, CallCtx>, (ptr, len, limit): (u32, u32, i32)| {
            Box::new(async move {
                let channel = read_str(&mut caller, ptr, len)?;
                if !valid_channel(&channel) {
                    return Ok(i64::from(BAD_CHANNEL));
                }
                let limit = limit.max(0) as usize;
                let Some(presence) = caller.data().presence.clone() else { return Ok(i64::from(KV_UNAVAILABLE)) };
                let out = match presence.remote().cloned() {
                    Some(remote) => match remote.members(&channel, limit).await {
                        Some(block) => block,
                        None => return Ok(i64::from(KV_UNAVAILABLE)),
                    },
                    None => presence.members_block(&channel, limit),
                };
                let n = out.len() as i64;
                caller.data_mut().stash = out;
                Ok(n)
            })
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use house_abi::imports::{ALL, MODULE, Val};
    use wasmtime::{Engine, Store, ValType};

    use super::*;
    use crate::guests::abi::MemoryLimit;
    use crate::guests::manifest::Kind;

    /// The linker defines exactly the ABI crate's imports, with their types.
    #[test]
    fn the_linker_offers_the_abi_crates_imports() {
        let engine = Engine::default();
        let linker = linker(&engine).unwrap();
        let limits = MemoryLimit { max: 1 << 20 };
        let budgets = crate::config::Config::default().guest.budgets;
        let mut store = Store::new(&engine, CallCtx::new(Kind::Closing, limits, budgets, 1024));
        let mut seen = Vec::new();
        let defined: Vec<(String, String, wasmtime::Extern)> =
            linker.iter(&mut store).map(|(m, n, e)| (m.to_owned(), n.to_owned(), e)).collect();
        for (module, name, export) in defined {
            assert_eq!(module, MODULE);
            let import = house_abi::imports::find(&name).unwrap_or_else(|| panic!("{name} is not in the ABI crate"));
            let ty = export.into_func().unwrap().ty(&store);
            let val = |v: &Val| match v {
                Val::I32 => "i32",
                Val::I64 => "i64",
            };
            let shown = |t: ValType| match t {
                ValType::I32 => "i32",
                ValType::I64 => "i64",
                _ => "other",
            };
            assert_eq!(
                ty.params().map(shown).collect::<Vec<_>>(),
                import.params.iter().map(val).collect::<Vec<_>>(),
                "{name}"
            );
            assert_eq!(
                ty.results().map(shown).collect::<Vec<_>>(),
                import.results.iter().map(val).collect::<Vec<_>>(),
                "{name}"
            );
            seen.push(name);
        }
        for import in ALL {
            assert!(seen.iter().any(|n| n == import.name), "the linker lacks {}", import.name);
        }
    }
}
