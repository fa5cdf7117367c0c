//! End-to-end tests of the echo programs (real binaries, real sockets).
