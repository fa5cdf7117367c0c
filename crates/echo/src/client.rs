//! Interactive and pipe modes of `echo-client`.
//!
//! Pipe mode (stdin is not a terminal) must leave on stdout exactly the bytes echoed, so it
//! works on bytes, never on `String`s: any line length, any encoding. Over TCP it streams:
//! one task copies stdin to the socket while the other copies the socket to stdout, both
//! through fixed buffers, so a 1 MiB line costs 64 KiB of memory and the kernel's flow
//! control paces the sender. It ends when stdin has ended and as many bytes have come back
//! as were sent; a server that closes first is an error. Over UDP each line is one datagram,
//! sent and awaited in turn.
//!
//! Interactive mode prompts, sends a line, waits for its echo and shows the round-trip time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stats::ms;
use crate::{EchoError, MAX_DATAGRAM};

/// Size of the copy buffers in pipe mode.
const PIPE_BUFFER: usize = 64 * 1024;

/// An established link to the server, for modes that work one message at a time.
pub enum Link {
    Tcp(TcpStream, SocketAddr),
    Udp(UdpSocket, SocketAddr),
}

impl Link {
    pub fn peer(&self) -> SocketAddr {
        match self {
            Link::Tcp(_, peer) | Link::Udp(_, peer) => *peer,
        }
    }

    /// Sends `message`, waits up to `wait` for its echo (left in `echo`), returns the RTT.
    pub async fn round_trip(
        &mut self,
        message: &[u8],
        echo: &mut Vec<u8>,
        wait: Duration,
    ) -> Result<Duration, EchoError> {
        let peer = self.peer();
        let started = Instant::now();
        let exchange =
            async {
                match self {
                    Link::Tcp(stream, _) => {
                        stream.write_all(message).await.map_err(|e| {
                            EchoError::closed_or_io(peer, e, 0, message.len() as u64)
                        })?;
                        echo.clear();
                        echo.resize(message.len(), 0);
                        stream.read_exact(echo).await.map_err(|e| {
                            EchoError::closed_or_io(peer, e, 0, message.len() as u64)
                        })?;
                    }
                    Link::Udp(socket, _) => {
                        if message.len() > MAX_DATAGRAM {
                            return Err(EchoError::TooLarge {
                                len: message.len(),
                                max: MAX_DATAGRAM,
                                what: "a UDP datagram",
                            });
                        }
                        socket
                            .send(message)
                            .await
                            .map_err(|e| EchoError::io(format!("UDP send to {peer}"), e))?;
                        echo.clear();
                        echo.resize(MAX_DATAGRAM, 0);
                        let len = socket
                            .recv(echo)
                            .await
                            .map_err(|e| EchoError::io(format!("UDP receive from {peer}"), e))?;
                        echo.truncate(len);
                    }
                }
                Ok(())
            };
        match tokio::time::timeout(wait, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(EchoError::Timeout {
                    peer,
                    waited: wait,
                    echoed: 0,
                    sent: message.len() as u64,
                })
            }
        }
        let rtt = started.elapsed();
        if let Some(offset) = first_difference(message, echo) {
            return Err(EchoError::Mismatch { peer, offset });
        }
        Ok(rtt)
    }
}

/// Index of the first byte where the echo differs from what was sent (length included).
pub fn first_difference(sent: &[u8], echo: &[u8]) -> Option<u64> {
    let common = sent.iter().zip(echo).take_while(|(a, b)| a == b).count();
    (common < sent.len().max(echo.len())).then_some(common as u64)
}

