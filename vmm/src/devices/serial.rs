//! COM1: a 16550 UART (vm-superio) whose output goes to a log file or stdout, with
//! its interrupt delivered through an eventfd registered as a KVM irqfd.

use serde::{Deserialize, Serialize};
use std::io::Write;
use vm_superio::serial::{NoEvents, SerialState};
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

/// The 16550's FIFO, as vm-superio sizes it.
const FIFO_SIZE: usize = 64;

/// The UART's registers and the input bytes the guest has not read yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialPortState {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    pub in_buffer: Vec<u8>,
}

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

    pub fn save(&self) -> SerialPortState {
        let s = self.uart.state();
        SerialPortState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    /// Takes on saved registers and input, keeping this port's interrupt and output;
    /// raises the interrupt if the saved state has one due, as the UART would.
    pub fn restore(&mut self, saved: &SerialPortState) -> Result<(), String> {
        let state = SerialState {
            baud_divisor_low: saved.baud_divisor_low,
            baud_divisor_high: saved.baud_divisor_high,
            interrupt_enable: saved.interrupt_enable,
            interrupt_identification: saved.interrupt_identification,
            line_control: saved.line_control,
            line_status: saved.line_status,
            modem_control: saved.modem_control,
            modem_status: saved.modem_status,
            scratch: saved.scratch,
            in_buffer: saved.in_buffer.clone(),
        };
        if saved.in_buffer.len() > FIFO_SIZE {
            return Err(format!(
                "serial port: {} input bytes saved, its FIFO holds {FIFO_SIZE}",
                saved.in_buffer.len()
            ));
        }
        let irq = || {
            let fd = self.uart.interrupt_evt().0.try_clone();
            fd.map(IrqTrigger)
                .map_err(|e| format!("serial port interrupt: {e}"))
        };
        let (irq, for_placeholder) = (irq()?, irq()?);
        // The output moves to the restored UART; a placeholder holds its place.
        let sink: SerialOutput = Box::new(std::io::sink());
        let old = std::mem::replace(&mut self.uart, Serial::new(for_placeholder, sink));
        let output = old.into_writer();
        match Serial::from_state(&state, irq, NoEvents, output) {
            Ok(uart) => {
                self.uart = uart;
                Ok(())
            }
            Err(e) => Err(format!("serial port: {e:?}")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    /// Output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const DATA: u8 = 0;
    const IER: u8 = 1;
    const LCR: u8 = 3;
    const SCRATCH: u8 = 7;

    fn read(port: &mut SerialPort, offset: u8) -> u8 {
        let mut b = [0];
        port.pio_read(offset, &mut b);
        b[0]
    }

    #[test]
    fn registers_and_unread_input_survive_a_restore() {
        let mut port = SerialPort::new(
            EventFd::new(EFD_NONBLOCK).unwrap(),
            Box::new(Captured::default()),
        );
        port.pio_write(LCR, &[0x03]);
        port.pio_write(SCRATCH, &[0x5a]);
        // Interrupt when input is there to read.
        port.pio_write(IER, &[0x01]);
        assert_eq!(port.enqueue_input(b"ls"), 2);
        let saved: SerialPortState =
            serde_json::from_str(&serde_json::to_string(&port.save()).unwrap()).unwrap();

        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let out = Captured::default();
        let mut restored = SerialPort::new(irq.try_clone().unwrap(), Box::new(out.clone()));
        restored.restore(&saved).unwrap();
        // The input waiting to be read raises the interrupt again.
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(read(&mut restored, LCR), 0x03);
        assert_eq!(read(&mut restored, SCRATCH), 0x5a);
        assert_eq!(
            [read(&mut restored, DATA), read(&mut restored, DATA)],
            *b"ls"
        );
        // Output goes where this machine's goes.
        restored.pio_write(DATA, b"x");
        assert_eq!(*out.0.lock().unwrap(), b"x");
        assert_eq!(restored.save().in_buffer, b"");
    }

    #[test]
    fn more_input_than_the_fifo_holds_is_refused() {
        let mut port = SerialPort::new(
            EventFd::new(EFD_NONBLOCK).unwrap(),
            Box::new(Captured::default()),
        );
        let mut state = port.save();
        state.in_buffer = vec![b'a'; 65];
        assert_eq!(
            port.restore(&state).unwrap_err(),
            "serial port: 65 input bytes saved, its FIFO holds 64"
        );
        // Still a working port.
        port.pio_write(SCRATCH, &[7]);
        assert_eq!(read(&mut port, SCRATCH), 7);
    }
}
