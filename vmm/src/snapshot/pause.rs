//! Holding every vCPU out of KVM_RUN while the machine is saved: the main thread asks,
//! each vCPU thread reads its own state where it stands and waits to be let go.

use super::vcpu::VcpuState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct PauseGate {
    requested: AtomicBool,
    parked: Mutex<Parked>,
    changed: Condvar,
}

#[derive(Default)]
struct Parked {
    /// Each vCPU's state (or why it could not be read), by index, once parked.
    states: Vec<Option<Result<VcpuState, String>>>,
    /// Bumped by every release: a parked vCPU waits for it to change.
    generation: u64,
}

impl PauseGate {
    /// Whether the vCPU threads are asked to park (checked between KVM_RUNs).
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// On vCPU `index`'s thread: leave its state, then wait until released or until
    /// `stopping` says the VM ends.
    pub fn park(&self, index: u8, state: Result<VcpuState, String>, stopping: &AtomicBool) {
        let mut parked = self.parked.lock().expect("pause lock");
        let slot = usize::from(index);
        if parked.states.len() <= slot {
            parked.states.resize_with(slot + 1, || None);
        }
        parked.states[slot] = Some(state);
        let generation = parked.generation;
        self.changed.notify_all();
        while parked.generation == generation && !stopping.load(Ordering::Acquire) {
            parked = self
                .changed
                .wait_timeout(parked, Duration::from_millis(100))
                .expect("pause lock")
                .0;
        }
    }

    /// On the main thread: ask the `count` vCPUs to park, calling `kick` (which
    /// interrupts KVM_RUN) until they all have, and return their states in order.
    /// The vCPUs stay parked until [`PauseGate::release`].
    pub fn pause(
        &self,
        count: usize,
        kick: impl Fn(),
        limit: Duration,
    ) -> Result<Vec<VcpuState>, String> {
        self.requested.store(true, Ordering::Release);
        let deadline = Instant::now() + limit;
        let mut parked = self.parked.lock().expect("pause lock");
        loop {
            let arrived = parked.states.iter().filter(|s| s.is_some()).count();
            if arrived == count {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "only {arrived} of {count} vCPUs stopped within {limit:?}"
                ));
            }
            drop(parked);
            kick();
            parked = self.parked.lock().expect("pause lock");
            parked = self
                .changed
                .wait_timeout(parked, Duration::from_millis(1))
                .expect("pause lock")
                .0;
        }
        parked
            .states
            .iter_mut()
            .enumerate()
            .map(|(i, s)| match s.take() {
                Some(Ok(state)) => Ok(state),
                Some(Err(e)) => Err(format!("reading vCPU {i}: {e}")),
                None => Err(format!("vCPU {i} did not stop")),
            })
            .collect()
    }

    /// Let every parked vCPU run again.
    pub fn release(&self) {
        let mut parked = self.parked.lock().expect("pause lock");
        self.requested.store(false, Ordering::Release);
        parked.states.clear();
        parked.generation += 1;
        self.changed.notify_all();
    }
}
