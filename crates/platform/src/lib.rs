//! The platform's side of the wire: callback bodies, signatures, outbound authentication
//! headers, result codes and time strings, as the spec (`voicecall-platform.md`) describes them.
//! Pure functions and types, no I/O.

pub mod callback;
pub mod codes;
pub mod lenient;
pub mod outbound;
pub mod result_codes;
pub mod signature;
pub mod time;
