//! The ABI has one owner, `house-abi`: what a guest's toolchain writes
//! must agree with it. `house.h` (the C guests' header) declares exactly
//! its imports with their signatures, its codes and its export names; and
//! every example guest, Rust (the SDK's declarations) or C, imports only
//! what it lists, with the same signatures.

use house_abi::imports::{ALL, MODULE, Val};
use house_tests::repo;

/// A C type as the wasm32 value that carries it.
fn wasm_type(c: &str) -> Option<Val> {
    let c = c.trim();
    if c == "void" {
        return None;
    }
    Some(if c.contains('*') || c.contains("int32_t") || c.contains("size_t") {
        Val::I32
    } else if c.contains("int64_t") {
        Val::I64
    } else {
        panic!("a C type the test does not know: {c:?}")
    })
}

#[test]
fn house_h_declares_the_abi_crates_imports_codes_and_exports() {
    let header = std::fs::read_to_string(repo().join("guest-sdk/include/house.h")).unwrap();
    let mut declared = Vec::new();
    for part in header.split("HOUSE_IMPORT(\"").skip(1) {
        let (name, rest) = part.split_once('"').unwrap();
        let decl = rest.split_once(';').unwrap().0.trim_start_matches(')').trim();
        let (ret_and_fn, params) = decl.split_once('(').unwrap();
        let ret = ret_and_fn.trim().rsplit_once(' ').unwrap().0;
        let params: Vec<Val> = params
            .trim_end_matches(')')
            .split(',')
            .filter(|p| !p.trim().is_empty() && p.trim() != "void")
            .map(|p| {
                let ty = p.trim().rsplit_once([' ', '*']).map_or(p, |(t, _)| t);
                wasm_type(if p.contains('*') { "*" } else { ty }).unwrap()
            })
            .collect();
        let results: Vec<Val> = wasm_type(ret).into_iter().collect();
        let import = house_abi::imports::find(name).unwrap_or_else(|| panic!("house.h imports {name}, not in the ABI"));
        assert_eq!(params, import.params, "house.h's {name} parameters");
        assert_eq!(results, import.results, "house.h's {name} result");
        declared.push(name.to_owned());
    }
    for import in ALL {
        assert!(declared.iter().any(|n| n == import.name), "house.h does not declare {}", import.name);
    }
    assert!(header.contains(&format!("import_module(\"{MODULE}\")")));
    // Its codes are the ABI's.
    use house_abi::status::*;
    for (name, code) in [
        ("HOUSE_OK", i64::from(OK)),
        ("HOUSE_KV_ABSENT", KV_ABSENT),
        ("HOUSE_KV_TOO_LARGE", i64::from(KV_TOO_LARGE)),
        ("HOUSE_KV_BUDGET", i64::from(KV_BUDGET)),
        ("HOUSE_KV_NOT_INTEGER", i64::from(KV_NOT_INTEGER)),
        ("HOUSE_KV_UNAVAILABLE", i64::from(KV_UNAVAILABLE)),
    ] {
        let line = header.lines().find(|l| l.starts_with(&format!("#define {name} "))).expect(name);
        let value: i64 = line[name.len() + 9..].trim().trim_matches(|c| c == '(' || c == ')').parse().unwrap();
        assert_eq!(value, code, "{name}");
    }
    // And its export names.
    use house_abi::exports::*;
    for name in [ABI_VERSION, ALLOC] {
        assert!(header.contains(&format!("HOUSE_EXPORT(\"{name}\")")), "{name}");
    }
    for prefix in [HANDLER_PREFIX, META_PREFIX] {
        assert!(header.contains(&format!("HOUSE_EXPORT(\"{prefix}\" #NAME)")), "{prefix}");
    }
    assert!(header.contains(&format!("{{ return {}; }}", house_abi::ABI_VERSION)), "house_abi_version's value");
}

#[test]
fn every_example_guest_imports_only_the_abi_crates_imports() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("guests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut types = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
            match payload.unwrap() {
                wasmparser::Payload::TypeSection(section) => {
                    for group in section {
                        for ty in group.unwrap().into_types() {
                            types.push(ty.unwrap_func().clone());
                        }
                    }
                }
                wasmparser::Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import.unwrap();
                        assert_eq!(import.module, MODULE, "{}: imports from {}", path.display(), import.module);
                        let wasmparser::TypeRef::Func(index) = import.ty else {
                            panic!("{} imports a non-function", path.display())
                        };
                        let ty = &types[index as usize];
                        let want = house_abi::imports::find(import.name)
                            .unwrap_or_else(|| panic!("{} imports {}, not in the ABI", path.display(), import.name));
                        let val = |v: &wasmparser::ValType| match v {
                            wasmparser::ValType::I32 => Val::I32,
                            wasmparser::ValType::I64 => Val::I64,
                            other => panic!("{other:?}"),
                        };
                        assert_eq!(ty.params().iter().map(val).collect::<Vec<_>>(), want.params, "{}", import.name);
                        assert_eq!(ty.results().iter().map(val).collect::<Vec<_>>(), want.results, "{}", import.name);
                        checked += 1;
                    }
                }
                _ => {}
            }
        }
    }
    assert!(checked >= 10, "the example guests import {checked} functions: built?");
}
