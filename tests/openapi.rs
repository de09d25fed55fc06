//! `GET /_house/openapi.json`: an OpenAPI 3.1 document of what is served,
//! checked by a real validator (`openapi-spec-validator` from PyPI, in the
//! venv `make test` makes), and its content checked against the manifests:
//! every kind of input, its schema from the rules, defaults, streams; and
//! it follows a reload.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use house_tests::{Server, example_guest, repo};
use serde_json::{Value, json};

/// The document, after the validator has accepted it.
fn document(s: &Server) -> Value {
    let r = s.admin_get("/_house/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let python = repo().join("tests/.venv/bin/python");
    assert!(python.exists(), "{} is missing: `make test-tools` makes it", python.display());
    let script = "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(sys.stdin))";
    let mut child =
        Command::new(python).args(["-c", script]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(r.body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the validator refused it: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&r.body).unwrap()
}

fn param<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name}: {op}"))
}

#[test]
fn the_document_is_valid_and_says_what_the_manifests_say() {
    let s = Server::start(&["typed", "todo", "hello"], &["--quiet"]);
    let d = document(&s);
    assert_eq!(d["openapi"], "3.1.0");
    let paths = &d["paths"];

    // A path segment, typed and bounded; HEAD is not listed apart.
    let item = &paths["/items/{id}"]["get"];
    assert_eq!(
        param(item, "id"),
        &json!({"name": "id", "in": "path", "required": true,
        "schema": {"type": "integer", "format": "int64", "minimum": 1}})
    );
    assert!(paths["/items/{id}"].get("head").is_none());
    // Declared statuses (`statuses(204, 404, ...)`): a 204 without a body,
    // the refusals as text, and no 200 it never answers.
    let delete = &paths["/todos/{id}"]["delete"]["responses"];
    assert_eq!(delete["204"], json!({"description": "The handler's answer, without a body"}));
    assert!(delete.get("200").is_none(), "{delete}");
    assert_eq!(delete["404"]["content"]["text/plain; charset=utf-8"]["schema"]["type"], "string");
    assert!(delete["400"].is_object(), "the host's own 400 is there too");
    let add = &paths["/todos"]["post"]["responses"];
    assert!(add["201"]["content"]["application/json"].is_object(), "{add}");
    // Undeclared: 200 in the handler's content type.
    assert!(item["responses"]["200"]["content"].is_object(), "{item}");
    // Query parameters with their rules and defaults.
    let hello = &paths["/hello"]["get"];
    assert_eq!(
        param(hello, "name")["schema"],
        json!({"type": "string", "minLength": 1, "maxLength": 40, "default": "world"})
    );
    assert_eq!(param(hello, "name")["required"], false, "it has a default");
    let types = &paths["/types"]["get"];
    assert_eq!(param(types, "f")["schema"], json!({"type": "number", "minimum": 0.5, "maximum": 2.5}));
    assert_eq!(param(types, "b")["schema"]["type"], "boolean");
    assert!(param(types, "k")["schema"]["enum"].is_array(), "one_of is an enum");
    // Headers and cookies.
    let whoami = &paths["/whoami"]["get"];
    assert_eq!(param(whoami, "user-agent")["in"], "header");
    assert_eq!(param(whoami, "x-level")["schema"]["default"], 1, "a typed default");
    assert_eq!(param(whoami, "sid")["in"], "cookie");
    // A list, repeated in the query.
    let ch = param(&paths["/watch"]["get"], "ch");
    assert_eq!((ch["style"].as_str(), ch["explode"].as_bool()), (Some("form"), Some(true)));
    assert_eq!(ch["schema"]["type"], "array");
    assert_eq!(ch["schema"]["maxItems"], 8);
    // A stream.
    assert!(paths["/watch"]["get"]["responses"]["200"]["content"]["text/event-stream"].is_object());
    // A JSON body, and the 415 that comes with it.
    let add = &paths["/todos"]["post"];
    assert!(add["requestBody"]["content"]["application/json"]["schema"].is_object());
    assert!(add["responses"]["415"].is_object());
    assert!(
        paths["/todos/{id}"]["patch"].is_object() && paths["/todos/{id}"]["delete"].is_object(),
        "methods of one path"
    );
    // Form bodies for POST: the query parameters may come as a form.
    let note = &paths["/note"]["post"];
    assert!(
        note["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]["key"].is_object()
    );
    // The host's own answers.
    for status in ["400", "413", "500", "503"] {
        assert!(hello["responses"][status]["description"].is_string(), "{status}");
    }
}

/// Bearer tokens and typed bodies in the document: the validator accepts
/// it, the token's operations say so (security, 401) and their claims'
/// schema is there.
#[test]
fn tokens_and_typed_bodies_are_in_a_valid_document() {
    let dir = house_tests::TempDir::new("guests");
    std::fs::copy(house_tests::test_guest("board"), dir.path().join("board.wasm")).unwrap();
    let s = Server::start_in(dir, &["--quiet"]);
    let d = document(&s);
    assert_eq!(d["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let write = &d["paths"]["/board/{room}"]["post"];
    assert_eq!(write["security"], json!([{"bearer": []}]));
    assert!(write["responses"]["401"]["headers"]["WWW-Authenticate"].is_object(), "{write}");
    assert_eq!(write["x-house-token-claims"]["schema"]["properties"]["can"]["maxItems"], 3);
    let body = &write["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["properties"]["text"]["maxLength"], 280);
    let events = &d["paths"]["/board/{room}/events"]["get"];
    assert!(events["x-house-token-claims"]["description"].as_str().unwrap().contains("cookie board_token"));
}

#[test]
fn the_document_follows_a_reload() {
    let s = Server::start(&["hello"], &["--quiet"]);
    assert!(document(&s)["paths"].get("/send-message").is_none());
    std::fs::copy(example_guest("chat"), s.guests.path().join("chat.wasm")).unwrap();
    s.wait_for_log("house: loaded chat.wasm", Duration::from_secs(10));
    let d = document(&s);
    assert_eq!(param(&d["paths"]["/send-message"]["get"], "message")["schema"]["minLength"], 5);
    // The chat's page, a static file: its type, its ETag, its 304.
    let page = &d["paths"]["/index"]["get"];
    let etag = s.get("/index").header("etag").unwrap().to_owned();
    assert_eq!(page["responses"]["200"]["headers"]["ETag"]["schema"]["const"], etag.as_str());
    assert!(page["responses"]["200"]["content"]["text/html; charset=utf-8"].is_object(), "{page}");
    assert!(page["responses"]["304"]["description"].is_string(), "{page}");
    assert_eq!(param(page, "If-None-Match")["in"], "header");
}

/// A value that keeps `schema`'s rules (the least one, near the bounds).
fn valid(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(first) = schema["anyOf"].as_array().and_then(|a| a.first()) {
        return valid(first);
    }
    let n = |k: &str| schema[k].as_i64();
    match schema["type"].as_str() {
        Some("string") if schema["contentMediaType"] == "application/json" => json!("{}"),
        Some("string") => {
            json!("a".repeat(n("minLength").unwrap_or(1).max(1).min(n("maxLength").unwrap_or(64)) as usize))
        }
        Some("integer") => json!(n("minimum").unwrap_or(1).max(1).min(n("maximum").unwrap_or(i64::MAX))),
        Some("number") => json!(schema["minimum"].as_f64().unwrap_or(0.5)),
        Some("boolean") => json!(true),
        Some("array") => Value::Array(vec![valid(&schema["items"]); n("minItems").unwrap_or(1).max(1) as usize]),
        Some("object") => {
            let props = schema["properties"].as_object().cloned().unwrap_or_default();
            Value::Object(props.iter().map(|(k, s)| (k.clone(), valid(s))).collect())
        }
        _ => json!(1),
    }
}

/// Values that break one of `schema`'s rules, each with what it breaks.
fn invalid(schema: &Value, in_json: bool) -> Vec<(Value, String)> {
    let mut out = Vec::new();
    if schema["enum"].is_array() {
        out.push((json!("zz-none-of-these"), "enum".into()));
    }
    let n = |k: &str| schema[k].as_i64();
    match schema["type"].as_str() {
        Some("string") => {
            if let Some(max) = n("maxLength") {
                out.push((json!("a".repeat(max as usize + 1)), "maxLength".into()));
            }
            if let Some(min) = n("minLength").filter(|&m| m > 0) {
                out.push((json!("a".repeat(min as usize - 1)), "minLength".into()));
            }
            if schema.get("pattern").is_some()
                || schema["description"].as_str().is_some_and(|d| d.starts_with("a keyword"))
            {
                out.push((json!("a b"), "keyword".into()));
            }
            if in_json {
                out.push((json!(5), "type".into()));
            }
        }
        Some("integer") => {
            out.push((json!("x"), "type".into()));
            if let Some(min) = n("minimum").filter(|&m| m > i64::MIN) {
                out.push((json!(min - 1), "minimum".into()));
            }
            if let Some(max) = n("maximum").filter(|&m| m < i64::MAX) {
                out.push((json!(max + 1), "maximum".into()));
            }
        }
        Some("number") => out.push((json!("x"), "type".into())),
        Some("boolean") => out.push((json!("maybe"), "type".into())),
        Some("array") if in_json => {
            out.push((json!("x"), "type".into()));
            if let Some(max) = n("maxItems") {
                out.push((Value::Array(vec![valid(&schema["items"]); max as usize + 1]), "maxItems".into()));
            }
        }
        Some("object") => {
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            let good = valid(schema);
            for r in required {
                let mut doc = good.clone();
                doc.as_object_mut().unwrap().remove(r.as_str().unwrap());
                out.push((doc, format!("required {r}")));
            }
            if schema["additionalProperties"] == json!(false) {
                let mut doc = good.clone();
                doc["zz_unknown"] = json!(1);
                out.push((doc, "additionalProperties".into()));
            }
            for (k, s) in schema["properties"].as_object().cloned().unwrap_or_default() {
                for (bad, why) in invalid(&s, true) {
                    let mut doc = good.clone();
                    doc[&k] = bad;
                    out.push((doc, format!("{k}: {why}")));
                }
            }
        }
        _ => {}
    }
    out
}

/// A value as a query string or path segment carries it.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// For every operation of the example guests: a request made from its
/// schema (every declared input at a value its rules keep) is not refused
/// by the host, and the same request with one input broken (each rule, one
/// at a time) is a 400.
#[test]
fn requests_made_from_the_schemas_pass_and_mutated_ones_get_400() {
    let s = Server::start(&["chat", "hello", "todo", "typed"], &["--quiet"]);
    let d = document(&s);
    let (mut passed, mut refused) = (0, 0);
    for (path, item) in d["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["summary"].as_str().is_some_and(|s| s.starts_with("static file")) {
                continue;
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let body_schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let stream = op["responses"]["200"]["content"].get("text/event-stream").is_some();
            // The inputs: (name, where, value) for each parameter it takes.
            let inputs: Vec<(String, String, Value)> = params
                .iter()
                .filter(|p| p["in"] != "cookie" && p["name"] != "If-None-Match")
                .map(|p| {
                    (p["name"].as_str().unwrap().to_owned(), p["in"].as_str().unwrap().to_owned(), valid(&p["schema"]))
                })
                .collect();
            let body = (!body_schema.is_null()).then(|| valid(body_schema));
            let send = |inputs: &[(String, String, Value)], body: Option<&Value>| -> u16 {
                let mut target = path.clone();
                let mut query = Vec::new();
                let mut headers = Vec::new();
                for (name, place, v) in inputs {
                    match place.as_str() {
                        "path" => target = target.replace(&format!("{{{name}}}"), &house_tests::enc(&text(v))),
                        "header" => headers.push((name.clone(), text(v))),
                        _ => match v {
                            Value::Array(items) => {
                                query.extend(items.iter().map(|i| format!("{name}={}", house_tests::enc(&text(i)))))
                            }
                            v => query.push(format!("{name}={}", house_tests::enc(&text(v)))),
                        },
                    }
                }
                if !query.is_empty() {
                    target = format!("{target}?{}", query.join("&"));
                }
                let json = body.map(Value::to_string);
                if json.is_some() {
                    headers.push(("Content-Type".into(), "application/json".into()));
                }
                let h: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                let method = method.to_ascii_uppercase();
                if stream {
                    // The status line only: a stream does not end.
                    let mut c = s.connect();
                    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n");
                    for (k, v) in &h {
                        req.push_str(&format!("{k}: {v}\r\n"));
                    }
                    std::io::Write::write_all(&mut c, format!("{req}\r\n").as_bytes()).unwrap();
                    let mut line = String::new();
                    std::io::BufRead::read_line(&mut std::io::BufReader::new(c), &mut line).unwrap();
                    return line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                }
                s.send(&method, &target, &h, json.as_deref().unwrap_or("")).status
            };
            let status = send(&inputs, body.as_ref());
            assert!(![400, 413, 415].contains(&status), "{method} {path} from its schema: {status}");
            passed += 1;
            for (i, (name, place, _)) in inputs.iter().enumerate() {
                let p = params.iter().find(|p| p["name"] == name.as_str()).unwrap();
                let mut broken: Vec<(Option<Value>, String)> =
                    invalid(&p["schema"], false).into_iter().map(|(v, why)| (Some(v), why)).collect();
                if p["required"] == json!(true) && place != "path" {
                    broken.push((None, "required".into()));
                }
                for (bad, why) in broken {
                    let mut inputs = inputs.clone();
                    // A value longer than a request head may be is refused
                    // before it is looked at (414; `--max-head-bytes`).
                    let expected = if bad.as_ref().is_some_and(|b| text(b).len() > 16384) { 414 } else { 400 };
                    match bad {
                        Some(bad) => inputs[i].2 = bad,
                        None => drop(inputs.remove(i)),
                    }
                    let status = send(&inputs, body.as_ref());
                    assert_eq!(status, expected, "{method} {path} with {place} {name} breaking {why}");
                    refused += 1;
                }
            }
            if let Some(good) = &body {
                for (bad, why) in invalid(body_schema, true) {
                    assert_eq!(send(&inputs, Some(&bad)), 400, "{method} {path} with a body breaking {why}: {bad}");
                    refused += 1;
                }
                let _ = good;
            }
        }
    }
    eprintln!("{passed} requests from the schemas passed, {refused} mutated ones were refused");
    assert!(passed > 20 && refused > 50, "{passed} passed, {refused} refused");
}
