//! HTTP/1.1: framing requests out of bytes, decoding their parameters,
//! serializing responses, and the errors with their status codes.

pub mod error;
pub mod params;
pub mod request;
pub mod response;

pub use error::{ErrorKind, HttpError};
