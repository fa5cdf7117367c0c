//! Test helpers used only by the echo end-to-end tests: start `echo-server` on a port the
//! OS picks, run `echo-client` or a third-party tool with given stdin under a hang guard,
//! round-trip bytes over std sockets, reset a connection, read a process's memory use.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::{bin_path, Proc};

/// Generous guard against hangs; tests assert behaviour, not speed.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Starts `echo-server --port 0 ARGS` and returns it with the port it listens on.
pub fn start_server(args: &[&str]) -> (Proc, u16) {
    let mut all = vec!["--port", "0"];
    all.extend_from_slice(args);
    let server = Proc::start("echo-server", &all);
    let port = server.listening_port();
    // The UDP socket is bound right after TCP; this line comes once both are.
    if !args.contains(&"--no-udp") {
        server
            .wait_for("echoing TCP and UDP", Duration::from_secs(20))
            .expect("UDP bound");
    }
    (server, port)
}

/// Runs `echo-client ARGS` with `input` on stdin.
pub fn run_client(args: &[&str], input: &[u8]) -> Output {
    let mut cmd = Command::new(bin_path("echo-client"));
    cmd.args(args);
    run_with_input(cmd, input, HANG_GUARD)
}

/// Runs a command with `input` on stdin (written from a thread, then closed), collecting
/// stdout and stderr; kills it and panics if it outlives `timeout`.
pub fn run_with_input(mut cmd: Command, input: &[u8], timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // The child may exit before reading everything (that is what some tests check).
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// A TCP connection to the server with hang guards on both directions.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    stream.set_write_timeout(Some(HANG_GUARD)).expect("timeout");
    stream
}

/// Sends `message` and reads back exactly as many bytes.
pub fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).expect("send");
    let mut echo = vec![0u8; message.len()];
    stream.read_exact(&mut echo).expect("echo");
    echo
}

/// Sends one datagram from `socket` to `server` and waits up to `wait` for a reply.
pub fn udp_round_trip(
    socket: &UdpSocket,
    server: SocketAddr,
    message: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    socket.set_read_timeout(Some(wait)).expect("timeout");
    socket.send_to(message, server).expect("send datagram");
    let mut buf = vec![0u8; 65_536];
    match socket.recv_from(&mut buf) {
        Ok((len, from)) => {
            assert_eq!(from.port(), server.port(), "reply from {from}");
            buf.truncate(len);
            Some(buf)
        }
        Err(_) => None,
    }
}

/// Closes `stream` with a TCP reset (SO_LINGER 0) instead of an orderly FIN.
pub fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
    drop(stream);
}

/// Resident memory of a process in KiB (`VmRSS` in /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS").expect("VmRSS line")
}

/// Peak resident memory of a running process in KiB (`VmHWM`); None once it has exited.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM")
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A TCP port that was free a moment ago (for third-party servers that need one up front).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("[::]:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_until_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped (third-party servers such as socat).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Largest slice [`Pattern::at`] hands out.
pub const PATTERN_CHUNK: usize = 64 * 1024;

/// An endless, recognisable byte stream (period 251, a prime, so shifted copies never line
/// up by accident), served from one precomputed buffer so checking 100 MiB stays cheap.
pub struct Pattern(Vec<u8>);

impl Default for Pattern {
    fn default() -> Self {
        Pattern((0..251 + PATTERN_CHUNK).map(|i| (i % 251) as u8).collect())
    }
}

impl Pattern {
    /// The bytes at `offset..offset+len` of the stream (`len` at most [`PATTERN_CHUNK`]).
    pub fn at(&self, offset: u64, len: usize) -> &[u8] {
        &self.0[(offset % 251) as usize..][..len]
    }
}
