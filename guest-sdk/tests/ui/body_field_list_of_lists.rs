use house_sdk::prelude::*;

#[derive(Body)]
struct Grid {
    cells: Vec<Vec<i64>>,
}

fn main() {}
