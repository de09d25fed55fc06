//! What the server sends on a WebSocket, as text frames of JSON (the
//! protocol is docs/WEBSOCKET.md's): events, converted from the SSE frames
//! the hub carries (once per event per loop, not per subscriber), and the
//! answers to the client's messages.
//!
//! An event: `{"id":"7-0","event":"join","data":"..."}` (`id` and `event`
//! only when the event has them). A reply: `{"status":200,"body":"..."}`.
//! A refusal: `{"status":400,"error":"..."}`. Replies come in the order of
//! the messages they answer.

use super::frame::{self, Opcode};

/// Appends a text frame for each whole SSE event in `sse`. Comments (the
/// SSE heartbeat) and events without data (a bare `retry:`) say nothing
/// to a socket and are skipped.
pub fn from_sse(sse: &[u8], out: &mut Vec<u8>) {
    let mut json = Vec::with_capacity(sse.len() + 32);
    let (mut id, mut event): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    let mut data: Option<Vec<u8>> = None;
    for line in sse.split(|&b| b == b'\n') {
        if line.is_empty() {
            if let Some(data) = data.take() {
                json.clear();
                json.push(b'{');
                if let Some(id) = id {
                    field(&mut json, "id", id);
                    json.push(b',');
                }
                if let Some(event) = event {
                    field(&mut json, "event", event);
                    json.push(b',');
                }
                field(&mut json, "data", &data);
                json.push(b'}');
                frame::encode(out, Opcode::Text, &json);
            }
            (id, event) = (None, None);
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..])),
            None => (line, &b""[..]),
        };
        match name {
            b"id" => id = Some(value),
            b"event" => event = Some(value),
            b"data" => match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            },
            _ => {}
        }
    }
}

/// Appends the text frame answering a message: the handler's status and
/// body (as text; a refusal's, 400 and over, as its error).
pub fn reply(out: &mut Vec<u8>, status: u16, body: &[u8]) {
    let key = if status >= 400 { "error" } else { "body" };
    frame::encode(out, Opcode::Text, &answer(status, key, body));
}

/// Appends the text frame refusing a message: a status as HTTP would have
/// it, and the reason. `unknown`: whether what it asked for happened is not
/// known (HTTP says `House-Outcome: unknown`; here `"outcome":"unknown"`).
pub fn refusal(out: &mut Vec<u8>, status: u16, reason: &str, unknown: bool) {
    let mut json = answer(status, "error", reason.as_bytes());
    if unknown {
        json.pop();
        json.extend_from_slice(b",\"outcome\":\"unknown\"}");
    }
    frame::encode(out, Opcode::Text, &json);
}

fn answer(status: u16, key: &str, text: &[u8]) -> Vec<u8> {
    let mut json = Vec::with_capacity(text.len() + 32);
    json.extend_from_slice(b"{\"status\":");
    json.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    json.push(b',');
    field(&mut json, key, text);
    json.push(b'}');
    json
}

/// `"key":"value"`, the value escaped as a JSON string (bytes that are
/// not UTF-8 become U+FFFD: a text frame must be UTF-8).
fn field(json: &mut Vec<u8>, key: &str, value: &[u8]) {
    json.push(b'"');
    json.extend_from_slice(key.as_bytes());
    json.extend_from_slice(b"\":");
    let text = String::from_utf8_lossy(value);
    serde_json::to_writer(&mut *json, &*text).expect("writing to a Vec");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payloads of the text frames in `bytes` (server frames: unmasked).
    fn payloads(mut bytes: &[u8]) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0], 0x81, "a final text frame");
            let (len, at) = match bytes[1] {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize, 10),
                n => (n as usize, 2),
            };
            out.push(serde_json::from_slice(&bytes[at..at + len]).unwrap());
            bytes = &bytes[at + len..];
        }
        out
    }

    #[test]
    fn events_become_json_text_frames() {
        let sse = b"event: join\nid: 7-0\ndata: a \"quoted\"\ndata: second line\n\n:\n\nretry: 500\n\ndata: \xff\n\n";
        let mut out = Vec::new();
        from_sse(sse, &mut out);
        let got = payloads(&out);
        assert_eq!(
            got,
            [
                serde_json::json!({"id": "7-0", "event": "join", "data": "a \"quoted\"\nsecond line"}),
                serde_json::json!({"data": "\u{fffd}"}),
            ]
        );
    }

    #[test]
    fn replies_and_refusals() {
        let mut out = Vec::new();
        reply(&mut out, 201, b"made");
        refusal(&mut out, 400, "body.text: missing", false);
        refusal(&mut out, 503, "not confirmed", true);
        assert_eq!(
            payloads(&out),
            [
                serde_json::json!({"status": 201, "body": "made"}),
                serde_json::json!({"status": 400, "error": "body.text: missing"}),
                serde_json::json!({"status": 503, "error": "not confirmed", "outcome": "unknown"}),
            ]
        );
    }
}
