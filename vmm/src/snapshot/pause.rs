//! Holding every vCPU out of KVM_RUN while the machine is saved. The main thread asks;
//! each vCPU thread parks. The main thread then settles the devices (a request they
//! complete may still raise an interrupt in a LAPIC), and only then asks the vCPUs to
//! read their own state, so that the LAPICs are read with those interrupts in them.

use super::vcpu::VcpuState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct PauseGate {
    requested: AtomicBool,
    parked: Mutex<Parked>,
    changed: Condvar,
}

#[derive(Default)]
struct Parked {
    /// Which vCPUs are parked, by index.
    parked: Vec<bool>,
    /// Set by the main thread once the vCPUs are to read their state.
    capture: bool,
    /// Each vCPU's state (or why it could not be read), by index.
    states: Vec<Option<Result<VcpuState, String>>>,
    /// Bumped by every release: a parked vCPU waits for it to change.
    generation: u64,
}

fn set<T>(slots: &mut Vec<Option<T>>, index: usize, value: T) {
    if slots.len() <= index {
        slots.resize_with(index + 1, || None);
    }
    slots[index] = Some(value);
}

impl PauseGate {
    /// Whether the vCPU threads are asked to park (checked between KVM_RUNs).
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// On vCPU `index`'s thread: park, read the state with `capture` when asked, and
    /// wait until released or until `stopping` says the VM ends.
    pub fn park(
        &self,
        index: u8,
        capture: impl FnOnce() -> Result<VcpuState, String>,
        stopping: &AtomicBool,
    ) {
        let index = usize::from(index);
        let mut parked = self.lock();
        if parked.parked.len() <= index {
            parked.parked.resize(index + 1, false);
        }
        parked.parked[index] = true;
        let generation = parked.generation;
        self.changed.notify_all();
        let released = |p: &Parked| p.generation != generation || stopping.load(Ordering::Acquire);
        parked = self.wait_while(parked, |p| !p.capture && !released(p));
        if parked.capture && !released(&parked) {
            drop(parked);
            let state = capture();
            parked = self.lock();
            set(&mut parked.states, index, state);
            self.changed.notify_all();
            parked = self.wait_while(parked, |p| !released(p));
        }
        drop(parked);
    }

    /// On the main thread: ask the `count` vCPUs to park, calling `kick` (which
    /// interrupts KVM_RUN) until they all have. They stay parked until
    /// [`PauseGate::release`].
    pub fn pause(&self, count: usize, kick: impl Fn(), limit: Duration) -> Result<(), String> {
        self.requested.store(true, Ordering::Release);
        let deadline = Instant::now() + limit;
        let mut parked = self.lock();
        loop {
            let arrived = parked.parked.iter().filter(|&&p| p).count();
            if arrived == count {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "only {arrived} of {count} vCPUs stopped within {limit:?}"
                ));
            }
            drop(parked);
            kick();
            parked = self.lock();
            parked = self
                .changed
                .wait_timeout(parked, Duration::from_millis(1))
                .expect("pause lock")
                .0;
        }
    }

    /// On the main thread, with the `count` vCPUs parked: have each read its state,
    /// and return the states in order.
    pub fn capture(&self, count: usize, limit: Duration) -> Result<Vec<VcpuState>, String> {
        let mut parked = self.lock();
        parked.capture = true;
        self.changed.notify_all();
        let deadline = Instant::now() + limit;
        while parked.states.iter().filter(|s| s.is_some()).count() < count {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the vCPUs did not read their state within {limit:?}"
                ));
            }
            parked = self
                .changed
                .wait_timeout(parked, Duration::from_millis(10))
                .expect("pause lock")
                .0;
        }
        (0..count)
            .map(|i| match parked.states[i].take() {
                Some(Ok(state)) => Ok(state),
                Some(Err(e)) => Err(format!("reading vCPU {i}: {e}")),
                None => Err(format!("vCPU {i} did not read its state")),
            })
            .collect()
    }

    /// Let every parked vCPU run again.
    pub fn release(&self) {
        let mut parked = self.lock();
        self.requested.store(false, Ordering::Release);
        parked.parked.clear();
        parked.states.clear();
        parked.capture = false;
        parked.generation += 1;
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Parked> {
        self.parked.lock().expect("pause lock")
    }

    /// Waits while `blocked` holds, waking now and then to look at a stop flag that
    /// is not under the lock.
    fn wait_while<'a>(
        &self,
        mut parked: MutexGuard<'a, Parked>,
        blocked: impl Fn(&Parked) -> bool,
    ) -> MutexGuard<'a, Parked> {
        while blocked(&parked) {
            parked = self
                .changed
                .wait_timeout(parked, Duration::from_millis(100))
                .expect("pause lock")
                .0;
        }
        parked
    }
}
