use house_sdk::prelude::*;

#[handler(closing)]
fn page(#[header] agent: &str) -> String {
    agent.to_string()
}

fn main() {}
