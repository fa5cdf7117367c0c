//! End-to-end tests of the editor programs (real binaries, real sockets).
