//! End-to-end tests of the p2p programs (real binaries, real sockets).
