//! Helpers shared by the end-to-end tests: find the built binaries, run them as child
//! processes whose stderr we can wait on, and make throw-away network namespaces.
//!
//! The binaries are the ones in `target/<profile>/` beside this test executable, rebuilt
//! from the current sources before the first one is used (`fresh_bins.rs`).

pub mod browser;
pub mod echo;
pub mod editor;
pub mod fresh_bins;
pub mod netns;
pub mod p2p;
pub mod p2p_auth;
pub mod process;
pub mod require;
pub mod strace;
pub mod temp;
pub mod tmpfs;
pub mod tmux;

pub use netns::Netns;
pub use process::{bin_path, Proc};
pub use require::{is_root, on_path, require_root, require_tool};
pub use temp::TempDir;
