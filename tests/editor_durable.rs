//! The editor server's promise that a change is on disk before its author gets an `Ack`,
//! checked where a kill -9 test cannot check it: a killed process's writes survive in the
//! page cache, so a server that never fsyncs passes every kill -9 test. Here the real
//! server runs under `strace`, and the order of its system calls must show each `Ack` sent
//! only after an fdatasync of the journal that completed after the journal write holding
//! the change.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::Path;
use std::time::Duration;

use e2e::editor::Client;
use e2e::strace::{parse, strace_command, traced_child, KillOnDrop, Syscall};
use e2e::TempDir;
use e2e::{bin_path, Proc};
use editor::protocol::ServerMsg;

const T: Duration = Duration::from_secs(30);

/// Changes sent one after another, each waiting for its Ack.
const CHANGES: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_strace), ignore = "needs strace")]
async fn every_ack_leaves_after_the_fdatasync_of_the_journal_holding_its_change() {
    e2e::require_tool("strace", "strace");
    let dir = TempDir::new("fsync");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let trace_file = dir.0.join("server.strace");
    let cmd = strace_command(
        &trace_file,
        "fdatasync,fsync,write,writev,pwrite64,sendto,sendmsg",
        &bin_path("editor-server"),
        &[
            "--no-tls",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--data-dir",
            data.to_str().unwrap(),
            // No compaction or idle unload during the test: only change commits write.
            "--save-interval",
            "3600",
            "--idle-unload",
            "3600",
        ],
    );
    let mut server = Proc::spawn("editor-server under strace", cmd);
    let port = server.listening_port();
    // Killing strace would only detach it: the server itself must die with the test.
    let _server = KillOnDrop(traced_child(&server));

    let mut alice = Client::join(port, "durable", "alice").await;
    for i in 0..CHANGES {
        alice.insert(0, &format!("change {i}\n")).await;
        assert!(alice.settle(T).await, "change {i} was never acknowledged");
    }
    stop_traced_server(&mut server);

    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let calls = parse(&trace);
    let journal = data.join("durable.journal");
    let acks = acks_sent(&calls);
    assert_eq!(
        acks.len() as u64,
        CHANGES,
        "expected one Ack per change on the wire; acks: {acks:?}"
    );
    check_acks_follow_journal_sync(&calls, &acks, &journal);
}

/// SIGTERM to the traced server itself (strace's child), so it shuts down and strace exits
/// with the whole trace written out.
fn stop_traced_server(strace: &mut Proc) {
    let server = traced_child(strace);
    // SAFETY: kill(2) on a process we started has no memory-safety preconditions.
    unsafe {
        libc::kill(server, libc::SIGTERM);
    }
    assert!(
        strace.wait_exit(T).is_some(),
        "strace did not end after its server"
    );
}

/// Each Ack on the wire: its revision and the index of the send that carried its first byte.
fn acks_sent(calls: &[Syscall]) -> Vec<(u64, usize)> {
    let mut streams: Vec<(&str, Vec<(u8, usize)>)> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        if !call.is_tcp_send() {
            continue;
        }
        let stream = match streams.iter_mut().find(|(fd, _)| *fd == call.fd) {
            Some((_, bytes)) => bytes,
            None => {
                streams.push((&call.fd, Vec::new()));
                &mut streams.last_mut().unwrap().1
            }
        };
        stream.extend(call.written().iter().map(|&b| (b, i)));
    }
    let mut acks = Vec::new();
    for (_, stream) in streams {
        // 4-byte big-endian length, then a postcard message; the first frame is the hello.
        let mut at = 0;
        let mut first = true;
        while at + 4 <= stream.len() {
            let len_bytes: Vec<u8> = stream[at..at + 4].iter().map(|(b, _)| *b).collect();
            let len = u32::from_be_bytes(len_bytes.try_into().unwrap()) as usize;
            if at + 4 + len > stream.len() {
                break;
            }
            let body: Vec<u8> = stream[at + 4..at + 4 + len]
                .iter()
                .map(|(b, _)| *b)
                .collect();
            if !first {
                if let Ok(ServerMsg::Ack { revision, .. }) = postcard::from_bytes(&body) {
                    acks.push((revision, stream[at].1));
                }
            }
            first = false;
            at += 4 + len;
        }
    }
    acks.sort_by_key(|&(_, call)| call);
    acks
}

/// For the k-th Ack: at least k journal writes began before it, and an fdatasync (or fsync)
/// of the journal that began after the last of those writes ended completed before it.
fn check_acks_follow_journal_sync(calls: &[Syscall], acks: &[(u64, usize)], journal: &Path) {
    let journal = journal.to_str().unwrap();
    let is_journal_write = |c: &Syscall| c.is_send() && c.fd == journal;
    let is_journal_sync =
        |c: &Syscall| matches!(c.name.as_str(), "fdatasync" | "fsync") && c.fd == journal;
    for (k, &(revision, ack)) in acks.iter().enumerate() {
        let sent_at = calls[ack].entry;
        let writes: Vec<&Syscall> = calls
            .iter()
            .filter(|c| is_journal_write(c) && c.entry < sent_at)
            .collect();
        assert!(
            writes.len() > k,
            "Ack {} (revision {revision}) was sent before its change was written to {journal}",
            k + 1
        );
        let last_write_end = writes.last().unwrap().exit;
        let synced = calls.iter().any(|c| {
            is_journal_sync(c) && c.ret == Some(0) && c.entry > last_write_end && c.exit < sent_at
        });
        assert!(
            synced,
            "Ack {} (revision {revision}, trace line {}) left before an fdatasync of {journal} \
             completed after its journal write (trace line {})",
            k + 1,
            sent_at + 1,
            last_write_end + 1
        );
    }
}
