//! Collaborative plain-text editor: server and terminal client.
//!
//! The logic lives in this library, one module per concept; the binaries under `src/bin/`
//! only parse flags, set up logging and call in here.
