//! Test helpers used only by the p2p end-to-end tests.
