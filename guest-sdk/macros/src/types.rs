//! `http_type!`: named parameter types, defined once with their rules.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::{Error, Result};

use house_abi::manifest::Type;

use crate::spec::{Base, Rules};

/// `http_type! { pub Name: base(rules...); ... }`
pub struct TypeDefs(Vec<TypeDef>);

struct TypeDef {
    attrs: Vec<syn::Attribute>,
    vis: syn::Visibility,
    name: syn::Ident,
    base: Base,
    rules: Rules,
}

impl Parse for TypeDefs {
    fn parse(input: ParseStream<'_>) -> Result<TypeDefs> {
        let mut defs = Vec::new();
        while !input.is_empty() {
            let attrs = input.call(syn::Attribute::parse_outer)?;
            let vis: syn::Visibility = input.parse()?;
            let name: syn::Ident = input.parse()?;
            input.parse::<syn::Token![:]>()?;
            let base_ident: syn::Ident = input.parse()?;
            let base = Base::from_manifest_name(&base_ident.to_string()).ok_or_else(|| {
                Error::new(base_ident.span(), "base type is one of string, integer, float, boolean, keyword, json, list_of_keyword, list_of_integer")
            })?;
            let mut rules = Rules::default();
            if input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in input);
                let parser = syn::meta::parser(|meta| {
                    if rules.parse_rule(&meta)? && rules.default.is_none() {
                        return Ok(());
                    }
                    Err(meta.error("expected chars(..), range(..), one_of(..) or items(..)"))
                });
                syn::parse::Parser::parse2(parser, content.parse()?)?;
            }
            rules.check(&base, &name.to_string())?;
            if Base::from_manifest_name(&name.to_string()).is_some()
                || ["Keyword", "Json"].contains(&name.to_string().as_str())
            {
                return Err(Error::new(name.span(), "this name is a built-in type"));
            }
            defs.push(TypeDef { attrs, vis, name, base, rules });
            if !input.is_empty() {
                input.parse::<syn::Token![;]>()?;
            }
        }
        Ok(TypeDefs(defs))
    }
}

impl TypeDefs {
    pub fn expand(self) -> Result<TokenStream2> {
        let mut out = TokenStream2::new();
        for TypeDef { attrs, vis, name, base, rules } in self.0 {
            let rust = base.rust_type();
            let entry =
                Type { base: base.manifest_name(), rules: rules.manifest(), fields: None, allow_unknown: false };
            let json = serde_json::to_string(&entry).map_err(|e| Error::new(Span::call_site(), e.to_string()))?;
            let export = format!("{}{name}", house_abi::exports::TYPE_PREFIX);
            let func = format_ident!("__house_type_{}", name);
            out.extend(quote! {
                #(#attrs)*
                #vis type #name = #rust;

                #[doc(hidden)]
                #[allow(non_snake_case)]
                #[unsafe(export_name = #export)]
                pub extern "C" fn #func() -> u64 {
                    ::house_sdk::__private::text(#json)
                }
            });
        }
        Ok(out)
    }
}
