//! `#[derive(Body)]`: a struct as an object type (docs/ABI.md, "Bodies and
//! tokens"). Its manifest entry lists the fields with their types and
//! rules; the host validates a JSON body (or a token's claims) against it
//! and hands the guest the values in field order, which the derived
//! `FromArg` reads back: the guest parses no JSON.
//!
//! Each field is checked here with the ABI crate's `body::resolve`, the
//! host's own check at load, so a mistake is a compile error in the host's
//! words, pointing at the field.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, Result};

use house_abi::body::{self, Named};
use house_abi::manifest::{Field, Type};

use crate::spec::{Base, Rules};

pub fn expand(item: TokenStream) -> Result<TokenStream> {
    let input: syn::DeriveInput = syn::parse2(item)?;
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "a Body takes no generic parameters (text fields are String or &'static str)",
        ));
    }
    let syn::Data::Struct(data) = &input.data else {
        return Err(Error::new(name.span(), "#[derive(Body)] is for a struct with named fields"));
    };
    let syn::Fields::Named(named) = &data.fields else {
        return Err(Error::new(name.span(), "#[derive(Body)] is for a struct with named fields"));
    };
    let mut allow_unknown = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("body")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("allow_unknown") {
                allow_unknown = true;
                return Ok(());
            }
            Err(meta.error("expected allow_unknown"))
        })?;
    }
    let mut fields = Vec::new();
    let mut decoders = Vec::new();
    for f in &named.named {
        let ident = f.ident.as_ref().expect("named fields");
        let mut wire = ident.to_string().trim_start_matches("r#").to_owned();
        let mut rules = Rules::default();
        for attr in f.attrs.iter().filter(|a| a.path().is_ident("field")) {
            attr.parse_nested_meta(|meta| {
                if rules.parse_rule(&meta)? {
                    return Ok(());
                }
                if meta.path.is_ident("name") {
                    let n: syn::LitStr = meta.value()?.parse()?;
                    wire = n.value();
                    return Ok(());
                }
                Err(meta.error("expected chars(..), range(..), one_of(..), items(..), default = .. or name = \"..\""))
            })?;
        }
        if rules.untyped {
            return Err(Error::new(f.span(), "untyped is for query parameters: a field has a type"));
        }
        let (ty, optional) = match wrapped(&f.ty, "Option") {
            Some(inner) => (inner, true),
            None => (&f.ty, false),
        };
        let (ty, list) = match wrapped(ty, "Vec") {
            Some(inner) => (inner, true),
            None => (ty, false),
        };
        if wrapped(ty, "Vec").is_some() || wrapped(ty, "Option").is_some() {
            return Err(Error::new(
                ty.span(),
                "a field is a value, an Option of one, a Vec of values, or an Option of a Vec",
            ));
        }
        let base = Base::from_rust_type(ty)?;
        if base.is_list() {
            return Err(Error::new(ty.span(), "a list field is a Vec of its element type"));
        }
        let field = Field {
            name: wire.clone(),
            ty: base.manifest_name(),
            list,
            optional,
            rules: rules.manifest(),
            default: rules.default.as_ref().map(|(v, _)| v.clone()),
        };
        // The host's check of this one field, where its type is built in
        // (a named type is the host's to resolve).
        if let Base::Builtin(_) = base {
            let alone = Type {
                base: body::OBJECT.into(),
                rules: Default::default(),
                fields: Some(vec![field.clone()]),
                allow_unknown,
            };
            let lookup = |n: &str| (n == "Self").then_some(Named::Object(&alone));
            body::resolve("Self", &lookup).map_err(|e| {
                let e = e.strip_prefix("type Self: ").unwrap_or(&e).to_owned();
                Error::new(f.span(), e)
            })?;
        }
        if fields.iter().any(|g: &Field| g.name == wire) {
            return Err(Error::new(f.span(), format!("field {wire} declared twice")));
        }
        fields.push(field);
        let fty = &f.ty;
        decoders.push(quote_spanned! {fty.span()=>
            #ident: <#fty as ::house_sdk::FromArg>::decode(__house_args)
        });
    }
    if fields.len() > body::MAX_FIELDS {
        return Err(Error::new(name.span(), format!("{} fields, more than {}", fields.len(), body::MAX_FIELDS)));
    }
    let entry = Type { base: body::OBJECT.into(), rules: Default::default(), fields: Some(fields), allow_unknown };
    let json = serde_json::to_string(&entry).map_err(|e| Error::new(Span::call_site(), e.to_string()))?;
    let export = format!("{}{name}", house_abi::exports::TYPE_PREFIX);
    let func = format_ident!("__house_type_{}", name);
    Ok(quote! {
        impl ::house_sdk::FromArg for #name {
            fn decode(__house_args: &mut ::house_sdk::__private::Args) -> Self {
                #name { #(#decoders),* }
            }
        }

        #[doc(hidden)]
        #[allow(non_snake_case)]
        #[unsafe(export_name = #export)]
        pub extern "C" fn #func() -> u64 {
            ::house_sdk::__private::text(#json)
        }
    })
}

/// `T` of `Wrapper<T>`.
fn wrapped<'a>(ty: &'a syn::Type, wrapper: &str) -> Option<&'a syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(a) if a.args.len() == 1 => match a.args.first()? {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}
