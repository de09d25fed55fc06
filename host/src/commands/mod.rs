//! The guest author's commands beside serving: `house check` (a module
//! judged exactly as the server would judge it, offline) and `house new`
//! (a guest crate to start from).

pub mod check;
pub mod new;
