//! `GET /_house/openapi.json`: an OpenAPI 3.1 document made from the
//! manifests of the handlers serving now. Every input a handler declares
//! is there, where it comes from (query, form, header, cookie, path, JSON
//! body) with a JSON Schema of its type and rules, and so are the answers
//! the host itself gives (400, 413, 415, 500, 503) with their reasons.
//! Rebuilt with the route table on every reload.

use serde_json::{Map, Value, json};

use super::manifest::{HandlerSpec, Kind, ParamSpec, Source, Ty};
use super::statics::StaticFile;

/// The document for `handlers`: (module file, spec) of each serving one.
pub fn document<'a>(
    handlers: impl Iterator<Item = (&'a str, &'a HandlerSpec)>,
    files: impl Iterator<Item = (&'a str, &'a StaticFile)>,
) -> Value {
    let mut paths = Map::new();
    for (file, f) in files {
        let item = paths.entry(f.path.clone()).or_insert_with(|| json!({})).as_object_mut().expect("an object");
        item.insert("get".into(), static_operation(file, f));
    }
    for (file, h) in handlers {
        let item = paths.entry(h.path.clone()).or_insert_with(|| json!({})).as_object_mut().expect("an object");
        for method in h.methods.names() {
            let method = method.to_ascii_lowercase();
            // HEAD is GET without the body: OpenAPI describes it with GET.
            // A message handler answers WebSocket messages, not HTTP.
            if method == "head" || method == "message" {
                continue;
            }
            item.insert(method.clone(), operation(file, h, &method));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "house",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The handlers this house serves now, from their modules' manifests. \
                            Every input is validated by the host before the handler runs.",
        },
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "a JWS (HS256 or EdDSA) the host verifies, with exp, nbf, iat, iss and aud"},
        }},
    })
}

/// A static file: served by the host, revalidated with its ETag.
fn static_operation(file: &str, f: &StaticFile) -> Value {
    let media = f.content_type.split(';').next().unwrap_or(&f.content_type).trim();
    let text = media.starts_with("text/") || media.ends_with("json") || media.ends_with("xml");
    let schema = if text { json!({"type": "string"}) } else { json!({"type": "string", "contentMediaType": media}) };
    json!({
        "summary": format!("static file of {file}"),
        "tags": [file],
        "parameters": [{
            "name": "If-None-Match", "in": "header", "required": false,
            "description": "the ETag of a copy the client has: 304 if it is current",
            "schema": {"type": "string"},
        }],
        "responses": {
            "200": {
                "description": format!("the file ({} bytes)", f.body.len()),
                "headers": {
                    "ETag": {"schema": {"type": "string", "const": f.etag}},
                    "Cache-Control": {"schema": {"type": "string"}},
                },
                "content": {f.content_type.clone(): {"schema": schema}},
            },
            "304": {"description": "not modified: the client's copy is current"},
        },
    })
}

