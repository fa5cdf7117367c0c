//! Length-delimited frames with a size limit, a memory budget and a deadline.
//!
//! Every frame is a 4-byte big-endian length followed by that many payload bytes. The
//! length a peer announces is checked against the limit as soon as the 4 header bytes are
//! in, and nothing is reserved for it: the buffer grows as payload bytes actually arrive,
//! so a peer that announces 8 MiB and sends 10 bytes costs 10 bytes, not 8 MiB.
//!
//! Two more bounds for peers that start a large frame and stall (or trickle):
//! * a [`MemoryBudget`] shared by the server's connections is charged for the buffer of a
//!   frame in progress once it outgrows [`UNCHARGED_BUFFER`]; when the budget is spent the
//!   frame is refused ([`FrameError::OverBudget`]);
//! * the time the frame started (its first byte) is recorded, so the connection can give
//!   up on a frame that has not completed within its deadline ([`FrameDeadline`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::time::{Instant, Sleep};
use tokio_util::codec::{Decoder, Encoder};

use crate::limits::{Charge, MemoryBudget};

/// Default largest frame accepted or sent: 8 MiB.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

/// A frame in progress whose buffer is at most this large is not charged to the budget
/// (every connection has a read buffer of about this size; charging it would cost an
/// atomic operation per frame for nothing).
pub const UNCHARGED_BUFFER: usize = 64 * 1024;

const HEADER_LEN: usize = 4;

