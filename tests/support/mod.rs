//! Helpers shared by the end-to-end tests: find the built binaries, run them as child
//! processes whose stderr we can wait on, and make throw-away network namespaces.
//!
//! The binaries are the ones `cargo build --workspace` put beside this test executable
//! (`target/<profile>/`); the README's test command builds them before running the tests.

pub mod echo;
pub mod editor;
pub mod netns;
pub mod p2p;
pub mod process;
pub mod require;
pub mod strace;

pub use netns::Netns;
pub use process::{bin_path, Proc};
pub use require::{is_root, on_path, require_root, require_tool};
