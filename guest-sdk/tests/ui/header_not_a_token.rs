use house_sdk::prelude::*;

#[handler(closing)]
fn agent(#[header("user agent")] agent: &str) -> String {
    agent.into()
}

fn main() {}
