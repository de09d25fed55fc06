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
