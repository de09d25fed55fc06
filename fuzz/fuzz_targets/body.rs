//! The body validator against an oracle. From the fuzzer's bytes: an object
//! type (nested objects, lists, optional fields, defaults, every scalar type
//! with rules) and documents drawn for it, near its rules' bounds, with wrong
//! types, nulls, missing and unknown fields. For each pair:
//!
//! - the host's path (`body::resolve`, then `body::validate`) does not
//!   panic;
//! - it accepts exactly the documents an independent JSON Schema validator
//!   (the `jsonschema` crate, draft 2020-12) accepts against the schema the
//!   host publishes in OpenAPI (`body::json_schema`): never a document the
//!   schema forbids, never a refusal of one it allows;
//! - what it accepts encodes into an argument block that reads back whole
//!   (and a refusal leaves the block untouched).

#![no_main]

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Result, Unstructured};
use house_abi::Ty;
use house_abi::body::{self, Named, Object, Shape};
use house_abi::manifest::Type;
use house_abi::wire::Reader;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

const NAMES: [&str; 6] = ["a", "b", "qty", "name", "x-y", "é"];
const WORDS: [&str; 10] = ["a", "red", "green", "b-c", "x.y", "A", "", "é", "red ", "1"];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Scalar {
    String,
    Integer,
    Float,
    Boolean,
    Keyword,
    Json,
}

#[derive(Arbitrary, Debug)]
struct RulesGen {
    chars: Option<(Option<u8>, Option<u8>)>,
    range: Option<(Option<i8>, Option<i8>, bool)>,
    one_of: Option<Vec<u8>>,
    items: Option<(Option<u8>, Option<u8>)>,
}

#[derive(Arbitrary, Debug)]
enum KindGen {
    Scalar(Scalar),
    Object(Box<ObjGen>),
}

#[derive(Arbitrary, Debug)]
struct FieldGen {
    name: u8,
    kind: KindGen,
    list: bool,
    optional: bool,
    rules: RulesGen,
    default: Option<i8>,
}

#[derive(Arbitrary, Debug)]
struct ObjGen {
    fields: Vec<FieldGen>,
    allow_unknown: bool,
}

fn small(n: Option<u8>) -> Option<u64> {
    n.map(|n| u64::from(n % 6))
}

/// The manifest entry of `g` (and of the objects inside it) into `types`.
fn manifest(g: &ObjGen, depth: usize, types: &mut BTreeMap<String, Type>) -> String {
    let name = format!("T{}", types.len());
    types.insert(
        name.clone(),
        Type { base: "object".into(), rules: Default::default(), fields: Some(vec![]), allow_unknown: false },
    );
    let mut fields = Vec::new();
    for f in g.fields.iter().take(5) {
        let ty = match &f.kind {
            KindGen::Object(o) if depth < 3 => manifest(o, depth + 1, types),
            KindGen::Object(_) => "string".into(),
            KindGen::Scalar(s) => match s {
                Scalar::String => "string",
                Scalar::Integer => "integer",
                Scalar::Float => "float",
                Scalar::Boolean => "boolean",
                Scalar::Keyword => "keyword",
                Scalar::Json => "json",
            }
            .into(),
        };
        let mut rules = Map::new();
        if let Some((min, max)) = f.rules.chars {
            rules.insert("chars".into(), json!({"min": small(min), "max": small(max)}));
        }
        if let Some((min, max, float)) = f.rules.range {
            let n = |v: Option<i8>| v.map(|v| if float { json!(f64::from(v) + 0.5) } else { json!(v) });
            rules.insert("range".into(), json!({"min": n(min), "max": n(max)}));
        }
        if let Some(picks) = &f.rules.one_of {
            let values: Vec<Value> = picks
                .iter()
                .take(3)
                .map(|p| if ty == "integer" { json!(i64::from(*p % 5)) } else { json!(WORDS[*p as usize % 3]) })
                .collect();
            rules.insert("one_of".into(), Value::Array(values));
        }
        if let Some((min, max)) = f.rules.items {
            rules.insert("items".into(), json!({"min": small(min), "max": small(max)}));
        }
        // Nulls in the bounds are "no bound": drop them, as a manifest would.
        for r in rules.values_mut() {
            if let Value::Object(m) = r {
                m.retain(|_, v| !v.is_null());
            }
        }
        let default = f.default.map(|d| match ty.as_str() {
            "integer" => json!(i64::from(d % 5)),
            "float" => json!(f64::from(d) / 4.0),
            "boolean" => json!(d % 2 == 0),
            _ => json!(WORDS[d as usize % WORDS.len()]),
        });
        let field = json!({"name": NAMES[f.name as usize % NAMES.len()], "type": ty, "list": f.list,
                           "optional": f.optional, "rules": rules, "default": default});
        let mut field = field.as_object().cloned().unwrap_or_default();
        field.retain(|_, v| !v.is_null());
        if let Ok(f) = serde_json::from_value(Value::Object(field)) {
            fields.push(f);
        }
    }
    let t = types.get_mut(&name).expect("inserted above");
    t.fields = Some(fields);
    t.allow_unknown = g.allow_unknown;
    name
}

