//! Test helpers used only by the echo end-to-end tests.
