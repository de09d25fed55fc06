//! Static-file sections (docs/ABI.md, "Static files"): a module's custom
//! sections, named `house.static:PATH CONTENT-TYPE`, as any toolchain may
//! write them, arbitrary names and contents among other sections. The
//! host's reader must never panic, and what it serves keeps its rules: a
//! path that starts with `/`, is not under `/_house/` and has no `.` or
//! `..` segment, a content type without control characters, each path
//! once, and the bytes as the section had them.

#![no_main]

use arbitrary::Arbitrary;
use house_host::guests::statics;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Name {
    /// A static file's section: `house.static:` + path + ` ` + type.
    Static { path: String, content_type: String },
    /// Any custom section name.
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    sections: Vec<(Name, Vec<u8>)>,
    /// Bytes to change in the module: (where, xor), to reach the reader's
    /// handling of a malformed module.
    flips: Vec<(u16, u8)>,
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fuzz_target!(|input: Input| {
    // An empty module, then the custom sections (id 0: name, then data).
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    for (name, data) in input.sections.iter().take(32) {
        let name = match name {
            Name::Static { path, content_type } => {
                format!("{}{path} {content_type}", house_abi::statics::SECTION_PREFIX)
            }
            Name::Other(n) => n.clone(),
        };
        let mut payload = Vec::new();
        leb128(name.len(), &mut payload);
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(data);
        module.push(0);
        leb128(payload.len(), &mut module);
        module.extend_from_slice(&payload);
    }
    for &(i, x) in &input.flips {
        if let Some(b) = module.get_mut(usize::from(i)) {
            *b ^= x;
        }
    }
    let Ok(files) = statics::read(&module) else { return };
    let mut paths = std::collections::HashSet::new();
    for f in &files {
        assert!(f.path.starts_with('/') && !f.path.starts_with("/_house/"), "{:?}", f.path);
        assert!(!f.path.split('/').any(|s| s == "." || s == ".."), "{:?}", f.path);
        assert!(!f.content_type.is_empty() && !f.content_type.bytes().any(|b| b.is_ascii_control()));
        assert!(paths.insert(f.path.clone()), "{} served twice", f.path);
        assert_eq!(f.etag.len(), 18, "a quoted 16-digit etag: {}", f.etag);
        // Its bytes are one of the sections' (the module was not changed
        // there, or the reader refused it).
        if input.flips.is_empty() {
            assert!(input.sections.iter().any(|(_, data)| data[..] == f.body[..]));
        }
    }
});
