//! Measures piece hashing on this machine: BLAKE3 (one thread, as the node uses it) against
//! SHA-256 (sha2, which uses the CPU's SHA instructions when present), over 1 MiB pieces
//! of a 256 MiB buffer. Used to choose the piece hash; run with
//! `cargo run --release -p p2p-node --example hash_speed`.

use std::time::Instant;

use clap::Parser;
use sha2::Digest;

/// Piece hashing speed on this machine: BLAKE3 (one thread) against SHA-256, over 1 MiB
/// pieces; prints one line per round.
#[derive(Parser, Debug)]
#[command(
    after_help = "Examples:\n  cargo run --release -p p2p-node --example hash_speed\n  \
cargo run --release -p p2p-node --example hash_speed -- --mib 64 --rounds 1"
)]
struct Args {
    /// Size of the buffer hashed per round, in MiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    mib: u16,
    /// Rounds measured.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

fn main() {
    const PIECE: usize = 1 << 20;
    let args = Args::parse();
    let total = usize::from(args.mib) << 20;
    let data: Vec<u8> = (0..total)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for round in 0..args.rounds {
        let started = Instant::now();
        let mut x = 0u8;
        for piece in data.chunks(PIECE) {
            x ^= blake3::hash(piece).as_bytes()[0];
        }
        let blake3_rate = total as f64 / started.elapsed().as_secs_f64() / (1u64 << 20) as f64;
        let started = Instant::now();
        for piece in data.chunks(PIECE) {
            x ^= sha2::Sha256::digest(piece)[0];
        }
        let sha_rate = total as f64 / started.elapsed().as_secs_f64() / (1u64 << 20) as f64;
        println!(
            "round {round}: BLAKE3 {blake3_rate:.0} MiB/s, SHA-256 {sha_rate:.0} MiB/s (x={x})"
        );
    }
}
