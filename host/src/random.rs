//! Random bytes from the kernel's CSPRNG: a guest's `random` import
//! (session ids, tokens: a guest has no entropy of its own) and the ids of
//! Redis commits. One descriptor for the process.

use std::io::Read;
use std::sync::{Mutex, OnceLock, PoisonError};

pub fn fill(out: &mut [u8]) -> std::io::Result<()> {
    static URANDOM: OnceLock<Mutex<std::fs::File>> = OnceLock::new();
    let file = match URANDOM.get() {
        Some(f) => f,
        None => {
            let f = std::fs::File::open("/dev/urandom")?;
            URANDOM.get_or_init(|| Mutex::new(f))
        }
    };
    file.lock().unwrap_or_else(PoisonError::into_inner).read_exact(out)
}