fn operation(file: &str, h: &HandlerSpec, method: &str) -> Value {
    let with_body = matches!(method, "post" | "put" | "patch" | "delete");
    let mut parameters = Vec::new();
    let mut form = Map::new();
    let mut form_required = Vec::new();
    let mut body = None;
    let mut token = None;
    for p in &h.params {
        let schema = match &p.object {
            Some(object) => house_abi::body::json_schema(object),
            // A `json` body is any JSON document (its text's length is
            // checked, which a JSON Schema of the value cannot say).
            None if p.source == Source::Body => {
                let mut any = json!({"description": "any JSON document"});
                if let Some(max) = p.rules.chars.and_then(|b| b.max) {
                    any["description"] = json!(format!("any JSON document of at most {max} characters as sent"));
                }
                any
            }
            None => schema(p),
        };
        match p.source {
            Source::Body => body = Some((schema, p.default.is_none())),
            Source::Token => token = Some(p),
            Source::Query => {
                let param = parameter(p, "query", schema.clone());
                let required = param["required"] == json!(true);
                parameters.push(param);
                // A form body may carry them too (the query string first).
                if with_body {
                    form.insert(p.name.clone(), schema);
                    if required {
                        form_required.push(p.name.clone());
                    }
                }
            }
            Source::Path => parameters.push(parameter(p, "path", schema)),
            Source::Header => parameters.push(parameter(p, "header", schema)),
            Source::Cookie => {
                let mut param = parameter(p, "cookie", schema);
                if p.signed {
                    param["description"] = json!(
                        "signed by the host (Set-Cookie from the handler): an unsigned or altered value is absent"
                    );
                }
                parameters.push(param);
            }
        }
    }
    let mut op = json!({
        "operationId": format!("{}.{}.{method}", file.trim_end_matches(".wasm"), h.name),
        "summary": format!("handler {} of {file}", h.name),
        "parameters": parameters,
        "responses": responses(h, body.is_some()),
    });
    if let Some(t) = token {
        op["security"] = json!([{"bearer": []}]);
        let claims = t.object.as_deref().map(house_abi::body::json_schema).unwrap_or_default();
        let mut description = "the token's claims, as the handler declares them".to_owned();
        if let Some(c) = &t.token_cookie {
            description.push_str(&format!("; without Authorization, the token may be cookie {c}"));
        }
        op["x-house-token-claims"] = json!({"description": description, "schema": claims});
        op["responses"]["401"] = json!({
            "description": "The token is missing, malformed, forged, expired or its claims break their rules",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": {"text/plain; charset=utf-8": {"schema": {"type": "string"}}},
        });
    }
    if let Some((schema, required)) = body {
        op["requestBody"] = json!({"required": required, "content": {"application/json": {"schema": schema}}});
    } else if with_body && !form.is_empty() {
        // Query parameters arrive as a form too, so the body is optional.
        let schema = json!({"type": "object", "properties": form, "required": form_required});
        op["requestBody"] = json!({
            "required": false,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        });
    }
    op
}

fn parameter(p: &ParamSpec, place: &str, schema: Value) -> Value {
    let mut param = json!({
        "name": p.name,
        "in": place,
        // A path segment is always there; the others when they have no
        // default (an absent list is an empty one: required if it needs items).
        "required": place == "path" || (p.default.is_none() && (!p.ty.is_list() || p.rules.items.is_some_and(|b| b.min.unwrap_or(0) > 0))),
        "schema": schema,
    });
    if matches!(p.ty, Ty::ListOfKeyword | Ty::ListOfInteger) {
        // `?tag=a&tag=b`.
        param["style"] = json!("form");
        param["explode"] = json!(true);
    }
    param
}

