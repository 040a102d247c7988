//! Reading a request body against the shard's byte budget, whatever its framing.
//!
//! A `Content-Length` is only a promise, and often absent (HTTP/1.1 chunked, HTTP/2 DATA frames
//! without `content-length`, a gRPC message whose size is in its own prefix). So every frame is
//! counted against the request's [`HeldBytes`] as it arrives: a body that grows past what the
//! shard may still hold is refused at that frame, and what it held is given back when the
//! request ends. Hundreds of uploads that never finish then hold at most
//! [`crate::limits::SHARD_INGEST_BYTES_MAX`] between them.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::limits::JOINED_SLACK_DIVISOR;
use crate::shard::admission::HeldBytes;

/// Why a body could not be read in full.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("request body is larger than {max} bytes")]
    TooLarge { max: usize },
    /// The shard holds as many request bytes as it may (retryable).
    #[error("too many request bytes in flight; retry later")]
    OverBudget,
    #[error("cannot read request body: {0}")]
    Read(hyper::Error),
}

/// A body being read: its frames so far, counted against `held`.
///
/// A body that comes in one frame is kept as that frame (no copy: the usual HTTP/2 export,
/// and a small HTTP/1.1 one). From the second frame on, the frames are copied into one buffer
/// (the copy that joining them at the end would make anyway), so the connection's read
/// buffers they were cut from are given back at once, and what is counted is that buffer's
/// capacity: the memory the body really holds.
pub struct CountedBody<'h, 's> {
    body: Incoming,
    held: &'h mut HeldBytes<'s>,
    first: Option<Bytes>,
    joined: Vec<u8>,
    len: usize,
    max: usize,
}

impl<'h, 's> CountedBody<'h, 's> {
    /// At most `max` bytes will be read; `held` may already hold a declared length.
    pub fn new(body: Incoming, held: &'h mut HeldBytes<'s>, max: usize) -> Self {
        CountedBody {
            body,
            held,
            first: None,
            joined: Vec::new(),
            len: 0,
            max,
        }
    }

    /// Reads the next data frame and counts it; `false` once the body has ended.
    pub async fn read_frame(&mut self) -> Result<bool, ReadError> {
        loop {
            let Some(frame) = self.body.frame().await else {
                return Ok(false);
            };
            let frame = frame.map_err(ReadError::Read)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry no body bytes
            };
            if data.is_empty() {
                continue;
            }
            self.push(data)?;
            return Ok(true);
        }
    }

    fn push(&mut self, data: Bytes) -> Result<(), ReadError> {
        let len = self.len + data.len();
        if len > self.max {
            return Err(ReadError::TooLarge { max: self.max });
        }
        if self.len == 0 {
            self.hold_at_least(len)?;
            self.first = Some(data);
        } else {
            if self.joined.capacity() - self.joined.len() < data.len() {
                self.grow(len)?;
            }
            if let Some(first) = self.first.take() {
                self.joined.extend_from_slice(&first);
            }
            self.joined.extend_from_slice(&data);
        }
        self.len = len;
        debug_assert!(self.held.bytes() >= self.len);
        Ok(())
    }

    /// Makes room for `needed` bytes in the joined buffer: the length held (a declared size)
    /// if that is enough, else half as much again as now, within the budget.
    fn grow(&mut self, needed: usize) -> Result<(), ReadError> {
        let held = self.held.bytes();
        let capacity = if needed <= held {
            held
        } else {
            let roomy = (needed + needed / 2).min(self.max);
            if self.hold_at_least(roomy).is_ok() {
                roomy
            } else {
                self.hold_at_least(needed)?;
                needed
            }
        };
        self.joined.reserve_exact(capacity - self.joined.len());
        Ok(())
    }

    /// Reads every remaining frame.
    pub async fn read_to_end(&mut self) -> Result<(), ReadError> {
        while self.read_frame().await? {}
        Ok(())
    }

    /// Holds `bytes` ahead of their arrival (a size the body announced), or refuses.
    pub fn hold_at_least(&mut self, bytes: usize) -> Result<(), ReadError> {
        if bytes <= self.held.bytes() || self.held.try_resize(bytes) {
            Ok(())
        } else {
            Err(ReadError::OverBudget)
        }
    }

    /// The first `N` bytes of the body, once they have arrived.
    pub fn prefix<const N: usize>(&self) -> Option<[u8; N]> {
        if self.len < N {
            return None;
        }
        let bytes = self.first.as_deref().unwrap_or(&self.joined);
        Some(bytes[..N].try_into().expect("N bytes"))
    }

    /// The body in one piece. A joined buffer grown ahead of the bytes (a body without a
    /// length) gives its spare capacity back first: the caller's hold then shrinks to the
    /// body's length, and what it holds must be what it counts.
    pub fn into_bytes(self) -> Bytes {
        match self.first {
            Some(first) => first,
            None => {
                let mut joined = self.joined;
                if joined.capacity() - joined.len() > joined.len() / JOINED_SLACK_DIVISOR {
                    joined.shrink_to_fit();
                }
                Bytes::from(joined)
            }
        }
    }
}
