//! The macros of `house-sdk`: `#[handler]` turns an ordinary function into a
//! house handler (manifest entry + ABI glue), `http_type!` defines a named
//! parameter type. Each runs parse -> check -> emit, and every check failure
//! is a compile error pointing at the offending piece of the declaration.
//!
//! Set `HOUSE_MACRO_DEBUG=1` while building to print each expansion.

mod body;
mod spec;
mod statics;
mod types;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, Result};

use spec::{Base, Rules};
use statics::StaticFiles;
use types::TypeDefs;

/// Declares a handler: the function as written, plus the manifest entry the
/// host reads at load time and the ABI glue.
///
/// `#[handler(closing)]` (an ordinary response) or `#[handler(stream)]`
/// (Server-Sent Events), then optionally `path = "/items/{id}"` (default:
/// the name with `_` as `-`; `root` is `/`), `methods(GET, POST)` (default
/// GET and POST, streams GET), `content_type = ".."` (default
/// `text/html; charset=utf-8`) and, for a closing handler, `statuses(201,
/// 409)`: the statuses it answers, for OpenAPI (default: 200).
///
/// Each parameter's type and `#[param(...)]` rules (`chars`, `range`,
/// `one_of`, `items`, `default`, `name`) are checked by the host before the
/// function runs; `#[header("name")]`, `#[cookie("name")]` and `#[body]`
/// say where it comes from (default: the query or a form body; a `{name}`
/// of the path: that segment). The return value is a `String`, `&str`,
/// `()`, a `Response` or a `Result` of one (`Err`: a 500).
///
/// The `house-sdk` crate documentation has the whole table of types and
/// rules, with examples.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(expand_handler(attr.into(), item.into()))
}

/// Declares a struct as a JSON object type: a handler takes it as its
/// `#[body]` (or a token's claims, `#[token]`), the host checks every field
/// before the call, and the function receives the struct, filled in.
///
/// Fields are `String`/`&'static str`, `i64`, `f64`, `bool`, `Keyword`,
/// `Json` (any JSON value, as text), an `http_type!` type, another `Body`
/// struct, a `Vec` of one of these or an `Option` (absent or null: `None`).
/// `#[field(...)]` takes the parameters' rules (`chars`, `range`,
/// `one_of`, `items` for a `Vec`, `default`) and `name = ".."`.
/// `#[body(allow_unknown)]` on the struct drops fields it does not declare
/// instead of refusing the document.
#[proc_macro_derive(Body, attributes(field, body))]
pub fn derive_body(item: TokenStream) -> TokenStream {
    finish(body::expand(item.into()))
}

/// Defines named parameter types once, with their rules, for any handler
/// of the module (the article's `define-http-type`):
///
/// ```text
/// http_type! {
///     /// A chat room: 1 to 16 characters.
///     pub Room: string(chars(min = 1, max = 16));
///     pub Percent: integer(range(min = 0, max = 100));
/// }
/// ```
///
/// Each becomes a Rust type alias of its base type and a manifest entry
/// the host checks at load time; a parameter of that type takes its rules.
#[proc_macro]
pub fn http_type(input: TokenStream) -> TokenStream {
    finish(syn::parse::<TypeDefs>(input).and_then(|defs| defs.expand()))
}

/// Ships files with the module for the host to serve itself, without
/// instantiating anything (with an ETag, `304 Not Modified` and HEAD):
///
/// ```text
/// static_files! {
///     "/index" => "index.html",
///     "/chat.css" => "chat.css",
///     "/data.bin" => "data.bin" as "application/octet-stream",
/// }
/// ```
///
/// Each file is read at compile time (relative to the source file, like
/// `include_bytes!`) into a custom section of the module, outside its
/// memory image: a page costs a handler's instances nothing. The content
/// type comes from the file's extension unless `as` gives one. A path that
/// is not plain (`..`, `%`, `//`, under `/_house/`) or that a GET handler of
/// the module also claims is a compile error.
#[proc_macro]
pub fn static_files(input: TokenStream) -> TokenStream {
    finish(syn::parse::<StaticFiles>(input).map(StaticFiles::expand))
}

fn finish(result: Result<TokenStream2>) -> TokenStream {
    let tokens = result.unwrap_or_else(Error::into_compile_error);
    if std::env::var_os("HOUSE_MACRO_DEBUG").is_some() {
        eprintln!("{tokens}");
    }
    tokens.into()
}

use house_abi::manifest::{Handler as Manifest, Param};
use house_abi::{Kind, METHODS, Source, Ty};

