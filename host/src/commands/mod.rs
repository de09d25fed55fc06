//! The guest author's commands beside serving: `house new` (a guest crate
//! to start from), `house dev` (serve and rebuild on change) and `house
//! check` (a module judged exactly as the server would judge it, offline).

pub mod check;
pub mod dev;
pub mod new;
