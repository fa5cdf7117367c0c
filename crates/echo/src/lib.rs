//! Protocol-independent echo server and client (RFC 862) over IPv4 and IPv6, TCP and UDP.
//!
//! The logic lives in this library, one module per concept; the binaries under `src/bin/`
//! only parse flags, set up logging and call in here.
