//! COM1: a 16550 UART (vm-superio) whose output goes to a log file or stdout, with
//! its interrupt delivered through an eventfd registered as a KVM irqfd.

use std::io::Write;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Raises the UART's interrupt line by writing the irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

pub type SerialOutput = Box<dyn Write + Send>;

pub struct SerialPort {
    uart: Serial<IrqTrigger, NoEvents, SerialOutput>,
}

impl SerialPort {
    pub fn new(irq: EventFd, output: SerialOutput) -> SerialPort {
        SerialPort {
            uart: Serial::new(IrqTrigger(irq), output),
        }
    }

    pub fn pio_read(&mut self, offset: u8, data: &mut [u8]) {
        if let Some(b) = data.first_mut() {
            *b = self.uart.read(offset);
        }
    }

    /// Queue keystrokes for the guest; returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(input).unwrap_or(0)
    }

    pub fn pio_write(&mut self, offset: u8, data: &[u8]) {
        if let Some(&b) = data.first() {
            // An output error (full disk, closed pipe) must not stop the guest.
            let _ = self.uart.write(offset, b);
            if offset == 0 {
                let _ = self.uart.writer_mut().flush();
            }
        }
    }
}
