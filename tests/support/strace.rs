//! Reading the system calls of a binary run under `strace`, to check the order of what it
//! does (an fsync before a network send) where the page cache would hide a missing fsync
//! from any kill -9 test.
//!
//! The binary runs as `strace -f -qq -yy -xx -s 1048576 -e trace=... -o FILE binary ...`
//! (see [`strace_command`]): every line starts with the thread id, file descriptors carry
//! their path or socket addresses in `<...>` (`-yy`), and data is printed as `\xNN` bytes
//! (`-xx`). The lines of one output file are in the order strace saw the events, so a call
//! printed whole happened entirely between its neighbours, and a call interrupted by another
//! thread appears as `NAME(... <unfinished ...>` (its entry) and later
//! `<... NAME resumed>... = RET` (its exit).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::process::Proc;

/// One system call: where its entry and exit are in the trace, its first argument's
/// descriptor annotation (a path, `TCP:[a->b]`...), the bytes it was given and its result.
#[derive(Clone, Debug, PartialEq)]
pub struct Syscall {
    pub name: String,
    pub tid: u32,
    pub fd: String,
    pub data: Vec<u8>,
    pub entry: usize,
    pub exit: usize,
    pub ret: Option<i64>,
}

impl Syscall {
    /// A write, writev, sendto or sendmsg.
    pub fn is_send(&self) -> bool {
        matches!(
            self.name.as_str(),
            "write" | "writev" | "pwrite64" | "sendto" | "sendmsg"
        )
    }

    /// A write-like call on a TCP socket.
    pub fn is_tcp_send(&self) -> bool {
        self.is_send() && self.fd.starts_with("TCP")
    }

    /// The bytes that were actually written (the data cut to the returned count).
    pub fn written(&self) -> &[u8] {
        match self.ret {
            Some(n) if n >= 0 => &self.data[..(n as usize).min(self.data.len())],
            _ => &[],
        }
    }
}

/// `strace` set up to trace `binary` with `args` into `out`, following threads.
pub fn strace_command(out: &Path, syscalls: &str, binary: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-yy", "-xx", "-s", "1048576", "-e"])
        .arg(format!("trace={syscalls}"))
        .arg("-o")
        .arg(out)
        .arg(binary)
        .args(args);
    cmd
}

/// The pid of the program strace runs.
pub fn traced_child(strace: &Proc) -> i32 {
    let children = std::fs::read_to_string(format!(
        "/proc/{pid}/task/{pid}/children",
        pid = strace.pid()
    ))
    .expect("strace's children");
    children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("strace runs its program")
}

/// SIGKILL to a process when dropped: a traced program outlives a killed strace.
pub struct KillOnDrop(pub i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a process we started has no memory-safety preconditions.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

/// Parses a whole trace into its system calls, in the order of their entries.
pub fn parse(trace: &str) -> Vec<Syscall> {
    let mut done: Vec<Syscall> = Vec::new();
    let mut unfinished: HashMap<u32, Syscall> = HashMap::new();
    for (index, line) in trace.lines().enumerate() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(tid) = tid.trim().parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            if let Some(mut call) = unfinished.remove(&tid) {
                call.exit = index;
                call.ret = return_value(resumed);
                done.push(call);
            }
            continue;
        }
        let Some(open) = rest.find('(') else {
            continue; // "+++ exited with 0 +++", "--- SIGTERM ---"
        };
        let name = rest[..open].to_owned();
        let args = &rest[open + 1..];
        let mut call = Syscall {
            name,
            tid,
            fd: fd_annotation(args),
            data: quoted_bytes(args),
            entry: index,
            exit: index,
            ret: None,
        };
        if rest.ends_with("<unfinished ...>") {
            unfinished.insert(tid, call);
        } else {
            call.ret = return_value(args);
            done.push(call);
        }
    }
    done.extend(unfinished.into_values());
    done.sort_by_key(|c| c.entry);
    done
}

/// The annotation of the first argument: `7</tmp/d/doc.journal>` gives `/tmp/d/doc.journal`.
fn fd_annotation(args: &str) -> String {
    let digits = args.chars().take_while(char::is_ascii_digit).count();
    let Some(inner) = args[digits..].strip_prefix('<') else {
        return String::new();
    };
    // Socket annotations contain "->": the annotation ends at a '>' followed by ',' or ')'.
    let end = inner
        .match_indices('>')
        .map(|(i, _)| i)
        .find(|&i| matches!(inner.as_bytes().get(i + 1), Some(b',' | b')')))
        .unwrap_or(inner.len());
    unescape(&inner[..end])
}

/// Paths come hex-escaped under `-xx` (`\x2f\x74...`); socket annotations do not.
fn unescape(text: &str) -> String {
    let mut bytes = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest
            .strip_prefix("\\x")
            .and_then(|h| Some((u8::from_str_radix(h.get(..2)?, 16).ok()?, &h[2..])))
        {
            Some((byte, after)) => {
                bytes.push(byte);
                rest = after;
            }
            None => {
                let c = rest.chars().next().unwrap_or_default();
                let mut buf = [0; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every `"\xNN..."` string in the arguments, concatenated (one for write and sendto, one
/// per iovec for writev and sendmsg).
fn quoted_bytes(args: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut rest = args;
    while let Some(start) = rest.find("\"") {
        let body = &rest[start + 1..];
        let end = body.find('"').unwrap_or(body.len());
        let mut hex = &body[..end];
        while let Some(digits) = hex.strip_prefix("\\x") {
            if let Some(byte) = digits.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                bytes.push(byte);
            }
            hex = digits.get(2..).unwrap_or("");
        }
        rest = body.get(end + 1..).unwrap_or("");
    }
    bytes
}

/// The number after the last " = " of a finished call, if any.
fn return_value(text: &str) -> Option<i64> {
    let (_, after) = text.rsplit_once(" = ")?;
    after.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_interrupted_calls_are_parsed_with_their_order_data_and_result() {
        let trace = "\
10 write(7<\\x2f\\x74mp/d/doc.journal>, \"\\x01\\x02\", 2 <unfinished ...>
11 sendto(9<TCP:[127.0.0.1:5->127.0.0.1:6]>, \"\\x00\\x00\\x00\\x01\\x02\", 5, MSG_NOSIGNAL, NULL, 0) = 5
10 <... write resumed>) = 2
10 fdatasync(7</tmp/d/doc.journal>) = 0
11 writev(9<TCP:[127.0.0.1:5->127.0.0.1:6]>, [{iov_base=\"\\xaa\", iov_len=1}, {iov_base=\"\\xbb\\xcc\", iov_len=2}], 2) = 3
10 +++ exited with 0 +++
";
        let calls = parse(trace);
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0].name, "write");
        assert_eq!(calls[0].fd, "/tmp/d/doc.journal");
        assert_eq!(
            (calls[0].entry, calls[0].exit, calls[0].ret),
            (0, 2, Some(2))
        );
        assert_eq!(calls[0].data, [1, 2]);
        assert_eq!(calls[1].fd, "TCP:[127.0.0.1:5->127.0.0.1:6]");
        assert!(calls[1].is_tcp_send());
        assert_eq!(calls[1].written(), [0, 0, 0, 1, 2]);
        assert_eq!(calls[2].name, "fdatasync");
        assert_eq!((calls[2].entry, calls[2].ret), (3, Some(0)));
        assert_eq!(calls[3].written(), [0xaa, 0xbb, 0xcc]);
    }
}
