//! CMOS real-time clock (ports 0x70/0x71): the guest reads the host's time in UTC.
//!
//! Registers are served in BCD, 24-hour mode, as a PC firmware leaves them; writes to
//! the clock are ignored (the guest keeps its own time once booted).

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
const REG_STATUS_C: u8 = 0x0c;
const REG_STATUS_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// Status A: 32.768 kHz time base, 1024 Hz rate, no update in progress.
const STATUS_A: u8 = 0x26;
/// Status B: 24-hour clock, BCD values.
const STATUS_B: u8 = 0x02;
/// Status D: the battery (and so the time) is valid.
const STATUS_D_VALID: u8 = 0x80;

/// What a snapshot keeps of the clock: the selected register and the CMOS RAM.
/// Not the time: a restored clock reads the host's, as it always does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RtcState {
    pub index: u8,
    pub ram: Vec<u8>,
}

#[derive(Debug)]
pub struct Rtc {
    index: u8,
    /// General-purpose CMOS bytes the guest may use.
    ram: [u8; 128],
}

impl Default for Rtc {
    fn default() -> Rtc {
        Rtc {
            index: 0,
            ram: [0; 128],
        }
    }
}

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub weekday: u32, // 1 = Sunday, as CMOS counts
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    pub fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil-from-days (proleptic Gregorian), valid for all i64 day counts we meet.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year: year as u32,
            month: month as u32,
            day: day as u32,
            weekday: ((days + 4).rem_euclid(7) + 1) as u32, // 1970-01-01 was a Thursday
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    fn now() -> DateTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        DateTime::from_unix(secs)
    }
}

fn bcd(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

impl Rtc {
    pub fn save(&self) -> RtcState {
        RtcState {
            index: self.index,
            ram: self.ram.to_vec(),
        }
    }

    pub fn restore(&mut self, state: &RtcState) -> Result<(), String> {
        if state.index > 0x7f {
            return Err(format!("CMOS register {:#x} does not exist", state.index));
        }
        let ram = <[u8; 128]>::try_from(state.ram.as_slice())
            .map_err(|_| format!("{} bytes of CMOS RAM saved, not 128", state.ram.len()))?;
        self.index = state.index;
        self.ram = ram;
        Ok(())
    }

    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = if port == crate::layout::CMOS_PORT {
            self.index
        } else {
            self.register(self.index, DateTime::now())
        };
    }

    pub fn pio_write(&mut self, port: u16, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        if port == crate::layout::CMOS_PORT {
            // Bit 7 is the NMI mask, not part of the index.
            self.index = value & 0x7f;
        } else if self.index > REG_STATUS_D && self.index != REG_CENTURY {
            self.ram[self.index as usize] = value;
        }
    }

    fn register(&self, index: u8, t: DateTime) -> u8 {
        match index {
            REG_SECONDS => bcd(t.second),
            REG_MINUTES => bcd(t.minute),
            REG_HOURS => bcd(t.hour),
            REG_WEEKDAY => bcd(t.weekday),
            REG_DAY => bcd(t.day),
            REG_MONTH => bcd(t.month),
            REG_YEAR => bcd(t.year % 100),
            REG_CENTURY => bcd(t.year / 100),
            REG_STATUS_A => STATUS_A,
            REG_STATUS_B => STATUS_B,
            REG_STATUS_C => 0,
            REG_STATUS_D => STATUS_D_VALID,
            other => self.ram[other as usize & 0x7f],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_to_calendar() {
        let t = DateTime::from_unix(0);
        assert_eq!((t.year, t.month, t.day, t.weekday), (1970, 1, 1, 5));
        // 2026-11-21 05:49:00 UTC, a Saturday.
        let t = DateTime::from_unix(1_795_240_140);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday),
            (2026, 11, 21, 5, 49, 0, 7)
        );
        let leap = DateTime::from_unix(951_782_400); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
    }

    #[test]
    fn registers_are_bcd_through_the_ports() {
        let rtc = Rtc::default();
        let t = DateTime::from_unix(1_795_240_140);
        assert_eq!(rtc.register(REG_YEAR, t), 0x26);
        assert_eq!(rtc.register(REG_CENTURY, t), 0x20);
        assert_eq!(rtc.register(REG_MONTH, t), 0x11);
        assert_eq!(rtc.register(REG_MINUTES, t), 0x49);
        assert_eq!(rtc.register(REG_STATUS_B, t), STATUS_B);

        let mut rtc = Rtc::default();
        rtc.pio_write(0x70, &[0x80 | REG_STATUS_D]);
        let mut b = [0u8];
        rtc.pio_read(0x71, &mut b);
        assert_eq!(b[0], STATUS_D_VALID);
        rtc.pio_write(0x70, &[0x40]);
        rtc.pio_write(0x71, &[0x5a]);
        rtc.pio_read(0x71, &mut b);
        assert_eq!(b[0], 0x5a);
    }

    #[test]
    fn cmos_ram_and_index_survive_a_restore_and_the_time_is_the_hosts() {
        let mut rtc = Rtc::default();
        rtc.pio_write(0x70, &[0x40]);
        rtc.pio_write(0x71, &[0x5a]);
        rtc.pio_write(0x70, &[REG_YEAR]);
        let saved: RtcState =
            serde_json::from_str(&serde_json::to_string(&rtc.save()).unwrap()).unwrap();
        let mut restored = Rtc::default();
        restored.restore(&saved).unwrap();
        let mut b = [0u8];
        restored.pio_read(0x71, &mut b);
        assert_eq!(b[0], bcd(DateTime::now().year % 100));
        restored.pio_write(0x70, &[0x40]);
        restored.pio_read(0x71, &mut b);
        assert_eq!(b[0], 0x5a);

        let short = RtcState {
            index: 0,
            ram: vec![0; 127],
        };
        assert_eq!(
            restored.restore(&short).unwrap_err(),
            "127 bytes of CMOS RAM saved, not 128"
        );
        let bad_index = RtcState {
            index: 0x80,
            ram: vec![0; 128],
        };
        assert_eq!(
            restored.restore(&bad_index).unwrap_err(),
            "CMOS register 0x80 does not exist"
        );
    }
}
