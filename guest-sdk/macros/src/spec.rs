//! Parameter types and rules as the macros read them: parsed from attribute
//! syntax, checked by the ABI crate (so a declaration the host would refuse
//! at load is a compile error pointing at the mistake, in the host's words),
//! and turned into manifest JSON (docs/ABI.md, "Manifest").

use proc_macro2::{Span, TokenStream};
use quote::quote;
use serde_json::{Value, json};
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Error, Lit, Result, Token};

use house_abi::Ty;
use house_abi::rules::{self, Bounds, Literal, RawRules, Rule};
use house_abi::validate::{self, Param};

/// A parameter's type, as the manifest names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    /// A built-in type.
    Builtin(Ty),
    /// A type defined with `http_type!`; the host resolves it.
    Named(String),
}

impl Base {
    pub fn manifest_name(&self) -> String {
        match self {
            Base::Builtin(t) => t.name().into(),
            Base::Named(n) => n.clone(),
        }
    }

    /// The base named in `http_type!` (`string`, `list_of_integer`: a Rust
    /// identifier, so `_` where the manifest has `-`).
    pub fn from_manifest_name(name: &str) -> Option<Base> {
        Ty::parse(&name.replace('_', "-")).map(Base::Builtin)
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
                syn::Type::Path(p) if p.path.is_ident("str") => Ok(Base::Builtin(Ty::String)),
                _ => Err(err()),
            },
            syn::Type::Path(p) if p.qself.is_none() => {
                let last = p.path.segments.last().ok_or_else(err)?;
                let name = last.ident.to_string();
                match (name.as_str(), &last.arguments) {
                    ("String", syn::PathArguments::None) => Ok(Base::Builtin(Ty::String)),
                    ("i64", _) => Ok(Base::Builtin(Ty::Integer)),
                    ("f64", _) => Ok(Base::Builtin(Ty::Float)),
                    ("bool", _) => Ok(Base::Builtin(Ty::Boolean)),
                    ("Keyword", _) => Ok(Base::Builtin(Ty::Keyword)),
                    ("Json", _) => Ok(Base::Builtin(Ty::Json)),
                    ("Vec", syn::PathArguments::AngleBracketed(args)) if args.args.len() == 1 => {
                        match args.args.first() {
                            Some(syn::GenericArgument::Type(inner)) => match Base::from_rust_type(inner)? {
                                Base::Builtin(Ty::Keyword) => Ok(Base::Builtin(Ty::ListOfKeyword)),
                                Base::Builtin(Ty::Integer) => Ok(Base::Builtin(Ty::ListOfInteger)),
                                _ => Err(Error::new(inner.span(), "lists are Vec<Keyword> or Vec<i64>")),
                            },
                            _ => Err(err()),
                        }
                    }
                    ("i8" | "i16" | "i32" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "isize", _) => {
                        Err(Error::new(ty.span(), "integers are i64; bound them with #[param(range(...))]"))
                    }
                    ("f32", _) => Err(Error::new(ty.span(), "floats are f64")),
                    ("char", _) => Err(Error::new(
                        ty.span(),
                        "a char is not a parameter type: take a &str and bound it with #[param(chars(min = 1, max = 1))]",
                    )),
                    ("Option", _) => Err(Error::new(
                        ty.span(),
                        "parameters are not Option: an absent parameter takes its #[param(default = ..)], \
                         or is a 400 without one",
                    )),
                    ("str", _) => Err(Error::new(ty.span(), "take text as &str or String")),
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
            Base::Builtin(Ty::Untyped | Ty::String) => quote!(&'static str),
            Base::Builtin(Ty::Integer) => quote!(i64),
            Base::Builtin(Ty::Float) => quote!(f64),
            Base::Builtin(Ty::Boolean) => quote!(bool),
            Base::Builtin(Ty::Keyword) => quote!(::house_sdk::Keyword),
            Base::Builtin(Ty::Json) => quote!(::house_sdk::Json),
            Base::Builtin(Ty::ListOfKeyword) => quote!(::house_sdk::__private::Vec<::house_sdk::Keyword>),
            Base::Builtin(Ty::ListOfInteger) => quote!(::house_sdk::__private::Vec<i64>),
            Base::Named(n) => {
                let ident = syn::Ident::new(n, Span::call_site());
                quote!(#ident)
            }
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self, Base::Builtin(t) if t.is_list())
    }
}

/// Rules, as written, with the spans to point errors at.
#[derive(Default)]
pub struct Rules {
    chars: Option<(Bounds, Span)>,
    items: Option<(Bounds, Span)>,
    range: Option<(Option<Literal>, Option<Literal>, Span)>,
    one_of: Option<(Vec<Value>, Span)>,
    pub default: Option<(Value, Span)>,
    pub untyped: bool,
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

    /// No rule at all (a default or `untyped` aside).
    pub fn is_empty(&self) -> bool {
        self.chars.is_none() && self.items.is_none() && self.range.is_none() && self.one_of.is_none()
    }

    /// Checks that the rules fit `base` and are consistent, and that a
    /// default keeps them: with the ABI crate's checks and words, the ones
    /// the host applies at load. `label` names the parameter as a 400 would.
    pub fn check(&self, base: &Base, label: &str) -> Result<()> {
        // A named type's base and rules are the host's to resolve.
        let Base::Builtin(ty) = base else { return Ok(()) };
        let checked = rules::check(*ty, &self.raw()).map_err(|e| {
            let span = match e.rule {
                Rule::Chars => self.chars.as_ref().map(|c| c.1),
                Rule::Items => self.items.as_ref().map(|c| c.1),
                Rule::Range => self.range.as_ref().map(|c| c.2),
                Rule::OneOf => self.one_of.as_ref().map(|c| c.1),
            };
            Error::new(span.unwrap_or_else(Span::call_site), e.message)
        })?;
        if let Some((v, span)) = &self.default {
            let values = validate::default_values(*ty, v).map_err(|e| Error::new(*span, format!("default {e}")))?;
            validate::check_default(Param { label, ty: *ty, rules: &checked }, &values)
                .map_err(|e| Error::new(*span, format!("default breaks its own rules: {e}")))?;
        }
        Ok(())
    }

    /// The rules as the ABI crate takes them.
    fn raw(&self) -> RawRules {
        RawRules {
            chars: self.chars.as_ref().map(|c| c.0),
            items: self.items.as_ref().map(|c| c.0),
            range: self.range.as_ref().map(|(min, max, _)| (min.clone(), max.clone())),
            one_of: self.one_of.as_ref().map(|(values, _)| values.iter().map(Literal::from_json).collect()),
        }
    }

    /// The `rules` of the manifest (the ABI crate's model, which the host
    /// reads).
    pub fn manifest(&self) -> house_abi::manifest::Rules {
        let number = |v: &Option<Literal>| match v.as_ref().map(json_of) {
            Some(Value::Number(n)) => Some(n),
            _ => None,
        };
        house_abi::manifest::Rules {
            chars: self.chars.as_ref().map(|(b, _)| *b),
            items: self.items.as_ref().map(|(b, _)| *b),
            range: self
                .range
                .as_ref()
                .map(|(min, max, _)| house_abi::manifest::NumBounds { min: number(min), max: number(max) }),
            one_of: self.one_of.as_ref().map(|(values, _)| values.clone()),
        }
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

/// A number, possibly negative.
fn number(input: ParseStream<'_>) -> Result<Literal> {
    let expr: syn::Expr = input.parse()?;
    match Literal::from_json(&expr_value(&expr)?) {
        n @ (Literal::Int(_) | Literal::Float(_)) => Ok(n),
        _ => Err(Error::new(expr.span(), "expected a number")),
    }
}

/// A number literal back as JSON, for the manifest.
fn json_of(l: &Literal) -> Value {
    match l {
        Literal::Int(n) => json!(n),
        Literal::Float(x) => json!(x),
        Literal::Text(s) => json!(s),
        Literal::Bool(b) => json!(b),
        Literal::Other(s) => json!(s),
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
