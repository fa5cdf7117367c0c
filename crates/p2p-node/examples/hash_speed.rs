//! Measures piece hashing on this machine: BLAKE3 (one thread, as the node uses it) against
//! SHA-256 (sha2, which uses the CPU's SHA instructions when present), over 1 MiB pieces
//! of a 256 MiB buffer. Used to choose the piece hash; run with
//! `cargo run --release -p p2p-node --example hash_speed`.

use std::time::Instant;

use sha2::Digest;

fn main() {
    const PIECE: usize = 1 << 20;
    const TOTAL: usize = 256 << 20;
    let data: Vec<u8> = (0..TOTAL)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for round in 0..3 {
        let started = Instant::now();
        let mut x = 0u8;
        for piece in data.chunks(PIECE) {
            x ^= blake3::hash(piece).as_bytes()[0];
        }
        let blake3_rate = TOTAL as f64 / started.elapsed().as_secs_f64() / 1e6;
        let started = Instant::now();
        for piece in data.chunks(PIECE) {
            x ^= sha2::Sha256::digest(piece)[0];
        }
        let sha_rate = TOTAL as f64 / started.elapsed().as_secs_f64() / 1e6;
        println!("round {round}: BLAKE3 {blake3_rate:.0} MB/s, SHA-256 {sha_rate:.0} MB/s (x={x})");
    }
}
