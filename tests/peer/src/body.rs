//! Response bodies: fixed, or generated while they are sent.

use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::Crc;
use hyper::body::{Body, Frame, SizeHint};

/// Zero bytes compressed into one self-contained deflate block.
const BLOCK: usize = 1 << 20;
/// Precompressed blocks sent per frame.
const BATCH: u64 = 64;
/// The largest frame of `x` a streamed body sends.
const STREAM_CHUNK: usize = 64 * 1024;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
static XS: [u8; STREAM_CHUNK] = [b'x'; STREAM_CHUNK];

/// The body of every response a peer sends.
pub(crate) struct PeerBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Streamed { remaining: u64 },
    Gzip(Box<GzipBomb>),
}

impl PeerBody {
    /// A fixed body; hyper sends it with `Content-Length`.
    pub(crate) fn full(bytes: Bytes) -> PeerBody {
        PeerBody {
            kind: Kind::Full(Some(bytes)),
        }
    }

    /// `len` bytes of `x` of unknown size to hyper, hence chunked.
    pub(crate) fn streamed(len: u64) -> PeerBody {
        PeerBody {
            kind: Kind::Streamed { remaining: len },
        }
    }

    /// A gzip stream of `len` zeros, of exactly known compressed size.
    pub(crate) fn gzip_bomb(len: u64) -> PeerBody {
        PeerBody {
            kind: Kind::Gzip(Box::new(GzipBomb::new(len))),
        }
    }
}

impl Body for PeerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = match &mut self.get_mut().kind {
            Kind::Full(bytes) => bytes.take().filter(|b| !b.is_empty()),
            Kind::Streamed { remaining } => {
                let n = (*remaining).min(STREAM_CHUNK as u64);
                *remaining -= n;
                (n > 0).then(|| Bytes::from_static(&XS[..n as usize]))
            }
            Kind::Gzip(bomb) => bomb.next_chunk(),
        };
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            // Never claim to be empty up front: hyper would then send
            // `Content-Length: 0` instead of chunking.
            Kind::Streamed { .. } => false,
            Kind::Gzip(bomb) => bomb.stage == Stage::Done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Streamed { .. } => SizeHint::default(),
            Kind::Gzip(bomb) => SizeHint::with_exact(bomb.remaining_bytes),
        }
    }
}

/// The parts of a bomb that do not depend on its length, built once.
struct Precomputed {
    /// `BLOCK` zeros as a non-final deflate block ending on a byte boundary
    /// with no references before itself, so copies of it concatenate into a
    /// valid deflate stream.
    block: Bytes,
    /// `block` repeated `BATCH` times.
    batch: Bytes,
    block_crc: Crc,
    batch_crc: Crc,
}

fn precomputed() -> &'static Precomputed {
    static PRE: OnceLock<Precomputed> = OnceLock::new();
    PRE.get_or_init(|| {
        let block = deflate_zeros(BLOCK as u64, false);
        let batch = block.repeat(BATCH as usize);
        let block_crc = crc_of_zeros(BLOCK as u64);
        let mut batch_crc = Crc::new();
        for _ in 0..BATCH {
            batch_crc.combine(&block_crc);
        }
        Precomputed {
            block: Bytes::from(block),
            batch: Bytes::from(batch),
            block_crc,
            batch_crc,
        }
    })
}

/// Deflates `len` zeros with a fresh compressor. Without `finish` the output
/// ends in a sync flush (non-final, byte-aligned); with it, in a final block.
fn deflate_zeros(len: u64, finish: bool) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        encoder.write_all(&ZEROS[..n]).expect("in-memory write");
        left -= n as u64;
    }
    if finish {
        encoder.finish().expect("in-memory write")
    } else {
        encoder.flush().expect("in-memory write");
        // Dropping the encoder afterwards finishes into the emptied buffer.
        std::mem::take(encoder.get_mut())
    }
}

fn crc_of_zeros(len: u64) -> Crc {
    let mut crc = Crc::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        crc.update(&ZEROS[..n]);
        left -= n as u64;
    }
    crc
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Blocks,
    Trailer,
    Done,
}

/// Streams: gzip header, `len / BLOCK` copies of the precompressed block,
/// a final block compressing the remaining zeros, then CRC-32 and size.
struct GzipBomb {
    stage: Stage,
    len: u64,
    blocks_left: u64,
    tail: Bytes,
    tail_crc: Crc,
    crc: Crc,
    remaining_bytes: u64,
}

/// Gzip member header: magic, deflate, no flags, no mtime, no extra flags,
/// unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl GzipBomb {
    fn new(len: u64) -> GzipBomb {
        let pre = precomputed();
        let blocks = len / BLOCK as u64;
        let rest = len % BLOCK as u64;
        let tail = Bytes::from(deflate_zeros(rest, true));
        let total =
            GZIP_HEADER.len() as u64 + blocks * pre.block.len() as u64 + tail.len() as u64 + 8;
        GzipBomb {
            stage: Stage::Header,
            len,
            blocks_left: blocks,
            tail,
            tail_crc: crc_of_zeros(rest),
            crc: Crc::new(),
            remaining_bytes: total,
        }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        let pre = precomputed();
        let chunk = match self.stage {
            Stage::Header => {
                self.stage = Stage::Blocks;
                Bytes::from_static(&GZIP_HEADER)
            }
            Stage::Blocks if self.blocks_left >= BATCH => {
                self.blocks_left -= BATCH;
                self.crc.combine(&pre.batch_crc);
                pre.batch.clone()
            }
            Stage::Blocks if self.blocks_left > 0 => {
                let n = self.blocks_left;
                self.blocks_left = 0;
                for _ in 0..n {
                    self.crc.combine(&pre.block_crc);
                }
                pre.batch.slice(..n as usize * pre.block.len())
            }
            Stage::Blocks => {
                self.stage = Stage::Trailer;
                self.crc.combine(&self.tail_crc);
                self.tail.clone()
            }
            Stage::Trailer => {
                self.stage = Stage::Done;
                let mut trailer = Vec::with_capacity(8);
                trailer.extend_from_slice(&self.crc.sum().to_le_bytes());
                // ISIZE is the length modulo 2^32.
                trailer.extend_from_slice(&(self.len as u32).to_le_bytes());
                Bytes::from(trailer)
            }
            Stage::Done => return None,
        };
        self.remaining_bytes -= chunk.len() as u64;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn collect(mut bomb: GzipBomb) -> Vec<u8> {
        let expected = bomb.remaining_bytes;
        let mut out = Vec::new();
        while let Some(chunk) = bomb.next_chunk() {
            out.extend_from_slice(&chunk);
        }
        assert_eq!(out.len() as u64, expected, "size hint matches the stream");
        assert_eq!(bomb.remaining_bytes, 0);
        out
    }

    #[test]
    fn gzip_bomb_edges_decompress_exactly() {
        for len in [
            0,
            1,
            BLOCK as u64 - 1,
            BLOCK as u64,
            BLOCK as u64 + 1,
            BATCH * BLOCK as u64 + 3 * BLOCK as u64 + 12_345,
        ] {
            let compressed = collect(GzipBomb::new(len));
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut plain)
                .unwrap_or_else(|e| panic!("len {len}: {e}"));
            assert_eq!(plain.len() as u64, len);
            assert!(plain.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn precompressed_block_is_small() {
        // Deflate cannot beat about 1:1032 on zeros.
        assert!(precomputed().block.len() < 2 * BLOCK / 1000);
    }
}
