//! `static_files!`: files shipped in custom sections of the module, served
//! by the host without an instance (docs/ABI.md, "Static files").

use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Error, Result};

use crate::{hex, route_item};

/// `static_files! { "/path" => "file" [as "content/type"], ... }`
pub struct StaticFiles(Vec<(syn::LitStr, syn::LitStr, String)>);

impl Parse for StaticFiles {
    fn parse(input: ParseStream<'_>) -> Result<StaticFiles> {
        let mut files = Vec::new();
        while !input.is_empty() {
            let path: syn::LitStr = input.parse()?;
            house_abi::statics::check_path(&path.value()).map_err(|e| Error::new(path.span(), e))?;
            input.parse::<syn::Token![=>]>()?;
            let file: syn::LitStr = input.parse()?;
            let content_type = if input.peek(syn::Token![as]) {
                input.parse::<syn::Token![as]>()?;
                let ct: syn::LitStr = input.parse()?;
                house_abi::check_content_type(&ct.value()).map_err(|e| Error::new(ct.span(), e))?;
                ct.value()
            } else {
                house_abi::statics::content_type_for(&file.value())
                    .ok_or_else(|| {
                        Error::new(
                            file.span(),
                            "unknown extension: give its type, \"/path\" => \"file\" as \"type/subtype\"",
                        )
                    })?
                    .to_owned()
            };
            files.push((path, file, content_type));
            if !input.is_empty() {
                input.parse::<syn::Token![,]>()?;
            }
        }
        Ok(StaticFiles(files))
    }
}

impl StaticFiles {
    pub fn expand(self) -> TokenStream2 {
        let mut out = TokenStream2::new();
        for (path, file, content_type) in self.0 {
            let section = house_abi::statics::section_name(&path.value(), &content_type);
            out.extend(route_item("GET", &hex(&path.value()), path.span()));
            // A custom section on wasm32 (other targets, native tests, have
            // no use for it); the linker keeps it whole and apart from the
            // data the instance's memory starts with. Not `#[used]`: that
            // also left a copy of the file in the data segment, in every
            // instance's memory (rustc keeps a wasm `link_section` static
            // without it).
            out.extend(quote! {
                const _: () = {
                    #[cfg_attr(target_arch = "wasm32", unsafe(link_section = #section))]
                    #[allow(dead_code)]
                    static FILE: [u8; include_bytes!(#file).len()] = *include_bytes!(#file);
                };
            });
        }
        out
    }
}
