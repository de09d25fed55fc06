//! The framing's unit tests, by Autobahn|Testsuite's case families.

use super::*;

/// A client frame: masked with a fixed key.
fn client(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// Every message `bytes` decode to, or the first violation.
fn decode(max: usize, bytes: &[u8]) -> Result<Vec<Message>, Violation> {
    let mut d = Decoder::new(max);
    let mut at = 0;
    let mut out = Vec::new();
    while let Some(m) = d.next(bytes, &mut at)? {
        out.push(m);
    }
    Ok(out)
}

#[test]
fn framing_1() {
    for n in [0, 125, 126, 127, 128, 65535, 65536] {
        let text = "*".repeat(n);
        let frame = client(true, 0, 1, text.as_bytes());
        assert_eq!(decode(1 << 20, &frame), Ok(vec![Message::Text(text.clone())]), "{n} bytes");
        // Byte by byte: nothing before the frame is whole.
        let mut d = Decoder::new(1 << 20);
        let mut at = 0;
        for end in 1..frame.len() {
            assert_eq!(d.next(&frame[..end], &mut at), Ok(None));
            assert_eq!(at, 0);
        }
        assert_eq!(d.next(&frame, &mut at), Ok(Some(Message::Text(text))));
        assert_eq!(at, frame.len());
    }
}

#[test]
fn ping_pong_2() {
    assert_eq!(decode(100, &client(true, 0, 9, b"hi")), Ok(vec![Message::Ping(b"hi".to_vec())]));
    assert_eq!(decode(100, &client(true, 0, 9, &[7; 125])), Ok(vec![Message::Ping(vec![7; 125])]));
    assert_eq!(decode(100, &client(true, 0, 9, &[7; 126])).unwrap_err().code, code::PROTOCOL);
    assert_eq!(decode(100, &client(true, 0, 10, b"x")), Ok(vec![Message::Pong(b"x".to_vec())]), "unsolicited");
}

#[test]
fn reserved_bits_3() {
    for rsv in 1..8 {
        assert_eq!(decode(100, &client(true, rsv, 1, b"x")).unwrap_err().code, code::PROTOCOL);
    }
}

#[test]
fn opcodes_4() {
    for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(decode(100, &client(true, 0, op, b"")).unwrap_err().reason, "unknown opcode");
    }
}

#[test]
fn fragmentation_5() {
    let mut b = client(false, 0, 1, b"hel");
    b.extend(client(true, 0, 9, b"p"));
    b.extend(client(false, 0, 0, b"lo "));
    b.extend(client(true, 0, 0, b"there"));
    let got = decode(100, &b).unwrap();
    assert_eq!(
        got,
        vec![Message::Ping(b"p".to_vec()), Message::Text("hello there".into())],
        "a ping between fragments"
    );
    assert_eq!(decode(100, &client(true, 0, 0, b"x")).unwrap_err().code, code::PROTOCOL, "a continuation alone");
    let mut b = client(false, 0, 1, b"a");
    b.extend(client(true, 0, 1, b"b"));
    assert_eq!(decode(100, &b).unwrap_err().code, code::PROTOCOL, "text inside text");
    assert_eq!(decode(100, &client(false, 0, 9, b"")).unwrap_err().code, code::PROTOCOL, "a fragmented ping");
}

#[test]
fn utf8_6() {
    let smile = "😀".as_bytes();
    // A character split across fragments is fine.
    let mut b = client(false, 0, 1, &smile[..2]);
    b.extend(client(true, 0, 0, &smile[2..]));
    assert_eq!(decode(100, &b), Ok(vec![Message::Text("😀".into())]));
    // Fail fast: the first fragment is already wrong, whatever follows.
    let mut d = Decoder::new(100);
    let mut at = 0;
    assert_eq!(d.next(&client(false, 0, 1, b"ok\xff"), &mut at).unwrap_err().code, code::INVALID_DATA);
    // An incomplete sequence at the very end.
    assert_eq!(decode(100, &client(true, 0, 1, &smile[..3])).unwrap_err().code, code::INVALID_DATA);
    assert_eq!(decode(100, &client(true, 0, 1, b"\xed\xa0\x80")).unwrap_err().code, code::INVALID_DATA, "a surrogate");
    assert_eq!(decode(100, &client(true, 0, 2, b"\xff")), Ok(vec![Message::Binary(vec![0xff])]), "binary is bytes");
}

#[test]
fn close_7() {
    assert_eq!(decode(100, &client(true, 0, 8, b"")), Ok(vec![Message::Close(None, String::new())]));
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice(b"bye");
    assert_eq!(decode(100, &client(true, 0, 8, &p)), Ok(vec![Message::Close(Some(1000), "bye".into())]));
    assert_eq!(decode(100, &client(true, 0, 8, b"x")).unwrap_err().code, code::PROTOCOL, "one byte");
    for bad in [0u16, 999, 1004, 1005, 1006, 1012, 1015, 2000, 2999, 5000] {
        let frame = client(true, 0, 8, &bad.to_be_bytes());
        assert_eq!(decode(100, &frame).unwrap_err().code, code::PROTOCOL, "code {bad}");
    }
    for good in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
        assert!(decode(100, &client(true, 0, 8, &good.to_be_bytes())).is_ok(), "code {good}");
    }
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.push(0xff);
    assert_eq!(decode(100, &client(true, 0, 8, &p)).unwrap_err().code, code::INVALID_DATA);
}

#[test]
fn limits_9() {
    assert!(decode(1000, &client(true, 0, 2, &[0; 1000])).is_ok());
    // Refused from the header, before the payload arrives.
    let frame = client(true, 0, 2, &[0; 1001]);
    assert_eq!(decode(1000, &frame[..14]).unwrap_err().code, code::TOO_BIG);
    let mut b = client(false, 0, 2, &[0; 600]);
    b.extend(client(true, 0, 0, &[0; 401]));
    assert_eq!(decode(1000, &b).unwrap_err().code, code::TOO_BIG, "fragments add up");
    let mut top = vec![0x82, 0xFF];
    top.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert_eq!(decode(1000, &top).unwrap_err().code, code::PROTOCOL);
    assert_eq!(decode(1000, &[0x81, 0x01, b'x']).unwrap_err().reason, "a client frame must be masked");
}

#[test]
fn server_frames() {
    let mut out = Vec::new();
    encode(&mut out, Opcode::Text, b"hi");
    assert_eq!(out, [0x81, 2, b'h', b'i']);
    out.clear();
    encode(&mut out, Opcode::Binary, &[0; 300]);
    assert_eq!(&out[..4], &[0x82, 126, 1, 44]);
    out.clear();
    encode_close(&mut out, code::GOING_AWAY, &"é".repeat(100));
    assert_eq!(out[1] as usize, out.len() - 2);
    assert!(out.len() - 2 <= 125 && std::str::from_utf8(&out[4..]).is_ok(), "cut at a character");
}