/// Interactive mode: prompt, send each line, show its echo and RTT; `q` or end of input quits.
pub async fn interactive(mut link: Link, wait: Duration) -> Result<(), EchoError> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let mut line = Vec::new();
    let mut echo = Vec::new();
    loop {
        stdout
            .write_all(b"Enter message ('q' to quit): ")
            .await
            .and(stdout.flush().await)
            .map_err(|e| EchoError::io("writing to stdout", e))?;
        line.clear();
        let read = stdin
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| EchoError::io("reading stdin", e))?;
        if read == 0 {
            // Ctrl-D at the prompt: end the prompt's line, so the shell's starts on its own.
            let _ = stdout.write_all(b"\n").await;
            let _ = stdout.flush().await;
            return Ok(());
        }
        let text = trim_newline(&line);
        if text == b"q" {
            return Ok(());
        }
        let rtt = link.round_trip(&line, &mut echo, wait).await?;
        let shown = String::from_utf8_lossy(trim_newline(&echo)).into_owned();
        let reply = format!(
            "Echoed from server: {shown} (RTT {} ms)\n",
            ms(rtt.as_secs_f64() * 1e6)
        );
        stdout
            .write_all(reply.as_bytes())
            .await
            .map_err(|e| EchoError::io("writing to stdout", e))?;
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Pipe mode over UDP: one datagram per line, each awaited before the next.
pub async fn pipe_udp(
    link: Link,
    input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
    wait: Duration,
) -> Result<(), EchoError> {
    let mut link = link;
    let mut input = BufReader::new(input);
    let mut line = Vec::new();
    let mut echo = Vec::new();
    loop {
        line.clear();
        // One byte over the limit is enough to know the line does not fit.
        let read = (&mut input)
            .take(MAX_DATAGRAM as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| EchoError::io("reading stdin", e))?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_DATAGRAM {
            return Err(EchoError::TooLarge {
                len: line.len(),
                max: MAX_DATAGRAM,
                what: "a UDP datagram",
            });
        }
        link.round_trip(&line, &mut echo, wait).await?;
        output
            .write_all(&echo)
            .await
            .map_err(|e| EchoError::io("writing to stdout", e))?;
    }
    output
        .flush()
        .await
        .map_err(|e| EchoError::io("writing to stdout", e))
}

/// What the two halves of TCP pipe mode share.
struct PipeState {
    sent: AtomicU64,
    input_done: AtomicBool,
    /// Wakes the receiving half when the sending half made progress or finished.
    progress: Notify,
}

/// Pipe mode over TCP: stream `input` to the server and the echo to `output`.
pub async fn pipe_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    input: impl AsyncRead + Unpin,
    output: impl AsyncWrite + Unpin,
    wait: Duration,
) -> Result<(), EchoError> {
    let (reader, writer) = stream.into_split();
    let state = PipeState {
        sent: AtomicU64::new(0),
        input_done: AtomicBool::new(false),
        progress: Notify::new(),
    };
    let upload = upload(input, writer, peer, &state);
    let download = download(reader, output, peer, &state, wait);
    // The write half is only dropped (sending our FIN) after every echo is in: some echo
    // servers stop echoing once they see the end of input.
    let (writer, ()) = tokio::try_join!(upload, download)?;
    drop(writer);
    Ok(())
}

async fn upload(
    mut input: impl AsyncRead + Unpin,
    mut writer: OwnedWriteHalf,
    peer: SocketAddr,
    state: &PipeState,
) -> Result<OwnedWriteHalf, EchoError> {
    let mut buf = vec![0u8; PIPE_BUFFER];
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(|e| EchoError::io("reading stdin", e))?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).await.map_err(|e| {
            let sent = state.sent.load(Ordering::SeqCst);
            EchoError::closed_or_io(peer, e, 0, sent)
        })?;
        state.sent.fetch_add(n as u64, Ordering::SeqCst);
        state.progress.notify_one();
    }
    state.input_done.store(true, Ordering::SeqCst);
    state.progress.notify_one();
    Ok(writer)
}

async fn download(
    mut reader: OwnedReadHalf,
    mut output: impl AsyncWrite + Unpin,
    peer: SocketAddr,
    state: &PipeState,
    wait: Duration,
) -> Result<(), EchoError> {
    let mut buf = vec![0u8; PIPE_BUFFER];
    let mut echoed: u64 = 0;
    loop {
        let sent = state.sent.load(Ordering::SeqCst);
        let done = state.input_done.load(Ordering::SeqCst);
        if done && echoed >= sent {
            return output
                .flush()
                .await
                .map_err(|e| EchoError::io("writing to stdout", e));
        }
        let outstanding = echoed < sent || done;
        tokio::select! {
            read = reader.read(&mut buf) => {
                let n = read.map_err(|e| EchoError::closed_or_io(peer, e, echoed, sent))?;
                if n == 0 {
                    output.flush().await.ok();
                    return Err(EchoError::ServerClosed {
                        peer,
                        echoed,
                        sent: state.sent.load(Ordering::SeqCst),
                    });
                }
                output
                    .write_all(&buf[..n])
                    .await
                    .map_err(|e| EchoError::io("writing to stdout", e))?;
                echoed += n as u64;
            }
            _ = state.progress.notified() => {}
            _ = tokio::time::sleep(wait), if outstanding => {
                return Err(EchoError::Timeout { peer, waited: wait, echoed, sent });
            }
        }
    }
}
