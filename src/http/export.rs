//! One export path for every transport: a body (after the transport's own framing) in, an
//! outcome out. OTLP/HTTP and OTLP/gRPC both come here once their bytes are read: bounded
//! decompression, the shard's byte budget for the decompressed size, decode + validate (timed),
//! then [`crate::shard::ingest::ingest`]. Each transport only frames its request and maps an
//! [`ExportError`] to its own status codes (`otlp::answer`, `grpc::export_status`).

use std::io::Read;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::reply::{Format, SignalKind};
use crate::limits::REQUEST_DECODED_BYTES_MAX;
use crate::metrics::{add, Hist};
use crate::otlp::{self, DecodeError};
use crate::shard::admission::HeldBytes;
use crate::shard::ingest::{ingest, IngestError, Ingested};
use crate::shard::Shard;

/// Compression of a request body (OTLP/HTTP `Content-Encoding`, gRPC `grpc-encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Identity,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Identity => "identity",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Why an export was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Past [`REQUEST_DECODED_BYTES_MAX`] once decompressed (a bomb is stopped there).
    #[error("decompressed body is larger than {max} bytes")]
    TooLarge { max: usize },
    /// The compressed bytes are not what their encoding says.
    #[error("cannot decompress {compression} body: {detail}")]
    Corrupt {
        compression: &'static str,
        detail: String,
    },
    /// The decompressed body does not fit in what the shard's byte budget has left.
    #[error("too many request bytes in flight; retry later")]
    OverBudget,
    /// The request's deadline passed before anything was written.
    #[error("deadline exceeded before the request was written; nothing was stored")]
    DeadlineExceeded,
    /// Not an OTLP message.
    #[error(transparent)]
    Decode(DecodeError),
    /// Admission or storage refused it (retryable).
    #[error(transparent)]
    Ingest(IngestError),
}

/// What an export is: the signal, the body's format and compression, and until when it may
/// be written (gRPC's `grpc-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Export {
    pub signal: SignalKind,
    pub format: Format,
    pub compression: Compression,
    pub deadline: Option<Instant>,
}

/// Decompresses, holds and decodes `body`, then ingests it. `held` holds the body's bytes on
/// the wire; it is resized to the decompressed size.
pub async fn export(
    shard: &Rc<Shard>,
    export: Export,
    body: Bytes,
    held: &mut HeldBytes<'_>,
) -> Result<Ingested, ExportError> {
    let body = decompress(body, export.compression)?;
    add(&shard.metrics.bytes_received, body.len() as u64);
    if !held.try_resize(body.len()) {
        return Err(ExportError::OverBudget);
    }
    if export.deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(ExportError::DeadlineExceeded);
    }
    let outcome = match export.signal {
        SignalKind::Traces => {
            let decoded = timed(shard, || match export.format {
                Format::Protobuf => otlp::proto::decode_traces(&body),
                Format::Json => otlp::json::decode_traces_json(&body),
            });
            ingest(shard, decoded.map_err(ExportError::Decode)?).await
        }
        SignalKind::Logs => {
            let decoded = timed(shard, || match export.format {
                Format::Protobuf => otlp::proto::decode_logs(&body),
                Format::Json => otlp::json::decode_logs_json(&body),
            });
            ingest(shard, decoded.map_err(ExportError::Decode)?).await
        }
    };
    outcome.map_err(ExportError::Ingest)
}

/// Runs a decode, recording its time.
fn timed<T>(shard: &Shard, decode: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = decode();
    shard.metrics.record(Hist::Decode, started.elapsed());
    out
}

/// Decompresses `wire`, stopping as soon as the output passes [`REQUEST_DECODED_BYTES_MAX`]: a
/// compression bomb costs at most that much memory and is refused. Identity is the body itself
/// (no copy).
pub fn decompress(wire: Bytes, compression: Compression) -> Result<Bytes, ExportError> {
    let corrupt = |e: std::io::Error| ExportError::Corrupt {
        compression: compression.name(),
        detail: e.to_string(),
    };
    match compression {
        Compression::Identity => Ok(wire),
        Compression::Gzip => bounded(flate2::read::MultiGzDecoder::new(&wire[..]), wire.len())
            .map_err(|e| e.map_corrupt(corrupt)),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(&wire[..]).map_err(corrupt)?;
            bounded(decoder, wire.len()).map_err(|e| e.map_corrupt(corrupt))
        }
    }
}

/// A bounded read's failure: past the limit, or the decoder's error.
enum Bounded {
    TooLarge,
    Io(std::io::Error),
}

impl Bounded {
    fn map_corrupt(self, corrupt: impl FnOnce(std::io::Error) -> ExportError) -> ExportError {
        match self {
            Bounded::TooLarge => ExportError::TooLarge {
                max: REQUEST_DECODED_BYTES_MAX,
            },
            Bounded::Io(e) => corrupt(e),
        }
    }
}

fn bounded(reader: impl Read, wire_len: usize) -> Result<Bytes, Bounded> {
    let mut out = Vec::with_capacity((wire_len * 4).min(REQUEST_DECODED_BYTES_MAX));
    match reader
        .take(REQUEST_DECODED_BYTES_MAX as u64 + 1)
        .read_to_end(&mut out)
    {
        Ok(_) if out.len() > REQUEST_DECODED_BYTES_MAX => Err(Bounded::TooLarge),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(Bounded::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, data).unwrap();
        Bytes::from(gz.finish().unwrap())
    }

    #[test]
    fn decompression_is_bounded_and_names_its_failures() {
        let msg = Bytes::from_static(b"hello");
        assert_eq!(decompress(msg.clone(), Compression::Identity).unwrap(), msg);
        assert_eq!(decompress(gzip(b"hello"), Compression::Gzip).unwrap(), msg);
        let zstd = zstd::encode_all(&b"hello"[..], 1).unwrap();
        assert_eq!(decompress(zstd.into(), Compression::Zstd).unwrap(), msg);
        let bomb = gzip(&vec![0u8; REQUEST_DECODED_BYTES_MAX + 1]);
        assert!(matches!(
            decompress(bomb, Compression::Gzip),
            Err(ExportError::TooLarge { .. })
        ));
        let err = decompress(Bytes::from_static(b"not gzip"), Compression::Gzip).unwrap_err();
        assert!(
            matches!(
                &err,
                ExportError::Corrupt {
                    compression: "gzip",
                    ..
                }
            ),
            "{err}"
        );
    }
}
