//! Parameter types and rules as the macros read them: parsed from attribute
//! syntax, checked (so a wrong declaration is a compile error pointing at
//! the mistake), and turned into manifest JSON (docs/ABI.md, "Manifest").

use proc_macro2::{Span, TokenStream};
use quote::quote;
use serde_json::{Map, Value, json};
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Error, Lit, Result, Token};

/// A parameter's type, as the manifest names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    Untyped,
    String,
    Integer,
    Float,
    Boolean,
    Keyword,
    Json,
    ListOfKeyword,
    ListOfInteger,
    /// A type defined with `http_type!`; the host resolves it.
    Named(String),
}

impl Base {
    pub fn manifest_name(&self) -> String {
        match self {
            Base::Untyped => "untyped".into(),
            Base::String => "string".into(),
            Base::Integer => "integer".into(),
            Base::Float => "float".into(),
            Base::Boolean => "boolean".into(),
            Base::Keyword => "keyword".into(),
            Base::Json => "json".into(),
            Base::ListOfKeyword => "list-of-keyword".into(),
            Base::ListOfInteger => "list-of-integer".into(),
            Base::Named(n) => n.clone(),
        }
    }

    /// The base named in `http_type!` (`string`, `integer`, ...).
    pub fn from_manifest_name(name: &str) -> Option<Base> {
        Some(match name {
            "untyped" => Base::Untyped,
            "string" => Base::String,
            "integer" => Base::Integer,
            "float" => Base::Float,
            "boolean" => Base::Boolean,
            "keyword" => Base::Keyword,
            "json" => Base::Json,
            "list_of_keyword" | "list-of-keyword" => Base::ListOfKeyword,
            "list_of_integer" | "list-of-integer" => Base::ListOfInteger,
            _ => return None,
        })
    }

    /// The manifest type of a handler parameter, from its Rust type.
    pub fn from_rust_type(ty: &syn::Type) -> Result<Base> {
        let err = || {
            Error::new(
                ty.span(),
                "unsupported parameter type: use &str, String, i64, f64, bool, Keyword, Json, \
                 Vec<Keyword>, Vec<i64>, or a type defined with http_type!",
            )
        };
        match ty {
            syn::Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
                syn::Type::Path(p) if p.path.is_ident("str") => Ok(Base::String),
                _ => Err(err()),
            },
            syn::Type::Path(p) if p.qself.is_none() => {
                let last = p.path.segments.last().ok_or_else(err)?;
                let name = last.ident.to_string();
                match (name.as_str(), &last.arguments) {
                    ("String", syn::PathArguments::None) => Ok(Base::String),
                    ("i64", _) => Ok(Base::Integer),
                    ("f64", _) => Ok(Base::Float),
                    ("bool", _) => Ok(Base::Boolean),
                    ("Keyword", _) => Ok(Base::Keyword),
                    ("Json", _) => Ok(Base::Json),
                    ("Vec", syn::PathArguments::AngleBracketed(args)) if args.args.len() == 1 => {
                        match args.args.first() {
                            Some(syn::GenericArgument::Type(inner)) => match Base::from_rust_type(inner)? {
                                Base::Keyword => Ok(Base::ListOfKeyword),
                                Base::Integer => Ok(Base::ListOfInteger),
                                _ => Err(Error::new(inner.span(), "lists are Vec<Keyword> or Vec<i64>")),
                            },
                            _ => Err(err()),
                        }
                    }
                    ("i8" | "i16" | "i32" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize", _) => {
                        Err(Error::new(ty.span(), "integers are i64; bound them with #[param(range(...))]"))
                    }
                    ("f32", _) => Err(Error::new(ty.span(), "floats are f64")),
                    (_, syn::PathArguments::None) => Ok(Base::Named(name)),
                    _ => Err(err()),
                }
            }
            _ => Err(err()),
        }
    }

    /// The Rust type a value of this base decodes into.
    pub fn rust_type(&self) -> TokenStream {
        match self {
            Base::Untyped | Base::String => quote!(&'static str),
            Base::Integer => quote!(i64),
            Base::Float => quote!(f64),
            Base::Boolean => quote!(bool),
            Base::Keyword => quote!(::house_sdk::Keyword),
            Base::Json => quote!(::house_sdk::Json),
            Base::ListOfKeyword => quote!(::house_sdk::__private::Vec<::house_sdk::Keyword>),
            Base::ListOfInteger => quote!(::house_sdk::__private::Vec<i64>),
            Base::Named(n) => {
                let ident = syn::Ident::new(n, Span::call_site());
                quote!(#ident)
            }
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self, Base::ListOfKeyword | Base::ListOfInteger)
    }

    fn is_text(&self) -> bool {
        matches!(self, Base::Untyped | Base::String | Base::Keyword | Base::Json)
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Base::Integer | Base::Float | Base::ListOfInteger)
    }
}