/// Why a frame could not be read or written. `Connection` turns this into a
/// [`NetError`](crate::NetError) that names the peer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error("frame not completed within {timeout:?} ({buffered} bytes of it received)")]
    TimedOut { timeout: Duration, buffered: usize },
    #[error(
        "server memory budget exhausted while receiving a frame ({buffered} bytes of it received)"
    )]
    OverBudget { buffered: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A length-delimited codec that reports oversized, truncated and over-budget frames.
#[derive(Debug)]
pub struct FrameCodec {
    max: usize,
    /// Payload length of the frame being received, once its header has been consumed.
    expecting: Option<usize>,
    /// When the first byte of the frame being received arrived.
    started: Option<Instant>,
    budget: Option<MemoryBudget>,
    /// What the frame in progress holds of the budget.
    charge: Option<Charge>,
}

impl Clone for FrameCodec {
    /// Same limits and decoding state; the clone charges the budget afresh as it reads.
    fn clone(&self) -> Self {
        FrameCodec {
            max: self.max,
            expecting: self.expecting,
            started: self.started,
            budget: self.budget.clone(),
            charge: None,
        }
    }
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> Self {
        FrameCodec {
            max: max_frame,
            expecting: None,
            started: None,
            budget: None,
            charge: None,
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Changes the limit for frames not yet started (the handshake uses a small one).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max = max_frame;
    }

    /// Charges frames in progress to `budget` from now on.
    pub fn set_budget(&mut self, budget: MemoryBudget) {
        self.budget = Some(budget);
        self.charge = None;
    }

    /// When the frame being received started, if one is in progress.
    pub fn frame_started(&self) -> Option<Instant> {
        self.started
    }

    fn announced_len(src: &BytesMut) -> Option<u64> {
        let header = src.get(..HEADER_LEN)?;
        Some(u64::from((&header[..]).get_u32()))
    }

    /// A frame is in progress but incomplete: remember when it started and charge its
    /// buffer to the budget.
    fn incomplete(&mut self, src: &BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        let held = src.capacity();
        if held > UNCHARGED_BUFFER {
            if let Some(budget) = &self.budget {
                let charge = self.charge.get_or_insert_with(|| budget.charge_nothing());
                if !charge.try_resize(held) {
                    return Err(FrameError::OverBudget {
                        buffered: src.len(),
                    });
                }
            }
        }
        Ok(None)
    }

    fn complete(&mut self) {
        self.expecting = None;
        self.started = None;
        self.charge = None;
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let len = match self.expecting {
            Some(len) => len,
            None if src.is_empty() => return Ok(None),
            None => {
                let Some(len) = Self::announced_len(src) else {
                    return self.incomplete(src);
                };
                if len > self.max as u64 {
                    return Err(FrameError::TooLarge { len, max: self.max });
                }
                src.advance(HEADER_LEN);
                // Fits: at most `max`, which is a usize.
                let len = len as usize;
                self.expecting = Some(len);
                len
            }
        };
        if src.len() < len {
            return self.incomplete(src);
        }
        self.complete();
        Ok(Some(src.split_to(len)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.expecting.is_none() => Ok(None),
            None => Err(FrameError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = item.len();
        let header = match u32::try_from(len) {
            Ok(n) if len <= self.max => n,
            _ => {
                return Err(FrameError::TooLarge {
                    len: len as u64,
                    max: self.max,
                })
            }
        };
        dst.reserve(HEADER_LEN + len);
        dst.put_u32(header);
        dst.extend_from_slice(&item);
        Ok(())
    }
}

/// The timer behind a connection's frame deadline: armed while a frame is in progress,
/// at the frame's start plus the timeout.
#[derive(Debug, Default)]
pub(crate) struct FrameDeadline {
    timeout: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl FrameDeadline {
    pub(crate) fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Ready once the frame that started at `started` has run out of time; pending while
    /// no frame is in progress or no timeout is set.
    pub(crate) fn poll_expired(
        &mut self,
        started: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<Duration> {
        let (Some(timeout), Some(started)) = (self.timeout, started) else {
            return Poll::Pending;
        };
        let at = started + timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        timer.as_mut().poll(cx).map(|()| timeout)
    }
}

/// Polls `framed` for its next frame, failing it if the frame in progress outlives the
/// deadline. Cancel-safe: the frame's bytes and start time stay in the codec.
pub(crate) async fn next_frame<T>(
    framed: &mut T,
    codec: fn(&T) -> (&FrameCodec, usize),
    deadline: &mut FrameDeadline,
) -> Option<Result<BytesMut, FrameError>>
where
    T: futures_util::Stream<Item = Result<BytesMut, FrameError>> + Unpin,
{
    std::future::poll_fn(|cx| {
        if let Poll::Ready(frame) = Pin::new(&mut *framed).poll_next(cx) {
            return Poll::Ready(frame);
        }
        let (codec, buffered) = codec(framed);
        deadline
            .poll_expired(codec.frame_started(), cx)
            .map(|timeout| Some(Err(FrameError::TimedOut { timeout, buffered })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_header_is_refused_before_payload_arrives() {
        let mut codec = FrameCodec::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 17][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 17, max: 16 }));
        // Only the header sits in the buffer: nothing was reserved for the claimed payload.
        assert!(buf.capacity() < 17);
    }

    #[test]
    fn huge_claimed_length_is_refused() {
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: 0xffff_ffff,
                ..
            }
        ));
    }

    #[test]
    fn truncated_frame_at_eof_is_an_error() {
        let mut codec = FrameCodec::new(64);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 1, 2, 3][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        let err = codec.decode_eof(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { buffered: 3 }));
    }

    #[test]
    fn frames_arriving_byte_by_byte_decode() {
        let mut codec = FrameCodec::new(64);
        let mut wire = BytesMut::new();
        for payload in [&b"first"[..], &[0xff; 40][..], b"third"] {
            codec
                .encode(Bytes::copy_from_slice(payload), &mut wire)
                .unwrap();
        }
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire {
            buf.extend_from_slice(&[byte]);
            if let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame.to_vec());
            }
        }
        assert_eq!(
            frames,
            vec![b"first".to_vec(), vec![0xff; 40], b"third".to_vec()]
        );
    }

    #[test]
    fn a_claimed_length_reserves_nothing_until_bytes_arrive() {
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[0, 0x7f, 0xff, 0xff, 1, 2, 3]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= 64, "capacity {}", buf.capacity());
        assert!(codec.frame_started().is_some());
    }

    #[test]
    fn a_frame_in_progress_is_charged_to_the_budget_and_refused_beyond_it() {
        let budget = MemoryBudget::new(300 * 1024);
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME);
        codec.set_budget(budget.clone());
        let mut buf = BytesMut::with_capacity(256 * 1024);
        buf.extend_from_slice(&[0, 0x10, 0, 0]);
        buf.extend_from_slice(&[0; 1000]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(budget.used() >= 250 * 1024);
        let mut other = codec.clone();
        let mut big = BytesMut::with_capacity(128 * 1024);
        big.extend_from_slice(&[0; 10]);
        let err = other.decode(&mut big).unwrap_err();
        assert!(matches!(err, FrameError::OverBudget { buffered: 10 }));
        // Completing the frame gives its share back.
        buf.resize(0x10_0000, 0);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap().len(), 0x10_0000);
        assert_eq!(budget.used(), 0);
        assert!(codec.frame_started().is_none());
    }

    #[test]
    fn round_trip() {
        let mut codec = FrameCodec::new(64);
        let mut buf = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"hello"), &mut buf)
            .unwrap();
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], b"hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn sending_an_oversized_frame_is_refused() {
        let mut codec = FrameCodec::new(4);
        let mut buf = BytesMut::new();
        let err = codec
            .encode(Bytes::from_static(b"hello"), &mut buf)
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 5, max: 4 }));
    }
}
