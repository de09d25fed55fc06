use house_sdk::prelude::*;

#[handler(closing)]
fn me(#[cookie("sid", sigend)] sid: &str) -> String {
    sid.to_string()
}

fn main() {}
