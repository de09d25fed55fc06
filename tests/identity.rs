//! Verified identity over real HTTP: the `board` test guest takes a bearer
//! token whose claims say which rooms its holder may read, write and
//! subscribe to. The host verifies the token (HS256 with rotated keys,
//! EdDSA; exp, nbf and iat with a leeway; iss and aud) and its claims'
//! rules before any instance exists, and answers 401 with
//! `WWW-Authenticate` otherwise; the guest answers 403 for a room or a
//! scope the claims do not give.

use house_tests::identity::{ed25519_key, eddsa, hs256, key_file, now, secret, unsigned};
use house_tests::sse::Subscriber;
use house_tests::{Response, Server, TempDir, test_guest};
use serde_json::{Value, json};

struct Board {
    s: Server,
    old: [u8; 32],
    new: [u8; 32],
    ed: ed25519_dalek::SigningKey,
    _keys: TempDir,
}

/// The board with two HS256 keys (kids `old` and `new`), one Ed25519
/// public key, an issuer, an audience and a 30 s leeway.
fn board() -> Board {
    let keys = TempDir::new("keys");
    let (old, new, ed) = (secret(), secret(), ed25519_key());
    let hs = key_file(keys.path(), "hs.keys", &[(Some("old"), &old), (Some("new"), &new)]);
    let public = ed.verifying_key().to_bytes();
    let pk = key_file(keys.path(), "ed.keys", &[(Some("ed1"), &public)]);
    let dir = TempDir::new("guests");
    std::fs::copy(test_guest("board"), dir.path().join("board.wasm")).unwrap();
    let flags = [
        "--quiet",
        "--auth-key-file",
        hs.to_str().unwrap(),
        "--auth-public-key-file",
        pk.to_str().unwrap(),
        "--auth-issuer",
        "https://id.example",
        "--auth-audience",
        "board",
        "--auth-leeway-s",
        "30",
    ];
    Board { s: Server::start_in(dir, &flags), old, new, ed, _keys: keys }
}

fn claims(sub: &str, rooms: &[&str], can: &[&str]) -> Value {
    let t = now();
    json!({"sub": sub, "rooms": rooms, "can": can, "iss": "https://id.example", "aud": ["board", "other"],
           "iat": t, "nbf": t, "exp": t + 300})
}

impl Board {
    fn get(&self, room: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.s.send("GET", &format!("/board/{room}"), &[("Authorization", auth.as_str())], "")
    }

    fn post(&self, room: &str, token: &str, body: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.s.post_json(&format!("/board/{room}"), &[("Authorization", auth.as_str())], body)
    }

    /// A 401 for `token`: its description and the challenge.
    fn refused(&self, token: &str) -> (String, String) {
        let r = self.get("lobby", token);
        assert_eq!(r.status, 401, "{}", r.body);
        (r.body.trim_end().to_owned(), r.header("www-authenticate").expect("a challenge").to_owned())
    }
}

