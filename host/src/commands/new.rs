//! `house new NAME`: a guest crate that builds anywhere. Its Cargo.toml
//! points at the SDK beside the house binary in use, or the one `--sdk`
//! names (no workspace inheritance,
//! unlike the examples in `guests/`), with the size profile and the stack
//! setting every guest wants, one closing handler, one stream handler, one
//! that publishes, and native unit tests.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The SDK beside the running binary: in a checkout (`target/release/house`
/// and `guest-sdk/`), or installed (`bin/house` and `share/house/guest-sdk/`).
/// Not the checkout it was built in: a binary copied elsewhere would write
/// a path into a tree that may be gone, or another version.
fn sdk_beside_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where this binary is")?;
    let mut looked = Vec::new();
    for dir in exe.ancestors().skip(1).take(4) {
        for candidate in [dir.join("guest-sdk"), dir.join("share/house/guest-sdk")] {
            if is_sdk(&candidate) {
                return Ok(candidate);
            }
            looked.push(candidate.display().to_string());
        }
    }
    bail!("no house SDK beside {} (looked in {}): give its folder with --sdk DIR", exe.display(), looked.join(", "))
}

fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("name = \"house-sdk\""))
}

pub fn run(dir: &Path, sdk: Option<&Path>) -> anyhow::Result<()> {
    let name = dir.file_name().and_then(|n| n.to_str()).context("house new NAME: NAME must end in a name")?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        bail!("house new {name}: a guest's name is lower-case letters, digits, - and _, starting with a letter");
    }
    if dir.exists() {
        bail!("house new: {} exists already", dir.display());
    }
    let sdk = match sdk {
        Some(given) if is_sdk(given) => given.to_owned(),
        Some(given) => bail!("--sdk {}: not the house SDK (no Cargo.toml of house-sdk there)", given.display()),
        None => sdk_beside_binary()?,
    };
    let sdk = std::fs::canonicalize(&sdk).with_context(|| format!("cannot resolve {}", sdk.display()))?;
    let files: [(PathBuf, String); 5] = [
        (dir.join("Cargo.toml"), cargo_toml(name, &sdk)),
        (dir.join(".cargo/config.toml"), CARGO_CONFIG.to_owned()),
        (dir.join("src/lib.rs"), lib_rs(name)),
        (dir.join("src/index.html"), index_html(name)),
        (dir.join(".gitignore"), "/target\n/cookie.key\n".to_owned()),
    ];
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The key its signed cookies are signed with (0600; `house dev` uses
    // it; give it to `house --cookie-key-file` in production).
    crate::identity::ensure_key_file(&dir.join("cookie.key"))?;
    let wasm = name.replace('-', "_");
    println!(
        "created {dir}: a guest serving /{name}/hello, /{name}/updates and /{name}/announce,
and its page /{name} (src/index.html, a static file); cookie.key signs its cookies
(house dev uses it; house --cookie-key-file cookie.key in production; keep it secret)

    cd {dir}
    cargo test                       # the handlers as plain functions
    house dev --guests GUESTS .      # serve it; rebuilt and reloaded on every save

or by hand:

    cargo build --release --target wasm32-unknown-unknown
    house check target/wasm32-unknown-unknown/release/{wasm}.wasm
    cp target/wasm32-unknown-unknown/release/{wasm}.wasm GUESTS/   # served at once, no restart",
        dir = dir.display()
    );
    Ok(())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
house-sdk = {{ path = "{sdk}" }}

# What a guest carries is paid on every request (its memory is restored
# after each): build it small.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A crate of its own, even inside another workspace.
[workspace]
"#,
        sdk = sdk.display()
    )
}

const CARGO_CONFIG: &str = r#"# A 16 KiB stack instead of rustc's 1 MiB default: with the data and a
# little heap, an instance's memory fits one wasm page (64 KiB), which the
# host restores whole after every call (its cost grows with the memory:
# BENCHMARKS.md, scenario 3). A stack overflow traps (the stack is first in
# memory and grows down past address 0): the request is a 500.
[target.wasm32-unknown-unknown]
rustflags = ["-C", "link-arg=-zstack-size=16384"]
"#;

fn index_html(name: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>{name}</title>
<h1>{name}</h1>
<form id="say"><input id="text" aria-label="Announcement" required maxlength="280"> <button>Announce</button></form>
<ul id="log"></ul>
<script>
// What is announced on the topic "news" arrives here, from every tab.
const log = document.getElementById("log");
new EventSource("/{name}/updates?topic=news").onmessage = (ev) => {{
  const li = document.createElement("li");
  li.textContent = ev.data;
  log.append(li);
}};
document.getElementById("say").addEventListener("submit", async (e) => {{
  e.preventDefault();
  const text = document.getElementById("text");
  await fetch("/{name}/announce", {{ method: "POST", body: new URLSearchParams({{ topic: "news", text: text.value }}) }});
  text.value = "";
}});
</script>
</html>
"#
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        r#"//! {name}: a house guest. Each request runs in a fresh instance's state:
//! nothing survives between requests but what the host keeps (channels, and the
//! key-value store of `house_sdk::kv`).

use house_sdk::prelude::*;

/// `GET /{name}/hello?name=Ada` -> `Hello, Ada!` (`name` is 1 to 40
/// characters, "world" if absent: the host refuses anything else with a
/// 400 before this runs).
#[handler(closing, path = "/{name}/hello", content_type = "text/plain; charset=utf-8")]
fn hello(#[param(chars(min = 1, max = 40), default = "world")] name: &str) -> String {{
    format!("Hello, {{name}}!\n")
}}

// `GET /{name}`: the page, served by the host from the module (with an
// ETag, a 304 when the browser's copy is current), no instance per request.
static_files! {{
    "/{name}" => "index.html",
}}

/// `GET /{name}/updates?topic=news`: a Server-Sent Events stream of what is
/// announced on the topic.
#[handler(stream, path = "/{name}/updates")]
fn updates(#[param(chars(min = 1, max = 32))] topic: &str) -> Result<(), HostError> {{
    subscribe(topic)
}}

/// `POST /{name}/announce` with `topic` and `text`: every stream on the
/// topic gets the text as an event.
#[handler(closing, path = "/{name}/announce", methods(POST), content_type = "text/plain; charset=utf-8")]
fn announce(
    #[param(chars(min = 1, max = 32))] topic: &str,
    #[param(chars(min = 1, max = 280))] text: &str,
) -> Result<String, HostError> {{
    publish(topic, text)?;
    Ok("announced\n".into())
}}

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn greets() {{
        assert_eq!(hello("Ada"), "Hello, Ada!\n");
    }}

    #[test]
    fn announces_on_the_topic() {{
        announce("news", "it works").unwrap();
        let asked = house_sdk::testing::take();
        assert_eq!(asked.published.len(), 1);
        assert_eq!((asked.published[0].channel.as_str(), asked.published[0].data.as_str()), ("news", "it works"));
    }}
}}
"#
    )
}
