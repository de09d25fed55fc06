//! WebSocket (RFC 6455), the server's side: the upgrade handshake
//! (`handshake`) and the framing (`frame`). Issue 26 wires them to the
//! loop's connections and the channels; this is the protocol alone, each
//! rule tested by Autobahn|Testsuite's case families.

pub mod frame;
pub mod handshake;
