//! Ping mode: `--count N` probes of `--size` bytes every `--interval`, each awaited for up to
//! `--timeout`, then a summary like ping's with percentiles, or one JSON object (`--json`).
//!
//! Every probe starts with its sequence number (8 bytes, big-endian), so a late UDP echo
//! is recognised and not mistaken for the current one. Over TCP the echo is a byte stream:
//! probe `k` occupies bytes `k*size..(k+1)*size` of it, so a probe that timed out has its
//! late bytes skipped while waiting for the next one, and the stream stays in step.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::stats::{ms, RttStats, RttSummary};
use crate::EchoError;

/// Bytes at the start of each probe that carry its sequence number.
pub const SEQ_BYTES: usize = 8;

/// Ping mode settings.
#[derive(Debug, Clone)]
pub struct PingConfig {
    pub count: u64,
    pub interval: Duration,
    pub size: usize,
    pub timeout: Duration,
    pub json: bool,
}

/// The summary, also the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct PingReport {
    pub host: String,
    pub address: String,
    pub transport: &'static str,
    pub size: usize,
    pub sent: u64,
    pub received: u64,
    pub loss_pct: f64,
    pub time_ms: f64,
    #[serde(flatten)]
    pub rtt: RttSummary,
}

/// The payload of probe `seq`: its number, then a recognisable filler.
pub fn probe_payload(seq: u64, size: usize) -> Vec<u8> {
    let mut payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    stamp_seq(&mut payload, seq);
    payload
}

/// Writes `seq` over the start of `payload`; a payload shorter than [`SEQ_BYTES`] gets the
/// number's low bytes.
pub fn stamp_seq(payload: &mut [u8], seq: u64) {
    let n = SEQ_BYTES.min(payload.len());
    payload[..n].copy_from_slice(&seq.to_be_bytes()[SEQ_BYTES - n..]);
}

/// True when `echo` starts with the number [`stamp_seq`] wrote into a probe of `size` bytes
/// (only its low bytes when `size` is below [`SEQ_BYTES`]).
pub fn carries_seq(echo: &[u8], seq: u64, size: usize) -> bool {
    let n = SEQ_BYTES.min(size);
    echo.get(..n) == Some(&seq.to_be_bytes()[SEQ_BYTES - n..])
}

/// Either transport, seen by the probe loop.
pub enum Prober {
    Tcp {
        stream: TcpStream,
        /// Bytes of echo received so far over the whole connection.
        received: u64,
        buf: Vec<u8>,
    },
    Udp {
        socket: UdpSocket,
        buf: Vec<u8>,
    },
}

impl Prober {
    pub fn tcp(stream: TcpStream) -> Self {
        Prober::Tcp {
            stream,
            received: 0,
            buf: vec![0; 64 * 1024],
        }
    }

    pub fn udp(socket: UdpSocket) -> Self {
        Prober::Udp {
            socket,
            buf: vec![0; crate::MAX_DATAGRAM + 1],
        }
    }

    /// Sends probe `seq` and waits until `deadline` for its echo; Ok(false) on timeout.
    async fn probe(
        &mut self,
        peer: SocketAddr,
        seq: u64,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<bool, EchoError> {
        match self {
            Prober::Tcp {
                stream,
                received,
                buf,
            } => {
                let size = payload.len() as u64;
                let start = seq * size;
                let end = start + size;
                let sent = async {
                    stream
                        .write_all(payload)
                        .await
                        .map_err(|e| EchoError::closed_or_io(peer, e, *received, end))
                };
                // A probe cut off half-written would put the stream out of step: a server
                // that does not even take 'size' bytes in time is an error, not a loss.
                match tokio::time::timeout_at(deadline, sent).await {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(EchoError::io(
                            format!("server {peer} stopped reading"),
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("probe seq={} could not be sent in time", seq + 1),
                            ),
                        ))
                    }
                }
                while *received < end {
                    let read = match tokio::time::timeout_at(deadline, stream.read(buf)).await {
                        Ok(read) => {
                            read.map_err(|e| EchoError::closed_or_io(peer, e, *received, end))?
                        }
                        Err(_) => return Ok(false),
                    };
                    if read == 0 {
                        return Err(EchoError::ServerClosed {
                            peer,
                            echoed: *received,
                            sent: end,
                        });
                    }
                    let chunk_start = *received;
                    *received += read as u64;
                    // Compare the part of this chunk that belongs to the current probe; bytes
                    // of earlier (timed-out) probes are skipped.
                    let from = start.max(chunk_start);
                    let to = end.min(*received);
                    if from < to {
                        let ours = &payload[(from - start) as usize..(to - start) as usize];
                        let got = &buf[(from - chunk_start) as usize..(to - chunk_start) as usize];
                        if ours != got {
                            return Err(EchoError::Mismatch { peer, offset: from });
                        }
                    }
                }
                Ok(true)
            }
            Prober::Udp { socket, buf } => {
                socket
                    .send(payload)
                    .await
                    .map_err(|e| EchoError::io(format!("UDP send to {peer}"), e))?;
                loop {
                    let len = match tokio::time::timeout_at(deadline, socket.recv(buf)).await {
                        Ok(len) => {
                            len.map_err(|e| EchoError::io(format!("UDP receive from {peer}"), e))?
                        }
                        Err(_) => return Ok(false),
                    };
                    let echo = &buf[..len];
                    if !carries_seq(echo, seq, payload.len()) {
                        // A late echo of an earlier probe, or a stray datagram.
                        tracing::debug!(
                            "ignoring a {len}-byte datagram: not the echo of seq={}",
                            seq + 1
                        );
                        continue;
                    }
                    if echo != payload {
                        return Err(EchoError::Mismatch {
                            peer,
                            offset: crate::client::first_difference(payload, echo).unwrap_or(0),
                        });
                    }
                    return Ok(true);
                }
            }
        }
    }
}

