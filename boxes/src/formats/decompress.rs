//! The compression wrappers: xz (liblzma), gzip (zlib-rs through flate2) and zstd
//! (libzstd), each read as a stream. Concatenated streams/members/frames are all read,
//! as `xz -d`, `gzip -d` and `zstd -d` do.
//!
//! xz decodes on one thread: liblzma's multi-threaded decoder holds whole blocks
//! (24 MiB each at the default preset) per thread, which would break the memory
//! budget, and on two cores it did not beat the single-threaded decoder.

use std::io::{BufReader, Read};

use super::Compression;

const BUFFER: usize = 1 << 20;

/// A decoder reading compressed bytes from `src`.
pub(crate) fn decoder<'a>(c: Compression, src: impl Read + Send + 'a) -> Box<dyn Read + Send + 'a> {
    let buffered = BufReader::with_capacity(BUFFER, src);
    match c {
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::with_buffer(buffered).expect("allocating a zstd decoder"))
        }
    }
}
