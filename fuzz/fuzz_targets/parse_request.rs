//! Request framing and parameter decoding on arbitrary bytes, the way a
//! connection feeds them: heads, bodies (by length or chunked) and
//! pipelined requests, until the input runs out or is refused. Nothing may
//! panic, and a framed request never claims more bytes than it was given.

#![no_main]

use house_host::config::Config;
use house_host::http::params::Params;
use house_host::http::request::parse_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut limits = Config::default().limits;
    limits.max_body = 4096;
    let mut rest = data;
    while let Ok(Some(mut head)) = parse_head(rest, &limits) {
        assert!(head.len <= rest.len());
        let Ok(Some((body, used))) = head.body.collect(&rest[head.len..], limits.max_body) else { break };
        assert!(head.len + used <= rest.len() && body.len() <= limits.max_body);
        let mut params = Params::default();
        let _ = params.extend_from_urlencoded(head.query.as_bytes());
        let _ = params.extend_from_urlencoded(&body);
        rest = &rest[head.len + used..];
    }
});