fn expand_handler(attr: TokenStream2, item: TokenStream2) -> Result<TokenStream2> {
    // Parse: the attribute...
    let mut kind: Option<Kind> = None;
    let mut manifest = Manifest {
        name: String::new(),
        path: None,
        kind: Kind::Closing,
        content_type: None,
        methods: None,
        statuses: None,
        params: Vec::new(),
    };
    let mut statuses_at = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("closing") || meta.path.is_ident("stream") || meta.path.is_ident("message") {
            if kind.is_some() {
                return Err(meta.error("give the kind once: closing, stream or message"));
            }
            kind = Some(if meta.path.is_ident("closing") {
                Kind::Closing
            } else if meta.path.is_ident("stream") {
                Kind::Stream
            } else {
                Kind::Message
            });
        } else if meta.path.is_ident("path") {
            let path: syn::LitStr = meta.value()?.parse()?;
            house_abi::path::check_handler_path(&path.value()).map_err(|e| Error::new(path.span(), e))?;
            manifest.path = Some(path.value());
        } else if meta.path.is_ident("content_type") {
            let ct: syn::LitStr = meta.value()?.parse()?;
            house_abi::check_content_type(&ct.value()).map_err(|e| Error::new(ct.span(), e))?;
            manifest.content_type = Some(ct.value());
        } else if meta.path.is_ident("statuses") {
            // statuses(201, 409): what the handler answers, for OpenAPI.
            let content;
            syn::parenthesized!(content in meta.input);
            let lits =
                content.parse_terminated(|p: syn::parse::ParseStream| p.parse::<syn::LitInt>(), syn::Token![,])?;
            let mut list = Vec::new();
            for lit in &lits {
                list.push(lit.base10_parse::<u16>()?);
            }
            house_abi::check_statuses(&list).map_err(|e| Error::new(lits.span(), e))?;
            statuses_at = Some(lits.span());
            manifest.statuses = Some(list);
        } else if meta.path.is_ident("methods") {
            let mut methods = Vec::new();
            meta.parse_nested_meta(|m| {
                let name = m.path.get_ident().map(ToString::to_string).unwrap_or_default();
                if !METHODS.contains(&name.as_str()) {
                    return Err(m.error(format!("unknown method; use one of {}", METHODS.join(", "))));
                }
                methods.push(name);
                Ok(())
            })?;
            manifest.methods = Some(methods);
        } else {
            return Err(meta.error(
                "expected closing, stream, message, path = \"..\", content_type = \"..\", methods(..) or statuses(..)",
            ));
        }
        Ok(())
    });
    syn::parse::Parser::parse2(parser, attr)?;
    let kind = kind.ok_or_else(|| {
        Error::new(Span::call_site(), "say which kind: #[handler(closing)], #[handler(stream)] or #[handler(message)]")
    })?;
    if let (Kind::Stream, Some(span)) = (kind, statuses_at) {
        return Err(Error::new(span, "a stream answers 200 and its events: statuses(..) is for closing handlers"));
    }
    if kind == Kind::Message && manifest.methods.is_some() {
        return Err(Error::new(
            Span::call_site(),
            "a message handler takes WebSocket messages, not HTTP methods: drop methods(..)",
        ));
    }

    // ...and the function.
    let mut func: syn::ItemFn = syn::parse2(item)?;
    let sig = &func.sig;
    if let Some(a) = &sig.asyncness {
        return Err(Error::new(a.span(), "handlers are not async"));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(sig.generics.span(), "handlers take no generic parameters"));
    }
    let name = sig.ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();

    // Check: every parameter's type and rules.
    let mut params = Vec::new();
    let mut decoders = Vec::new();
    let mut args = Vec::new();
    for (i, input) in func.sig.inputs.iter_mut().enumerate() {
        let syn::FnArg::Typed(pat) = input else {
            return Err(Error::new(input.span(), "handlers are free functions, without self"));
        };
        let syn::Pat::Ident(ident) = &*pat.pat else {
            return Err(Error::new(pat.pat.span(), "name each parameter with a plain identifier"));
        };
        let mut rules = Rules::default();
        let mut wire_name = ident.ident.to_string().trim_start_matches("r#").to_owned();
        // Where it comes from: a `{name}` of the path, or an attribute.
        let in_path = path_params(manifest.path.as_deref()).contains(&wire_name);
        let mut source: Option<(&str, Span)> = in_path.then_some(("path", ident.span()));
        let mut kept = Vec::new();
        let mut signed = false;
        let mut token_cookie: Option<String> = None;
        for attr in pat.attrs.drain(..) {
            let from = ["header", "cookie", "body", "token"].into_iter().find(|s| attr.path().is_ident(s));
            if let Some(from) = from {
                if let Some((other, _)) = source {
                    return Err(Error::new(attr.span(), format!("this parameter already comes from the {other}")));
                }
                source = Some((from, attr.span()));
                if from == "body" {
                    if !matches!(attr.meta, syn::Meta::Path(_)) {
                        return Err(Error::new(attr.span(), "#[body] takes nothing: the whole body is the value"));
                    }
                    wire_name = "body".into();
                } else if from == "token" {
                    // #[token] or #[token(cookie = "name")].
                    if !matches!(attr.meta, syn::Meta::Path(_)) {
                        attr.parse_nested_meta(|m| {
                            if m.path.is_ident("cookie") {
                                let c: syn::LitStr = m.value()?.parse()?;
                                if !house_abi::is_token(&c.value()) {
                                    return Err(Error::new(c.span(), "the cookie's name is not an HTTP token"));
                                }
                                token_cookie = Some(c.value());
                                return Ok(());
                            }
                            Err(m.error("#[token] or #[token(cookie = \"name\")]"))
                        })?;
                    }
                    wire_name = "token".into();
                } else if from == "cookie" {
                    // #[cookie("name")] or #[cookie("name", signed)].
                    let (name, is_signed) = attr
                        .parse_args_with(|input: syn::parse::ParseStream<'_>| {
                            let name: syn::LitStr = input.parse()?;
                            let mut signed = false;
                            if input.parse::<Option<syn::Token![,]>>()?.is_some() {
                                let word: syn::Ident = input.parse()?;
                                if word != "signed" {
                                    return Err(Error::new(word.span(), "expected signed"));
                                }
                                signed = true;
                            }
                            Ok((name, signed))
                        })
                        .map_err(|e| {
                            Error::new(e.span(), format!("#[cookie(\"name\")] or #[cookie(\"name\", signed)]: {e}"))
                        })?;
                    if !house_abi::is_token(&name.value()) {
                        return Err(Error::new(
                            name.span(),
                            format!("cookie name {:?} is not an HTTP token", name.value()),
                        ));
                    }
                    wire_name = name.value();
                    signed = is_signed;
                } else {
                    let name: syn::LitStr = attr.parse_args().map_err(|e| {
                        Error::new(e.span(), format!("#[{from}(\"name\")]: the {from}'s name, as a string"))
                    })?;
                    if !house_abi::is_token(&name.value()) {
                        return Err(Error::new(
                            name.span(),
                            format!("{from} name {:?} is not an HTTP token", name.value()),
                        ));
                    }
                    wire_name = name.value();
                }
                continue;
            }
            if !attr.path().is_ident("param") {
                kept.push(attr);
                continue;
            }
            attr.parse_nested_meta(|meta| {
                if rules.parse_rule(&meta)? {
                    return Ok(());
                }
                if meta.path.is_ident("name") {
                    let n: syn::LitStr = meta.value()?.parse()?;
                    wire_name = n.value();
                    return Ok(());
                }
                Err(meta.error(
                    "expected chars(..), range(..), one_of(..), items(..), default = .., untyped or name = \"..\"",
                ))
            })?;
        }
        pat.attrs = kept;
        let mut base = Base::from_rust_type(&pat.ty)?;
        if rules.untyped {
            if base != Base::Builtin(Ty::String) {
                return Err(Error::new(pat.ty.span(), "an untyped parameter is a &str"));
            }
            base = Base::Builtin(Ty::Untyped);
        }
        // How the host's 400s (and so the checks' words) name it.
        let label = match source {
            None => wire_name.clone(),
            Some(("body", _)) => "body".to_owned(),
            Some(("token", _)) => "token".to_owned(),
            Some((from, _)) => format!("{from} {}", wire_name.to_ascii_lowercase()),
        };
        rules.check(&base, &label)?;
        if let Some((from, span)) = source {
            if base.is_list() {
                return Err(Error::new(span, "only query parameters can be lists"));
            }
            if from == "body" && !matches!(base, Base::Builtin(Ty::Json) | Base::Named(_)) {
                return Err(Error::new(
                    pat.ty.span(),
                    "a #[body] parameter is Json (checked to be well-formed) or a #[derive(Body)] struct",
                ));
            }
            if from == "token" && !matches!(base, Base::Named(_)) {
                return Err(Error::new(
                    pat.ty.span(),
                    "a #[token] parameter is a #[derive(Body)] struct of its claims",
                ));
            }
            if matches!(from, "body" | "token") && matches!(base, Base::Named(_)) && rules.default.is_some() {
                return Err(Error::new(span, "an object takes no default"));
            }
            if matches!(from, "body" | "token") && matches!(base, Base::Named(_)) && !rules.is_empty() {
                return Err(Error::new(
                    span,
                    "a #[derive(Body)] struct takes no #[param] rules: its fields carry them",
                ));
            }
            if from == "path" && rules.default.is_some() {
                return Err(Error::new(span, "a path segment is always there: it takes no default"));
            }
        }
        let from = match source {
            None => Source::Query,
            Some(("path", _)) => Source::Path,
            Some(("header", _)) => Source::Header,
            Some(("cookie", _)) => Source::Cookie,
            Some(("token", _)) => Source::Token,
            Some(_) => Source::Body,
        };
        params.push(Param {
            name: wire_name,
            source: from,
            ty: Some(base.manifest_name()),
            rules: rules.manifest(),
            default: rules.default.as_ref().map(|(v, _)| v.clone()),
            signed,
            cookie: token_cookie,
        });
        let var = format_ident!("__house_arg{}", i);
        let ty = &pat.ty;
        // Spanned at the parameter's type: a type that is not one (a
        // struct that is not an `http_type!`) is an error there.
        decoders.push(quote_spanned! {ty.span()=>
            let #var: #ty = <#ty as ::house_sdk::FromArg>::decode(&mut __house_args);
        });
        args.push(var);
    }

    // Two handlers of one module on one route (method and path shape) are
    // refused at load: make it a compile error here. One item per route,
    // named after it, so that a second one is "defined multiple times",
    // pointing at the second handler (within one Rust module).
    let path = manifest.path.clone().unwrap_or_else(|| house_abi::path_from_name(&name));
    let shape = house_abi::route_shape(&path);
    let methods: Vec<String> = match &manifest.methods {
        Some(m) => m.clone(),
        None => house_abi::default_methods(kind).iter().map(|m| (*m).to_owned()).collect(),
    };
    let hex = hex(&shape);
    let route_items: Vec<TokenStream2> =
        methods.iter().map(|m| route_item(if m == "HEAD" { "GET" } else { m }, &hex, func.sig.ident.span())).collect();

    // Emit: the function as written, its manifest and its ABI glue.
    manifest.name = name.clone();
    manifest.kind = kind;
    manifest.params = params;
    let manifest = serde_json::to_string(&manifest).map_err(|e| Error::new(Span::call_site(), e.to_string()))?;
    let ident = &func.sig.ident;
    // Spanned at the return type: one a handler cannot return is an error
    // there, in IntoResponse's words.
    let into_response = match &func.sig.output {
        syn::ReturnType::Default => quote!(<() as ::house_sdk::IntoResponse>::into_response),
        syn::ReturnType::Type(_, ty) => quote_spanned!(ty.span()=> <#ty as ::house_sdk::IntoResponse>::into_response),
    };
    let call_export = format!("{}{name}", house_abi::exports::HANDLER_PREFIX);
    let meta_export = format!("{}{name}", house_abi::exports::META_PREFIX);
    let call_fn = format_ident!("__house_handler_{}", name);
    let meta_fn = format_ident!("__house_meta_{}", name);
    Ok(quote! {
        #func

        #(#route_items)*

        #[doc(hidden)]
        #[unsafe(export_name = #call_export)]
        pub extern "C" fn #call_fn(ptr: u32, len: u32) -> u64 {
            ::house_sdk::__private::catch_panics();
            let mut __house_args = ::house_sdk::__private::Args::new(ptr, len);
            #(#decoders)*
            let __house_response = #into_response(#ident(#(#args),*));
            ::house_sdk::__private::respond(__house_response)
        }

        #[doc(hidden)]
        #[unsafe(export_name = #meta_export)]
        pub extern "C" fn #meta_fn() -> u64 {
            ::house_sdk::__private::text(#manifest)
        }
    })
}

/// The route's shape as an identifier's tail.
pub(crate) fn hex(shape: &str) -> String {
    shape.bytes().map(|b| format!("{b:02x}")).collect()
}

/// One item per (method, route shape) of the module, so that a second
/// claim of a route is "defined multiple times", pointing at `span`.
pub(crate) fn route_item(method: &str, hex: &str, span: Span) -> TokenStream2 {
    let item = syn::Ident::new(&format!("__house_one_handler_per_route_{method}_{hex}"), span);
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #item: () = ();
    }
}

/// The `{name}` segments of the handler's `path = ".."`, if it has one
/// (checked when the attribute was read).
fn path_params(path: Option<&str>) -> Vec<String> {
    let Some(path) = path else { return Vec::new() };
    let segments = house_abi::path::parse_pattern(path).unwrap_or_default();
    segments
        .into_iter()
        .filter_map(|seg| match seg {
            house_abi::path::Segment::Param(name) => Some(name),
            house_abi::path::Segment::Literal(_) => None,
        })
        .collect()
}
