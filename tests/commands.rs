//! The guest author's commands, run as a user would: `house new` makes a
//! crate outside the repository that tests, builds and serves; `house check`
//! prints what a module would serve or exactly why it is refused; the
//! command line's conventions (`--version`, "did you mean").

use std::process::Command;
use std::time::Duration;

use house_tests::fault::{WatHandler, module};
use house_tests::{Server, TempDir, example_guest, house_bin, repo};

fn house(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(house_bin()).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn cargo(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new(env!("CARGO")).args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "cargo {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn new_then_dev_then_check_outside_the_repository() {
    let outside = TempDir::new("house-new");
    let dir = outside.path().join("greeter");
    let (code, said, err) = house(&["new", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(said.contains("a guest serving /greeter/hello"), "{said}");
    assert_eq!(house(&["new", dir.to_str().unwrap()]).0, 1, "never over an existing folder");
    assert_eq!(
        house(&["new", "Bad Name"]).2,
        "house: house new Bad Name: a guest's name is lower-case letters, digits, - and _, starting with a letter\n"
    );
    // Its cookie key: one base64 key of 32 bytes, readable by its owner only,
    // and kept out of git.
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("cookie.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    let line = text.lines().find(|l| !l.starts_with('#')).expect("a key line");
    assert_eq!(line.len(), 44, "32 bytes in base64: {line}");
    assert!(std::fs::read_to_string(dir.join(".gitignore")).unwrap().contains("/cookie.key"));
    let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let beside = repo().join("guest-sdk").canonicalize().unwrap();
    assert!(toml.contains(&format!("path = \"{}\"", beside.display())), "the SDK beside the binary:\n{toml}");
    cargo(&dir, &["test", "--quiet"]);

    // `house dev` builds it, serves it, and rebuilds it on an edit.
    let s = Server::start_dev(&[&dir], TempDir::new("house-dev-guests"), &["--quiet"]);
    s.wait_for_log("house: loaded greeter.wasm", Duration::from_secs(120));
    let r = s.get("/greeter/hello?name=Ada");
    assert_eq!((r.status, r.body.as_str()), (200, "Hello, Ada!\n"));
    // One port while writing a guest: the admin surface is on it too.
    assert_eq!(s.admin, s.addr);
    s.wait_for_log("admin (/_house/) on the public port", Duration::ZERO);
    assert_eq!(s.get("/_house/stats").status, 200);
    let page = s.get("/greeter");
    assert_eq!((page.status, page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert!(page.body.contains("/greeter/updates?topic=news") && page.header("etag").is_some(), "{}", page.body);
    assert_eq!(s.get(&format!("/greeter/hello?name={}", "x".repeat(41))).status, 400);
    let mut sub = house_tests::sse::Subscriber::open(s.connect(), "/greeter/updates?topic=news");
    assert!(sub.next_data().is_some(), "the stream's first event");
    assert_eq!(s.post_form("/greeter/announce", "topic=news&text=it+works").status, 200);
    assert_eq!(sub.next_data().as_deref(), Some("it works"));

    let source = dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, text.replace("Hello, {name}!", "Howdy, {name}!")).unwrap();
    s.wait_for_log("house: reloaded greeter.wasm", Duration::from_secs(120));
    assert_eq!(s.get("/greeter/hello?name=Ada").body, "Howdy, Ada!\n");

    // A broken edit: the compiler's message in the terminal, the last good
    // version still serving.
    std::fs::write(
        &source,
        text.replace("Hello, {name}!", "Howdy, {name}!").replace("subscribe(topic)", "subscribe(topik)"),
    )
    .unwrap();
    s.wait_for_log("the build failed; the last good version keeps serving", Duration::from_secs(120));
    s.wait_for_log("cannot find value `topik` in this scope", Duration::from_secs(5));
    assert_eq!(s.get("/greeter/hello?name=Ada").body, "Howdy, Ada!\n");

    let wasm = dir.join("target/wasm32-unknown-unknown/release/greeter.wasm");
    let (code, said, err) = house(&["check", wasm.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(said.starts_with("greeter.wasm: ok, "), "{said}");
    assert!(
        said.contains(
            "  GET|POST /greeter/hello  (handler hello, closing, text/plain; charset=utf-8)\n    name (query): string, \
             rules {\"chars\":{\"max\":40,\"min\":1}}, default \"world\"\n"
        ),
        "{said}"
    );
    assert!(
        said.contains("  GET /greeter/updates  (handler updates, stream, text/event-stream or WebSocket)\n"),
        "{said}"
    );
}

#[test]
fn house_check_prints_routes_or_the_refusal() {
    let chat = example_guest("chat");
    let (code, said, _) = house(&["check", chat.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(said.contains("  GET /source  (handler source, stream, text/event-stream or WebSocket)\n    room (query): string, rules {\"chars\":{\"max\":16}}, required\n"), "{said}");
    // A message handler: what the socket's messages must be.
    assert!(
        said.contains(
            "  MESSAGE /source  (handler socket_say, message, a WebSocket message, text/plain; charset=utf-8, \
             answers 200 403)\n"
        ),
        "{said}"
    );
    assert!(said.contains("    body (body): Said, required\n"), "{said}");
    // The statuses a handler declares.
    let (code, said, _) = house(&["check", example_guest("todo").to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        said.contains(
            "  DELETE /todos/{id}  (handler remove, closing, text/html; charset=utf-8, answers 204 404 500 503)"
        ),
        "{said}"
    );

    // A default that breaks its own rules: refused as the server would.
    let dir = TempDir::new("house-check");
    let bad = dir.path().join("bad.wasm");
    let manifest = r#"{"name":"h","kind":"closing","params":[{"name":"n","type":"integer","rules":{"range":{"min":1,"max":5}},"default":"9"}]}"#;
    std::fs::write(&bad, module(1, &[WatHandler { name: "h", manifest: manifest.into(), body: "(global.get $ok)" }]))
        .unwrap();
    let not_wasm = dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "not a module").unwrap();
    let (code, said, err) =
        house(&["check", chat.to_str().unwrap(), bad.to_str().unwrap(), not_wasm.to_str().unwrap()]);
    assert_eq!(code, 1, "one refused: exit 1");
    assert!(said.starts_with("chat.wasm: ok"), "the others are still checked: {said}");
    assert!(
        err.contains("bad.wasm: refused: handler h: default breaks its own rules: n: 9 is above the maximum 5"),
        "{err}"
    );
    assert!(err.contains("notes.wasm: refused: not a valid wasm module"), "{err}");
    assert_eq!(house(&["check"]).2, "house: house check FILE.wasm...: which files?\n");
    assert_eq!(house(&["dev"]).2, "house: house dev CRATE_DIR...: which guest crates?\n");
    let (code, _, err) = house(&["dev", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("has no Cargo.toml (a guest crate, as `house new` makes)"), "{err}");
}

#[test]
fn the_command_line_says_its_version_and_near_misses() {
    let (code, said, _) = house(&["--version"]);
    assert_eq!((code, said), (0, format!("house {}\n", env!("CARGO_PKG_VERSION"))));
    assert_eq!(house(&["--theads", "2"]).2, "house: unknown flag --theads: did you mean --threads? (see --help)\n");
    assert_eq!(house(&["--zzzz"]).2, "house: unknown flag --zzzz (see --help)\n");
    let help = house(&["--help"]).1;
    for section in ["house check [FLAGS] FILE.wasm...", "house new NAME", "EXIT STATUS:", "SIGNALS:", "ENVIRONMENT:"] {
        assert!(help.contains(section), "--help has {section}");
    }
}

/// A binary away from any SDK says so and takes `--sdk`; one that has an
/// SDK beside it (`share/house/guest-sdk`, as installed) uses that one.
#[test]
fn house_new_finds_the_sdk_beside_the_binary_or_takes_sdk() {
    let root = TempDir::new("house-install");
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(house_bin(), bin.join("house")).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin.join("house")).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let away = root.path().join("away");
    let (code, err) = run(&["new", away.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no house SDK beside") && err.contains("--sdk DIR"), "{err}");
    let (code, err) = run(&["new", away.to_str().unwrap(), "--sdk", root.path().to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not the house SDK (no Cargo.toml of house-sdk there)"), "{err}");
    let (code, err) = run(&["new", away.to_str().unwrap(), "--force"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("house new NAME takes only --sdk DIR"), "{err}");
    assert!(!away.exists(), "nothing made on a refusal");
    let sdk = repo().join("guest-sdk");
    assert_eq!(run(&["new", away.to_str().unwrap(), "--sdk", sdk.to_str().unwrap()]).0, Some(0));
    let toml = std::fs::read_to_string(away.join("Cargo.toml")).unwrap();
    assert!(toml.contains(&format!("path = \"{}\"", sdk.canonicalize().unwrap().display())), "{toml}");
    // Installed: bin/house and share/house/guest-sdk.
    std::fs::create_dir_all(root.path().join("share/house")).unwrap();
    std::os::unix::fs::symlink(&sdk, root.path().join("share/house/guest-sdk")).unwrap();
    let beside = root.path().join("beside");
    assert_eq!(run(&["new", beside.to_str().unwrap()]).0, Some(0));
    let toml = std::fs::read_to_string(beside.join("Cargo.toml")).unwrap();
    assert!(toml.contains(&format!("path = \"{}\"", sdk.canonicalize().unwrap().display())), "{toml}");
}