/// Runs the probes and returns the summary (an error only when the link failed or every
/// probe was lost). Probe lines go to stdout, or stderr with `--json`; `stop` ends early.
pub async fn run(
    mut prober: Prober,
    host: &str,
    peer: SocketAddr,
    config: &PingConfig,
    stop: CancellationToken,
) -> Result<PingReport, EchoError> {
    let transport = match prober {
        Prober::Tcp { .. } => "tcp",
        Prober::Udp { .. } => "udp",
    };
    let shown = netutil::display_addr(peer).ip();
    let mut stats = RttStats::new();
    let mut sent = 0u64;
    let began = Instant::now();
    for seq in 0..config.count {
        if stop.is_cancelled() {
            break;
        }
        let payload = probe_payload(seq, config.size);
        let started = Instant::now();
        sent += 1;
        let answered = tokio::select! {
            answered = prober.probe(peer, seq, &payload, started + config.timeout) => answered?,
            _ = stop.cancelled() => { sent -= 1; break; }
        };
        let line = if answered {
            let rtt = started.elapsed();
            stats.record(rtt);
            format!(
                "{} bytes from {shown}: seq={} time={} ms",
                config.size,
                seq + 1,
                ms(rtt.as_secs_f64() * 1e6)
            )
        } else {
            format!("no echo for seq={} within {:?}", seq + 1, config.timeout)
        };
        if config.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        if seq + 1 < config.count {
            tokio::select! {
                _ = sleep_until(started + config.interval) => {}
                _ = stop.cancelled() => break,
            }
        }
    }
    let received = stats.count();
    let report = PingReport {
        host: host.to_owned(),
        address: shown.to_string(),
        transport,
        size: config.size,
        sent,
        received,
        loss_pct: if sent == 0 {
            0.0
        } else {
            100.0 * (sent - received) as f64 / sent as f64
        },
        time_ms: began.elapsed().as_secs_f64() * 1e3,
        rtt: stats.summary(),
    };
    print_report(&report, config.json);
    if received == 0 && sent > 0 {
        return Err(EchoError::AllLost { peer, sent });
    }
    Ok(report)
}

fn print_report(report: &PingReport, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("cannot encode the summary as JSON: {e}"),
        }
        return;
    }
    let r = &report.rtt;
    println!();
    println!("--- {} echo statistics ---", report.host);
    println!(
        "{} probes sent, {} received, {:.1}% loss, time {:.0} ms",
        report.sent, report.received, report.loss_pct, report.time_ms
    );
    if report.received > 0 {
        println!(
            "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
            ms(r.min_us),
            ms(r.avg_us),
            ms(r.max_us),
            ms(r.mdev_us)
        );
        println!(
            "rtt p50/p90/p99 = {}/{}/{} ms",
            ms(r.p50_us),
            ms(r.p90_us),
            ms(r.p99_us)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_its_sequence_number() {
        let payload = probe_payload(258, 56);
        assert_eq!(payload.len(), 56);
        assert!(carries_seq(&payload, 258, 56));
        assert!(!carries_seq(&payload, 257, 56));
        assert!(!carries_seq(&payload[..4], 258, 56));
        assert_ne!(probe_payload(1, 56), probe_payload(2, 56));
    }

    #[test]
    fn tiny_payloads_keep_the_low_bytes() {
        assert_eq!(probe_payload(0x0102, 2), vec![1, 2]);
        assert_eq!(probe_payload(7, 1), vec![7]);
        // The echo of a probe shorter than the sequence number is still recognised.
        assert!(carries_seq(&probe_payload(0x0102, 2), 0x0102, 2));
        assert!(!carries_seq(&probe_payload(0x0102, 2), 0x0103, 2));
        assert!(carries_seq(&probe_payload(7, 1), 7, 1));
    }
}
