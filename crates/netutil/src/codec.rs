//! Length-delimited frames with a size limit.
//!
//! Every frame is a 4-byte big-endian length followed by that many payload bytes
//! (tokio-util's `LengthDelimitedCodec`). The length a peer announces is checked against the
//! limit as soon as the 4 header bytes are in, before any buffer is reserved for the payload,
//! so a hostile peer cannot make us allocate what it claims.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Default largest frame accepted or sent: 8 MiB.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

const HEADER_LEN: usize = 4;

/// Why a frame could not be read or written. `Connection` turns this into a
/// [`NetError`](crate::NetError) that names the peer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A length-delimited codec that reports oversized and truncated frames precisely.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
    max: usize,
    /// True while the next bytes are a frame header (the inner codec consumes the header
    /// once it has read it, so afterwards the buffer starts inside a payload).
    at_header: bool,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> Self {
        let inner = LengthDelimitedCodec::builder()
            .length_field_length(HEADER_LEN)
            .max_frame_length(max_frame)
            .new_codec();
        FrameCodec {
            inner,
            max: max_frame,
            at_header: true,
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Changes the limit for frames not yet started (the handshake uses a small one).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.inner.set_max_frame_length(max_frame);
        self.max = max_frame;
    }

    fn announced_len(src: &BytesMut) -> Option<u64> {
        let header = src.get(..HEADER_LEN)?;
        Some(u64::from((&header[..]).get_u32()))
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
        let header_complete = match (self.at_header, Self::announced_len(src)) {
            (true, Some(len)) if len > self.max as u64 => {
                return Err(FrameError::TooLarge { len, max: self.max });
            }
            (true, Some(_)) => true,
            _ => false,
        };
        let frame = self.inner.decode(src)?;
        if frame.is_some() {
            self.at_header = true;
        } else if header_complete {
            self.at_header = false;
        }
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        if item.len() > self.max {
            return Err(FrameError::TooLarge {
                len: item.len() as u64,
                max: self.max,
            });
        }
        Ok(self.inner.encode(item, dst)?)
    }
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