#[test]
fn claims_decide_what_a_caller_may_read_write_and_subscribe_to() {
    let b = board();
    let ada = hs256(&b.new, Some("new"), &claims("ada", &["lobby"], &["read", "write", "subscribe"]));
    let bob = hs256(&b.old, Some("old"), &claims("bob", &["lobby", "kitchen"], &["read"]));

    let mut tab =
        Subscriber::open_with(b.s.connect(), "/board/lobby/events", &[("Authorization", &format!("Bearer {ada}"))]);
    tab.set_timeout(std::time::Duration::from_secs(10));
    assert_eq!(tab.next_data().as_deref(), Some("listening"));

    let r = b.post("lobby", &ada, r#"{"text": "hello", "tags": ["hi"], "priority": 2}"#);
    assert_eq!((r.status, r.body.as_str()), (201, r#"{"by":"ada","text":"hello","tags":["hi"],"priority":2}"#));
    assert_eq!(tab.next_data().as_deref(), Some(r#"{"by":"ada","text":"hello","tags":["hi"],"priority":2}"#));
    let r = b.get("lobby", &bob);
    assert_eq!((r.status, r.body.as_str()), (200, r#"[{"by":"ada","text":"hello","tags":["hi"],"priority":2}]"#));

    // What the claims do not give, the guest refuses.
    let r = b.post("lobby", &bob, r#"{"text": "hi", "tags": []}"#);
    assert_eq!((r.status, r.body.trim_end()), (403, "bob may not write room lobby"));
    assert_eq!(b.get("kitchen", &ada).status, 403, "ada's rooms are the lobby only");
    let r = b.s.send("GET", "/board/lobby/events", &[("Authorization", &format!("Bearer {bob}"))], "");
    assert_eq!((r.status, r.body.trim_end()), (403, "bob may not subscribe room lobby"));

    // A browser's EventSource sends no header: the token may be a cookie.
    let cookie = format!("board_token={ada}");
    let mut by_cookie = Subscriber::open_with(b.s.connect(), "/board/lobby/events", &[("Cookie", cookie.as_str())]);
    by_cookie.set_timeout(std::time::Duration::from_secs(10));
    assert_eq!(by_cookie.next_data().as_deref(), Some("listening"));
    // ...but only where the handler says so.
    let r = b.s.send("GET", "/board/lobby", &[("Cookie", cookie.as_str())], "");
    assert_eq!((r.status, r.body.trim_end()), (401, "token: missing (Authorization: Bearer)"));

    // The body is typed too, after the token.
    let r = b.post("lobby", &ada, r#"{"text": "", "tags": []}"#);
    assert_eq!((r.status, r.body.trim_end()), (400, "body.text: length 0 is below the minimum 1"));
    let r = b.post("lobby", &ada, r#"{"text": "x", "tags": [], "priority": 9}"#);
    assert_eq!((r.status, r.body.trim_end()), (400, "body.priority: 9 is above the maximum 5"));

    // EdDSA, with the Ed25519 key.
    let ed = eddsa(&b.ed, &claims("eve", &["lobby"], &["read"]));
    assert_eq!(b.get("lobby", &ed).status, 200);
}

#[test]
fn every_bad_token_is_a_401_with_a_reason_and_a_challenge() {
    let b = board();
    let good = claims("ada", &["lobby"], &["read"]);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        edit(&mut c);
        hs256(&b.new, Some("new"), &c)
    };
    let t = now();
    let r = b.s.get("/board/lobby");
    assert_eq!((r.status, r.body.trim_end()), (401, "token: missing (Authorization: Bearer)"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"house\""));
    let (why, challenge) = b.refused("not-a-token");
    assert_eq!(why, "token: malformed token (not three parts)");
    assert_eq!(
        challenge,
        "Bearer realm=\"house\", error=\"invalid_token\", error_description=\"token: malformed token (not three parts)\""
    );
    assert_eq!(b.refused("a.b!.c").0, "token: malformed token (not base64url)");
    assert_eq!(b.refused(&unsigned(&good)).0, "token: unsupported alg (HS256 or EdDSA)");
    assert_eq!(b.refused(&hs256(&secret(), None, &good)).0, "token: bad signature", "signed with a key not configured");
    assert_eq!(b.refused(&hs256(&b.old, Some("new"), &good)).0, "token: bad signature", "the kid names another key");
    assert_eq!(b.get("lobby", &hs256(&b.old, None, &good)).status, 200, "without a kid, any key verifies");
    let ada = hs256(&b.new, Some("new"), &good);
    let (head, rest) = ada.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let other_body = hs256(&b.new, Some("new"), &claims("root", &["lobby"], &["read"]));
    let other_body = other_body.split('.').nth(1).unwrap();
    assert_eq!(b.refused(&format!("{head}.{other_body}.{sig}")).0, "token: bad signature", "claims swapped");
    let ed_forged = eddsa(&ed25519_key(), &good);
    assert_eq!(b.refused(&ed_forged).0, "token: bad signature");

    // Times, at the leeway's bound (30 s).
    assert_eq!(b.get("lobby", &with(&|c| c["exp"] = json!(t - 20))).status, 200, "expired within the leeway");
    assert_eq!(b.refused(&with(&|c| c["exp"] = json!(t - 40))).0, "token: token expired");
    assert_eq!(
        b.refused(&with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }))
        .0,
        "token: token has no exp"
    );
    assert_eq!(b.refused(&with(&|c| c["exp"] = json!("soon"))).0, "token: malformed time claim");
    assert_eq!(b.get("lobby", &with(&|c| c["nbf"] = json!(t + 20))).status, 200, "not yet, within the leeway");
    assert_eq!(b.refused(&with(&|c| c["nbf"] = json!(t + 40))).0, "token: token not yet valid");
    assert_eq!(b.refused(&with(&|c| c["iat"] = json!(t + 40))).0, "token: token issued in the future");
    // Issuer and audience.
    assert_eq!(b.refused(&with(&|c| c["iss"] = json!("https://evil.example"))).0, "token: wrong issuer");
    assert_eq!(b.refused(&with(&|c| c["aud"] = json!("other"))).0, "token: wrong audience");
    assert_eq!(b.get("lobby", &with(&|c| c["aud"] = json!("board"))).status, 200, "aud as a string");
    // The claims' own rules.
    let (why, challenge) = b.refused(&with(&|c| c["can"] = json!(["read", "admin"])));
    assert_eq!(why, "token.can[1]: \"admin\" is not one of \"read\", \"write\", \"subscribe\"");
    assert_eq!(
        challenge,
        "Bearer realm=\"house\", error=\"invalid_token\", \
         error_description=\"token.can[1]: 'admin' is not one of 'read', 'write', 'subscribe'\"",
        "quotes in the reason do not end the header's quoted string"
    );
    assert_eq!(b.refused(&with(&|c| c["sub"] = json!(""))).0, "token.sub: length 0 is below the minimum 1");
    assert_eq!(
        b.refused(&with(&|c| {
            c.as_object_mut().unwrap().remove("rooms");
        }))
        .0,
        "token.rooms: missing (a required list of keyword)"
    );
    assert_eq!(
        b.refused(&with(&|c| c["role"] = json!("admin"))).0,
        "token: \"role\" is not a field of Claims (it has sub, rooms, can)"
    );
    // Too long to look at.
    assert_eq!(b.refused(&"a".repeat(9000)).0, "token: token too long");
    // None of the refusals made a call: the guest ran for the 4 good tokens.
    let metrics = b.s.admin_get("/_house/metrics").body;
    let calls: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("house_guest_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(calls, 4, "{metrics}");
    // No key of the file appears in any answer or in the log.
    let log = b.s.log();
    for key in [&b.old[..], &b.new[..]] {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode(key);
        assert!(!log.contains(&text), "a key in the log");
        assert!(!b.s.admin_get("/_house/guests").body.contains(&text));
    }
}

#[test]
fn a_host_without_keys_refuses_tokens_and_bad_key_files_stop_it_at_start() {
    let dir = TempDir::new("guests");
    std::fs::copy(test_guest("board"), dir.path().join("board.wasm")).unwrap();
    let s = Server::start_in(dir, &["--quiet"]);
    let token = hs256(&secret(), None, &claims("ada", &["lobby"], &["read"]));
    let r = s.send("GET", "/board/lobby", &[("Authorization", &format!("Bearer {token}"))], "");
    assert_eq!((r.status, r.body.trim_end()), (401, "token: no HS256 key is configured"));

    let keys = TempDir::new("keys");
    let short = key_file(keys.path(), "short.keys", &[(None, &[1u8; 16])]);
    let bad = |flag: &str, path: &str| {
        let out =
            std::process::Command::new(house_tests::house_bin()).args(["--port", "0", flag, path]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = bad("--auth-key-file", short.to_str().unwrap());
    assert!(err.contains("a secret of 16 bytes; HS256 needs 32 or more"), "{err}");
    std::fs::write(keys.path().join("garbage.keys"), "kid !!!not base64!!!\n").unwrap();
    let err = bad("--cookie-key-file", keys.path().join("garbage.keys").to_str().unwrap());
    assert!(err.contains("line 1: the key is not base64") && !err.contains("!!!"), "{err}");
    let err = bad("--auth-public-key-file", short.to_str().unwrap());
    assert!(err.contains("a key of 16 bytes; an Ed25519 public key is 32"), "{err}");
}

/// The chat's verified names: `/chat/name` reserves a name in a room and
/// answers a cookie the host signs; `/chat/say` posts under the cookie's
/// name only. Nobody else can take the name there, and a forged, altered or
/// other room's cookie posts nothing.
#[test]
fn the_chat_signs_names_so_that_nobody_posts_as_another() {
    let s = Server::start(&["chat"], &["--quiet"]);
    let claim = |cookie: &str, room: &str, name: &str| {
        let body = format!("room={room}&name={}", house_tests::enc(name));
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie));
        }
        s.send("POST", "/chat/name", &headers, &body)
    };
    let say = |cookie: &str, room: &str| {
        let headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookie)];
        s.send("POST", "/chat/say", &headers, &format!("room={room}&message=hello+there"))
    };
    let mut sub = Subscriber::open(s.connect(), "/source?room=lab");
    sub.set_timeout(std::time::Duration::from_secs(10));
    assert!(sub.next_data().is_some(), "the stream's first event");

    let r = claim("", "lab", "Ada Lovelace");
    assert_eq!(r.status, 204, "{}", r.body);
    let set = r.header("set-cookie").unwrap().to_owned();
    let ada = set.split(';').next().unwrap().to_owned();
    assert!(ada.starts_with("chat_who=") && ada.contains("~lab~Ada%20Lovelace."), "{set}");
    assert_eq!(say(&ada, "lab").status, 200);
    assert_eq!(sub.next_data().as_deref(), Some(r#"{"name":"Ada Lovelace","message":"hello there","verified":true}"#));

    // Someone else cannot have the name in this room (any case)...
    let r = claim("", "lab", "ada lovelace");
    assert_eq!((r.status, r.body.trim_end()), (409, "the name ada lovelace is taken"));
    // ...nor make the cookie up, alter it, or use one of another room.
    let (value, signature) = ada.rsplit_once('.').unwrap();
    let id = value.strip_prefix("chat_who=").unwrap().split('~').next().unwrap();
    for forged in [
        value.to_owned(),
        format!("chat_who=ffffffffffffffffffffffff~lab~Ada%20Lovelace.{signature}"),
        format!("chat_who={id}~lab~Ada%20Lovelacf.{signature}"),
    ] {
        let r = say(&forged, "lab");
        assert_eq!((r.status, r.body.trim_end()), (403, "no name in this room: claim one at /chat/name"), "{forged}");
    }
    let bob = claim("", "other", "Ada Lovelace");
    assert_eq!(bob.status, 204, "names are per room");
    let bob = bob.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(say(&bob, "lab").status, 403, "a name of another room");
    // Ada claims again (a new page): still hers.
    assert_eq!(claim(&ada, "lab", "Ada Lovelace").status, 204);
    // Nothing else reached the room.
    assert_eq!(say(&ada, "lab").status, 200);
    assert_eq!(sub.next_data().as_deref(), Some(r#"{"name":"Ada Lovelace","message":"hello there","verified":true}"#));
}
