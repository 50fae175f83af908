//! Threads that decompress clusters (deflate or zstd) and write them, holes left out,
//! at their guest offsets in the output.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use super::header::{Compression, Header};
use super::Qcow2Error;
use crate::formats::FormatError;

/// Zero runs shorter than this are written, not left as holes (as `qemu-img convert -S 4k`).
const HOLE_GRANULE: usize = 4096;

pub(super) struct Job {
    pub guest: u64,
    pub data: Vec<u8>,
    pub compressed: bool,
}

/// Threads that decompress clusters and write them at their guest offsets.
pub(super) struct Workers {
    tx: Option<SyncSender<Job>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    error: Arc<Mutex<Option<FormatError>>>,
}

impl Workers {
    pub(super) fn start(out: &File, header: &Header) -> Workers {
        let count = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let (tx, rx) = sync_channel::<Job>(count * 4);
        let rx = Arc::new(Mutex::new(rx));
        let error = Arc::new(Mutex::new(None));
        let handles = (0..count)
            .map(|_| {
                let rx = Arc::clone(&rx);
                let error = Arc::clone(&error);
                let out = out.try_clone().expect("duplicating the output file handle");
                let header = header.clone();
                std::thread::spawn(move || worker(&rx, &out, &header, &error))
            })
            .collect();
        Workers {
            tx: Some(tx),
            handles,
            error,
        }
    }

    pub(super) fn submit(&self, job: Job) -> Result<(), FormatError> {
        self.check()?;
        let tx = self.tx.as_ref().expect("workers still running");
        if tx.send(job).is_err() {
            // Every worker stopped: one of them failed.
            self.check()?;
        }
        Ok(())
    }

    pub(super) fn check(&self) -> Result<(), FormatError> {
        match self.error.lock().unwrap().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(super) fn finish(mut self) -> Result<(), FormatError> {
        drop(self.tx.take());
        for h in self.handles.drain(..) {
            h.join().expect("qcow2 worker panicked");
        }
        self.check()
    }
}

fn worker(
    rx: &Mutex<Receiver<Job>>,
    out: &File,
    header: &Header,
    error: &Mutex<Option<FormatError>>,
) {
    let cs = header.cluster_size() as usize;
    let mut cluster = vec![0u8; cs];
    let mut inflater = flate2::Decompress::new(false);
    loop {
        let job = match rx.lock().unwrap().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let result = if job.compressed {
            decompress(header.compression, &mut inflater, &job.data, &mut cluster)
                .map_err(|detail| {
                    FormatError::from(Qcow2Error::Decompress {
                        guest: job.guest,
                        detail,
                    })
                })
                .and_then(|()| write_data(out, &cluster, job.guest, header.size))
        } else {
            write_data(out, &job.data, job.guest, header.size)
        };
        if let Err(e) = result {
            error.lock().unwrap().get_or_insert(e);
            return;
        }
    }
}

/// Decompress one cluster; trailing bytes (the rest of the last sector) are ignored.
fn decompress(
    kind: Compression,
    inflater: &mut flate2::Decompress,
    input: &[u8],
    cluster: &mut [u8],
) -> Result<(), String> {
    match kind {
        Compression::Zlib => {
            inflater.reset(false);
            let status = inflater
                .decompress(input, cluster, flate2::FlushDecompress::Finish)
                .map_err(|e| e.to_string())?;
            let produced = inflater.total_out() as usize;
            if produced == cluster.len() {
                Ok(())
            } else {
                Err(format!(
                    "deflate data gives {produced} of {} bytes ({status:?})",
                    cluster.len()
                ))
            }
        }
        Compression::Zstd => {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let mut decoder = Decoder::new().map_err(|e| e.to_string())?;
            let mut inb = InBuffer::around(input);
            let mut outb = OutBuffer::around(cluster);
            while outb.pos() < outb.capacity() {
                let before = (inb.pos(), outb.pos());
                decoder
                    .run(&mut inb, &mut outb)
                    .map_err(|e| format!("zstd: {e}"))?;
                if (inb.pos(), outb.pos()) == before {
                    return Err(format!(
                        "zstd data gives {} of {} bytes",
                        outb.pos(),
                        outb.capacity()
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Write the non-zero parts of `data` at `guest`, clipped to the virtual size.
fn write_data(out: &File, data: &[u8], guest: u64, size: u64) -> Result<(), FormatError> {
    let len = (size.saturating_sub(guest)).min(data.len() as u64) as usize;
    let data = &data[..len];
    let mut i = 0;
    while i < data.len() {
        let block_end = |i: usize| (i + HOLE_GRANULE).min(data.len());
        if is_zero(&data[i..block_end(i)]) {
            i = block_end(i);
            continue;
        }
        let start = i;
        while i < data.len() && !is_zero(&data[i..block_end(i)]) {
            i = block_end(i);
        }
        out.write_all_at(&data[start..i], guest + start as u64)
            .map_err(FormatError::Write)?;
    }
    Ok(())
}

pub(crate) fn is_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(16);
    let rest = words.remainder();
    words
        .map(|c| u128::from_ne_bytes(c.try_into().unwrap()))
        .fold(0, |acc, w| acc | w)
        == 0
        && rest.iter().all(|&x| x == 0)
}