/// The JSON Schema of a parameter's type and rules.
fn schema(p: &ParamSpec) -> Value {
    let r = &p.rules;
    let scalar = |ty: Ty| -> Map<String, Value> {
        let mut s = Map::new();
        match ty {
            Ty::Untyped | Ty::String | Ty::Keyword | Ty::Json => {
                s.insert("type".into(), json!("string"));
                if let Some(b) = r.chars {
                    // Lengths in characters, as JSON Schema counts them.
                    if let Some(min) = b.min {
                        s.insert("minLength".into(), json!(min));
                    }
                    if let Some(max) = b.max {
                        s.insert("maxLength".into(), json!(max));
                    }
                }
                if !r.one_of_text.is_empty() {
                    s.insert("enum".into(), json!(r.one_of_text));
                }
                if ty == Ty::Keyword {
                    s.insert(
                        "description".into(),
                        json!("a keyword: letters, digits, '-', '_' and '.', compared in lower case"),
                    );
                }
                if ty == Ty::Json {
                    s.insert("contentMediaType".into(), json!("application/json"));
                }
            }
            Ty::Integer | Ty::ListOfInteger => {
                s.insert("type".into(), json!("integer"));
                s.insert("format".into(), json!("int64"));
                if let Some((min, max)) = r.int_range {
                    if let Some(min) = min {
                        s.insert("minimum".into(), json!(min));
                    }
                    if let Some(max) = max {
                        s.insert("maximum".into(), json!(max));
                    }
                }
                if !r.one_of_int.is_empty() {
                    s.insert("enum".into(), json!(r.one_of_int));
                }
            }
            Ty::Float => {
                s.insert("type".into(), json!("number"));
                if let Some((min, max)) = r.float_range {
                    if let Some(min) = min {
                        s.insert("minimum".into(), json!(min));
                    }
                    if let Some(max) = max {
                        s.insert("maximum".into(), json!(max));
                    }
                }
            }
            Ty::Boolean => {
                s.insert("type".into(), json!("boolean"));
                s.insert("description".into(), json!("true/false, 1/0, on/off or yes/no"));
            }
            Ty::ListOfKeyword => unreachable!("a list's items are scalars"),
        }
        s
    };
    let mut s = match p.ty {
        Ty::ListOfKeyword | Ty::ListOfInteger => {
            let item = if p.ty == Ty::ListOfKeyword { Ty::Keyword } else { Ty::Integer };
            let mut s = Map::new();
            s.insert("type".into(), json!("array"));
            s.insert("items".into(), Value::Object(scalar(item)));
            if let Some(b) = r.items {
                if let Some(min) = b.min {
                    s.insert("minItems".into(), json!(min));
                }
                if let Some(max) = b.max {
                    s.insert("maxItems".into(), json!(max));
                }
            }
            s
        }
        ty => scalar(ty),
    };
    if p.type_name != p.ty.name() {
        s.insert("title".into(), json!(p.type_name));
    }
    if p.default.is_some() {
        s.insert("default".into(), p.default_json());
    }
    Value::Object(s)
}

fn responses(h: &HandlerSpec, json_body: bool) -> Value {
    let text = |description: &str| json!({"description": description, "content": {"text/plain; charset=utf-8": {"schema": {"type": "string"}}}});
    // Text is a string; anything else (JSON, images) any value.
    let schema = if h.content_type.starts_with("text/") { json!({"type": "string"}) } else { json!({}) };
    let answer = |description: &str| json!({"description": description, "content": {h.content_type.clone(): {"schema": schema.clone()}}});
    let mut r = serde_json::Map::new();
    match h.kind {
        Kind::Stream => {
            r.insert(
                "200".into(),
                json!({
                    "description": "A Server-Sent Events stream: the handler's first event, then what is published \
                                    on its channels (with ids; Last-Event-ID resumes)",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }),
            );
        }
        // What the handler says it answers (`statuses`): a success with
        // its content type (none for 204 and 304), an error as the SDK
        // writes one, a line of text.
        Kind::Closing | Kind::Message if !h.statuses.is_empty() => {
            for &status in &h.statuses {
                let entry = match status {
                    204 | 304 => json!({"description": "The handler's answer, without a body"}),
                    100..=399 => answer("The handler's answer"),
                    _ => text("The handler's refusal; the body says why"),
                };
                r.insert(status.to_string(), entry);
            }
        }
        Kind::Closing | Kind::Message => {
            r.insert("200".into(), answer("The handler's answer (it did not declare its statuses)"));
        }
    }
    // The host's own answers, unless the handler declared the status too.
    let host = [
        ("400", "An input is missing or breaks its rules; the body says which and why"),
        ("413", "The request or its arguments are over the host's limits"),
        ("415", "The body is not application/json"),
        ("500", "The handler failed (a trap, its deadline, a budget, a malformed answer)"),
        ("503", "Too many calls in flight, the handler is suspended, or the data store cannot answer"),
    ];
    for (status, description) in host {
        if status == "415" && !json_body {
            continue;
        }
        r.entry(status).or_insert_with(|| text(description));
    }
    Value::Object(r)
}