fn text(u: &mut Unstructured<'_>) -> Result<Value> {
    let n = u.int_in_range(0..=7)?;
    let mut s = String::new();
    for _ in 0..n {
        s.push(*u.choose(&['a', 'z', '-', '.', 'A', 'é', '😀', ' ', '"'])?);
    }
    Ok(Value::String(s))
}

fn any(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(u.int_in_range(-7i64..=7)?),
        3 => json!(f64::from(u.int_in_range(-70i32..=70)?) / 4.0),
        4 => text(u)?,
        5 => json!(WORDS[u.choose_index(WORDS.len())?]),
        6 => json!([u.int_in_range(0u8..=3)?]),
        7 => json!({"k": 1}),
        8 => json!(9.2e18),
        _ => json!(u64::MAX),
    })
}

fn scalar(ty: Ty, u: &mut Unstructured<'_>) -> Result<Value> {
    if u.ratio(1, 6)? {
        return any(u);
    }
    Ok(match ty {
        Ty::String => text(u)?,
        Ty::Keyword => json!(WORDS[u.choose_index(WORDS.len())?]),
        Ty::Integer => match u.int_in_range(0..=2)? {
            0 => json!(u.int_in_range(-7i64..=7)?),
            1 => json!(f64::from(u.int_in_range(-7i32..=7)?)),
            _ => json!(i64::MAX),
        },
        Ty::Float => json!(f64::from(u.int_in_range(-70i32..=70)?) / 8.0),
        Ty::Boolean => json!(bool::arbitrary(u)?),
        _ => any(u)?,
    })
}

fn object(o: &Object, u: &mut Unstructured<'_>, depth: usize) -> Result<Value> {
    if depth > 0 && u.ratio(1, 12)? {
        return any(u);
    }
    let mut m = Map::new();
    for f in &o.fields {
        if u.ratio(1, 8)? {
            continue;
        }
        if u.ratio(1, 12)? {
            m.insert(f.name.clone(), Value::Null);
            continue;
        }
        let one = |u: &mut Unstructured<'_>| match &f.shape {
            Shape::Scalar(ty, _) => scalar(*ty, u),
            Shape::Object(inner) => object(inner, u, depth + 1),
        };
        let v = if f.list.is_some() && u.ratio(1, 12)? {
            one(u)?
        } else if f.list.is_some() {
            let n = u.int_in_range(0..=6)?;
            Value::Array((0..n).map(|_| one(u)).collect::<Result<_>>()?)
        } else {
            one(u)?
        };
        m.insert(f.name.clone(), v);
    }
    if u.ratio(1, 10)? {
        m.insert("zz".into(), json!(1));
    }
    Ok(Value::Object(m))
}

/// Reads an object's argument block as the SDK's decoders do.
fn read(o: &Object, r: &mut Reader<'_>) -> Option<()> {
    for f in &o.fields {
        if f.optional && !r.bool().ok()? {
            continue;
        }
        let n = if f.list.is_some() { r.u32().ok()? } else { 1 };
        for _ in 0..n {
            match &f.shape {
                Shape::Object(inner) => read(inner, r)?,
                Shape::Scalar(Ty::Json, _) => {
                    serde_json::from_slice::<Value>(r.bytes().ok()?).ok()?;
                }
                Shape::Scalar(Ty::String | Ty::Keyword, _) => {
                    std::str::from_utf8(r.bytes().ok()?).ok()?;
                }
                Shape::Scalar(Ty::Integer, _) => {
                    r.i64().ok()?;
                }
                Shape::Scalar(Ty::Float, _) => {
                    r.f64().ok().filter(|x| x.is_finite())?;
                }
                Shape::Scalar(Ty::Boolean, _) => {
                    r.bool().ok()?;
                }
                Shape::Scalar(..) => return None,
            }
        }
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(g) = ObjGen::arbitrary(&mut u) else { return };
    let mut types = BTreeMap::new();
    let root = manifest(&g, 0, &mut types);
    let Ok(obj) = body::resolve(&root, &|n| types.get(n).map(Named::Object)) else { return };
    let schema = body::json_schema(&obj);
    let oracle = jsonschema::draft202012::new(&schema).expect("the published schema compiles");
    for _ in 0..8 {
        let Ok(doc) = object(&obj, &mut u, 0) else { return };
        let mut out = Vec::new();
        let ours = body::validate(&obj, "body", &doc.to_string(), &mut out);
        let theirs = oracle.is_valid(&doc);
        assert_eq!(ours.is_ok(), theirs, "schema {schema}\ndocument {doc}\nours: {ours:?}");
        // What it accepts reads back whole, as the guest's decoders read it.
        if ours.is_ok() {
            let mut r = Reader::new(&out);
            assert!(read(&obj, &mut r).is_some() && r.is_done(), "schema {schema}\ndocument {doc}\nblock {out:?}");
        } else {
            assert!(out.is_empty(), "a refusal leaves the block as it was");
        }
    }
});