/// Rules, as written, with the spans to point errors at.
#[derive(Default)]
pub struct Rules {
    chars: Option<(Bounds, Span)>,
    items: Option<(Bounds, Span)>,
    range: Option<(Option<Number>, Option<Number>, Span)>,
    one_of: Option<(Vec<Value>, Span)>,
    pub default: Option<(Value, Span)>,
    pub untyped: bool,
}

/// A number as written, and whether it is an integer.
type Number = (Value, bool);

#[derive(Default)]
struct Bounds {
    min: Option<u64>,
    max: Option<u64>,
}

impl Rules {
    /// Reads one rule of `#[param(...)]` or `http_type!`; `Ok(false)` if
    /// `meta` is not a rule (the caller may know it).
    pub fn parse_rule(&mut self, meta: &ParseNestedMeta<'_>) -> Result<bool> {
        let span = meta.path.span();
        if meta.path.is_ident("chars") {
            self.chars = Some((bounds(meta, "chars")?, span));
        } else if meta.path.is_ident("items") {
            self.items = Some((bounds(meta, "items")?, span));
        } else if meta.path.is_ident("range") {
            let (mut min, mut max) = (None, None);
            meta.parse_nested_meta(|m| {
                if m.path.is_ident("min") {
                    min = Some(number(m.value()?)?);
                } else if m.path.is_ident("max") {
                    max = Some(number(m.value()?)?);
                } else {
                    return Err(m.error("range takes min and max"));
                }
                Ok(())
            })?;
            self.range = Some((min, max, span));
        } else if meta.path.is_ident("one_of") {
            let content;
            syn::parenthesized!(content in meta.input);
            let values = content.parse_terminated(literal, Token![,])?;
            self.one_of = Some((values.into_iter().collect(), span));
        } else if meta.path.is_ident("default") {
            let value = meta.value()?;
            let expr: syn::Expr = value.parse()?;
            self.default = Some((expr_value(&expr)?, expr.span()));
        } else if meta.path.is_ident("untyped") {
            self.untyped = true;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// Checks that the rules fit `base` and are consistent.
    pub fn check(&self, base: &Base) -> Result<()> {
        let named = matches!(base, Base::Named(_));
        let name = base.manifest_name();
        if let Some((b, span)) = &self.chars {
            if !named && !base.is_text() {
                return Err(Error::new(*span, format!("chars applies to text, not to {name}")));
            }
            ordered(b, *span)?;
        }
        if let Some((b, span)) = &self.items {
            if !named && !base.is_list() {
                return Err(Error::new(*span, format!("items applies to lists, not to {name}")));
            }
            ordered(b, *span)?;
        }
        if let Some((min, max, span)) = &self.range {
            if !named && !base.is_numeric() {
                return Err(Error::new(*span, format!("range applies to numbers, not to {name}")));
            }
            let int_only = matches!(base, Base::Integer | Base::ListOfInteger);
            for (v, is_int) in [min, max].into_iter().flatten() {
                if int_only && !is_int {
                    return Err(Error::new(*span, format!("range of {name} needs integer bounds, got {v}")));
                }
            }
            if let (Some((a, _)), Some((b, _))) = (min, max)
                && a.as_f64() > b.as_f64()
            {
                return Err(Error::new(*span, format!("min ({a}) > max ({b})")));
            }
        }
        if let Some((values, span)) = &self.one_of {
            if values.is_empty() {
                return Err(Error::new(*span, "one_of needs at least one value"));
            }
            for v in values {
                let fits = named
                    || match base {
                        Base::String | Base::Untyped | Base::Keyword | Base::ListOfKeyword => v.is_string(),
                        Base::Integer | Base::ListOfInteger => v.is_i64(),
                        _ => false,
                    };
                if !fits {
                    return Err(Error::new(*span, format!("one_of value {v} does not fit {name}")));
                }
            }
        }
        if let Some((v, span)) = &self.default {
            let fits = named
                || match base {
                    Base::String | Base::Untyped | Base::Keyword | Base::Json => v.is_string(),
                    Base::Integer => v.is_i64(),
                    Base::Float => v.is_number(),
                    Base::Boolean => v.is_boolean(),
                    Base::ListOfKeyword => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                    Base::ListOfInteger => v.as_array().is_some_and(|a| a.iter().all(Value::is_i64)),
                    Base::Named(_) => true,
                };
            if !fits {
                return Err(Error::new(*span, format!("default {v} does not fit {name}")));
            }
            // The host refuses such a module at load: say so here instead.
            if !named && let Err(why) = self.check_default(base, v) {
                return Err(Error::new(*span, format!("default {v} breaks its own rules: {why}")));
            }
        }
        if let (Base::Keyword | Base::ListOfKeyword, Some((values, span))) = (base, &self.one_of) {
            for v in values.iter().filter_map(Value::as_str) {
                let lower = v.to_lowercase();
                if lower != v {
                    return Err(Error::new(
                        *span,
                        format!("one_of value {v:?} can never match: keywords are compared in lower case ({lower:?})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether a default (already of the right type) passes the rules, as
    /// the host's validator would check it; why not, in its words.
    fn check_default(&self, base: &Base, v: &Value) -> std::result::Result<(), String> {
        let values: Vec<&Value> = match v.as_array() {
            Some(items) => {
                if let Some((b, _)) = &self.items {
                    let n = items.len() as u64;
                    if let Some(min) = b.min.filter(|&m| n < m) {
                        return Err(format!("{n} values is below the minimum {min}"));
                    }
                    if let Some(max) = b.max.filter(|&m| n > m) {
                        return Err(format!("{n} values is above the maximum {max}"));
                    }
                }
                items.iter().collect()
            }
            None => vec![v],
        };
        let keyword = matches!(base, Base::Keyword | Base::ListOfKeyword);
        for v in values {
            if let Some(text) = v.as_str() {
                let text = if keyword { text.to_lowercase() } else { text.to_owned() };
                if keyword && (text.is_empty() || !text.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c))) {
                    return Err(format!("{text:?} is not a keyword (letters, digits, '-', '_', '.')"));
                }
                if let Some((b, _)) = &self.chars {
                    let n = text.chars().count() as u64;
                    if let Some(min) = b.min.filter(|&m| n < m) {
                        return Err(format!("length {n} is below the minimum {min}"));
                    }
                    if let Some(max) = b.max.filter(|&m| n > m) {
                        return Err(format!("length {n} is above the maximum {max}"));
                    }
                }
                if let Some((allowed, _)) = &self.one_of
                    && !allowed.iter().any(|a| a.as_str() == Some(text.as_str()))
                {
                    return Err(format!("{text:?} is not one of the one_of values"));
                }
            } else if let Some(x) = v.as_f64() {
                if let Some((min, max, _)) = &self.range {
                    if let Some((m, _)) = min.as_ref().filter(|(m, _)| m.as_f64().is_some_and(|m| x < m)) {
                        return Err(format!("{v} is below the minimum {m}"));
                    }
                    if let Some((m, _)) = max.as_ref().filter(|(m, _)| m.as_f64().is_some_and(|m| x > m)) {
                        return Err(format!("{v} is above the maximum {m}"));
                    }
                }
                if let Some((allowed, _)) = &self.one_of
                    && !allowed.iter().any(|a| a.as_f64() == Some(x))
                {
                    return Err(format!("{v} is not one of the one_of values"));
                }
            }
        }
        Ok(())
    }

    /// The `rules` object of the manifest.
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        let bounds_json = |b: &Bounds| {
            let mut o = Map::new();
            b.min.map(|v| o.insert("min".into(), v.into()));
            b.max.map(|v| o.insert("max".into(), v.into()));
            Value::Object(o)
        };
        if let Some((b, _)) = &self.chars {
            m.insert("chars".into(), bounds_json(b));
        }
        if let Some((b, _)) = &self.items {
            m.insert("items".into(), bounds_json(b));
        }
        if let Some((min, max, _)) = &self.range {
            let mut o = Map::new();
            min.as_ref().map(|(v, _)| o.insert("min".into(), v.clone()));
            max.as_ref().map(|(v, _)| o.insert("max".into(), v.clone()));
            m.insert("range".into(), Value::Object(o));
        }
        if let Some((values, _)) = &self.one_of {
            m.insert("one_of".into(), Value::Array(values.clone()));
        }
        Value::Object(m)
    }
}

fn bounds(meta: &ParseNestedMeta<'_>, rule: &str) -> Result<Bounds> {
    let mut b = Bounds::default();
    meta.parse_nested_meta(|m| {
        let expr: syn::Expr = m.value()?.parse()?;
        let n = match expr_value(&expr)? {
            Value::Number(n) if n.is_u64() => n.as_u64().unwrap_or_default(),
            other => {
                let what = if rule == "chars" { "a length" } else { "a count" };
                return Err(Error::new(expr.span(), format!("{rule} bounds are {what}: 0 or more, not {other}")));
            }
        };
        if m.path.is_ident("min") {
            b.min = Some(n);
        } else if m.path.is_ident("max") {
            b.max = Some(n);
        } else {
            return Err(m.error(format!("{rule} takes min and max")));
        }
        Ok(())
    })?;
    Ok(b)
}

fn ordered(b: &Bounds, span: Span) -> Result<()> {
    match (b.min, b.max) {
        (Some(min), Some(max)) if min > max => Err(Error::new(span, format!("min ({min}) > max ({max})"))),
        _ => Ok(()),
    }
}

/// A number, possibly negative; the flag says whether it is an integer.
fn number(input: ParseStream<'_>) -> Result<Number> {
    let expr: syn::Expr = input.parse()?;
    let v = expr_value(&expr)?;
    match &v {
        Value::Number(n) => Ok((v.clone(), n.is_i64() || n.is_u64())),
        _ => Err(Error::new(expr.span(), "expected a number")),
    }
}

fn literal(input: ParseStream<'_>) -> Result<Value> {
    let expr: syn::Expr = input.parse()?;
    expr_value(&expr)
}

/// A literal (or `-literal`, or `[literals]`) as JSON.
fn expr_value(expr: &syn::Expr) -> Result<Value> {
    match expr {
        syn::Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => Ok(Value::String(s.value())),
            Lit::Bool(b) => Ok(Value::Bool(b.value)),
            Lit::Int(i) => Ok(json!(i.base10_parse::<i64>()?)),
            Lit::Float(f) => Ok(json!(f.base10_parse::<f64>()?)),
            other => Err(Error::new(other.span(), "expected a string, number or boolean")),
        },
        syn::Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => match expr_value(&u.expr)? {
            Value::Number(n) if n.is_i64() => Ok(json!(-n.as_i64().unwrap_or_default())),
            Value::Number(n) => Ok(json!(-n.as_f64().unwrap_or_default())),
            _ => Err(Error::new(u.span(), "only numbers can be negated")),
        },
        syn::Expr::Array(a) => Ok(Value::Array(a.elems.iter().map(expr_value).collect::<Result<_>>()?)),
        other => Err(Error::new(other.span(), "expected a literal")),
    }
}
