//! Test helpers used only by the editor end-to-end tests.
