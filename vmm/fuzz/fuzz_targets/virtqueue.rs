//! Arbitrary descriptor tables and avail rings for the queues whose chains carry no
//! header the device parses: virtio-net transmit and receive (over a socketpair
//! standing in for passt) and virtio-rng.
#![no_main]

use hvbox_vmm::virtio::net::{Backend, NetWorker, Passt};
use hvbox_vmm::virtio::rng::fill_chain;
use hvbox_vmm::virtio::worker::{drain_queue, ErrorLog};
use hvbox_vmm::virtio::VirtioInterrupt;
use hvbox_vmm_fuzz::{guest_memory, queue};
use libfuzzer_sys::fuzz_target;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

struct NoInterrupt;

impl VirtioInterrupt for NoInterrupt {
    fn notify_queue(&self, _queue: u16) -> io::Result<()> {
        Ok(())
    }
    fn notify_config(&self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let mem = guest_memory(rest);
    if selector & 1 == 0 {
        let mut q = queue(&mem, rest, 0);
        let mut log = ErrorLog::new("fuzz");
        drain_queue(&mem, &mut q, &mut log, |chain, _| {
            fill_chain(&mem, chain).unwrap_or(0)
        });
        return;
    }
    // virtio-net: queue 0 receives, queue 1 transmits.
    let (ours, mut passt) = UnixStream::pair().unwrap();
    passt.set_nonblocking(true).unwrap();
    let mut worker = NetWorker::new(
        mem.clone(),
        queue(&mem, rest, 0),
        queue(&mem, rest, 1),
        Backend::Passt(Passt::from_stream(ours)),
        selector & 2 != 0,
        Arc::new(NoInterrupt),
        Arc::new(AtomicBool::new(true)),
    );
    // Frames for the receive side: sizes from the selector, so that some span
    // several buffers and some fit none; then, sometimes, raw stream bytes from the
    // input (passt is trusted, but a garbled stream must not hurt either).
    let len = 60 + usize::from((selector >> 2) & 0x1f) * 197;
    for _ in 0..2 {
        let mut frame = (len as u32).to_be_bytes().to_vec();
        frame.resize(4 + len, 0x5a);
        let _ = passt.write_all(&frame);
    }
    if selector & 0x80 != 0 {
        let _ = passt.write_all(&rest[rest.len().saturating_sub(300)..]);
    }
    worker.process_tx();
    worker.process_rx();
    // What reached "passt" is well framed: each frame is whole and not too large.
    let mut out = Vec::new();
    let _ = passt.read_to_end(&mut out);
    let mut at = 0;
    while at + 4 <= out.len() {
        let n = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        assert!(n <= hvbox_vmm::virtio::net::MAX_FRAME_LEN);
        at += 4 + n;
    }
});
