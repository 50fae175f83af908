//! Just enough of the i8042 keyboard controller for a guest to reset the machine:
//! Linux's `reboot=k` (its default fallback) writes 0xfe to the command port.

/// Command that pulses the CPU reset line.
const CMD_RESET_CPU: u8 = 0xfe;

#[derive(Debug, Default)]
pub struct I8042;

impl I8042 {
    /// Status and data reads: no key pressed, input buffer empty, so guests never wait.
    pub fn pio_read(&self, _port: u16, data: &mut [u8]) {
        data.fill(0);
    }

    /// True when the guest asked for a CPU reset.
    pub fn pio_write(&self, port: u16, data: &[u8]) -> bool {
        port == crate::layout::I8042_COMMAND_PORT && data.first() == Some(&CMD_RESET_CPU)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{I8042_COMMAND_PORT, I8042_DATA_PORT};

    #[test]
    fn reset_only_on_the_reset_command() {
        let dev = I8042;
        assert!(dev.pio_write(I8042_COMMAND_PORT, &[0xfe]));
        assert!(!dev.pio_write(I8042_COMMAND_PORT, &[0xd1]));
        assert!(!dev.pio_write(I8042_DATA_PORT, &[0xfe]));
        let mut b = [0xffu8];
        dev.pio_read(I8042_COMMAND_PORT, &mut b);
        assert_eq!(b, [0]);
    }
}
