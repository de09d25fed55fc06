use house_sdk::prelude::*;

pub struct Room;

#[handler(closing)]
fn join(room: Room) -> String {
    let _ = room;
    String::new()
}

fn main() {}
