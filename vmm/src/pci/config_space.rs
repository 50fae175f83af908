//! A function's type-0 configuration header: identity, command register, BARs and
//! the capability list, with a write mask per byte so the guest changes only what
//! hardware would let it change.
//!
//! BAR sizing falls out of the mask: the low bits of an N-byte BAR are read-only
//! zeros, so after the guest writes all-ones it reads back `!(N - 1)` and the type
//! bits, exactly as from a real device.

/// Conventional configuration space; no function here has PCI Express extended
/// capabilities, so bytes past this read as zero.
pub const CONFIG_SPACE_SIZE: usize = 256;

pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION_ID: usize = 0x08;
/// Programming interface, subclass, class: three bytes from here.
pub const CLASS_CODE: usize = 0x09;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
pub const SUBSYSTEM_ID: usize = 0x2e;
pub const CAPABILITIES_POINTER: usize = 0x34;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;

/// Command register: decode memory BARs.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// What the guest may set in the command register: I/O and memory decode, bus
/// mastering, INTx disable.
const COMMAND_WRITABLE: u16 = 0b111 | (1 << 10);
/// Status register: the capability list at CAPABILITIES_POINTER is valid.
const STATUS_CAPABILITY_LIST: u16 = 1 << 4;

pub const BAR_COUNT: usize = 6;
/// Low bits of a memory BAR: type 0b10 (64-bit), not prefetchable.
const BAR_MEM64: u32 = 0b10 << 1;
/// Capabilities start right after the standard header, dword-aligned.
const FIRST_CAPABILITY: usize = 0x40;

/// Who the function is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// Class, subclass and programming interface, as `0xCCSSPP`.
    pub class: u32,
    pub subsystem_vendor: u16,
    pub subsystem_id: u16,
}

/// A memory BAR the function decodes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarMapping {
    pub index: u8,
    pub addr: u64,
    pub size: u64,
}

pub struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
    writable: [u8; CONFIG_SPACE_SIZE],
    /// Size of the 64-bit memory BAR starting at each index (its upper half is the
    /// next index).
    bars: [Option<u64>; BAR_COUNT],
    /// Where the next capability goes, and the "next" byte that must point to it.
    next_capability: usize,
    link_to_next: usize,
}

impl ConfigSpace {
    pub fn new(id: &Identity) -> ConfigSpace {
        let mut space = ConfigSpace {
            bytes: [0; CONFIG_SPACE_SIZE],
            writable: [0; CONFIG_SPACE_SIZE],
            bars: [None; BAR_COUNT],
            next_capability: FIRST_CAPABILITY,
            link_to_next: CAPABILITIES_POINTER,
        };
        space.set_u16(VENDOR_ID, id.vendor);
        space.set_u16(DEVICE_ID, id.device);
        space.bytes[REVISION_ID] = id.revision;
        space.bytes[CLASS_CODE..CLASS_CODE + 3].copy_from_slice(&id.class.to_le_bytes()[..3]);
        space.set_u16(SUBSYSTEM_VENDOR_ID, id.subsystem_vendor);
        space.set_u16(SUBSYSTEM_ID, id.subsystem_id);
        space.set_writable(COMMAND, &COMMAND_WRITABLE.to_le_bytes());
        // The interrupt line is scratch space for the OS; the pin stays 0 (no INTx).
        space.set_writable(INTERRUPT_LINE, &[0xff]);
        space
    }

    /// A 64-bit, non-prefetchable memory BAR at `index` and `index + 1`, of `size`
    /// bytes (a power of two) at `addr` (aligned to `size`).
    pub fn add_memory_bar64(&mut self, index: usize, addr: u64, size: u64) {
        assert!(
            index + 1 < BAR_COUNT,
            "BAR {index} has no room for a 64-bit BAR"
        );
        assert!(size.is_power_of_two() && size >= 16, "BAR size {size:#x}");
        assert_eq!(addr % size, 0, "BAR at {addr:#x} not aligned to its size");
        assert!(self.bars[index].is_none() && !self.is_upper_half(index));
        self.bars[index] = Some(size);
        let mask = !(size - 1);
        let low = BAR0 + 4 * index;
        self.set_u32(low, addr as u32 | BAR_MEM64);
        self.set_u32(low + 4, (addr >> 32) as u32);
        self.set_writable(low, &((mask as u32) & !0xf).to_le_bytes());
        self.set_writable(low + 4, &((mask >> 32) as u32).to_le_bytes());
    }

    fn is_upper_half(&self, index: usize) -> bool {
        index > 0 && self.bars[index - 1].is_some()
    }

    /// Append a capability: `id`, the link to the next one, then `body`. Returns its
    /// offset. Its bytes are read-only until [`ConfigSpace::set_writable`].
    pub fn add_capability(&mut self, id: u8, body: &[u8]) -> usize {
        let offset = self.next_capability;
        let end = offset + 2 + body.len();
        assert!(
            end <= CONFIG_SPACE_SIZE,
            "capabilities overflow config space"
        );
        self.bytes[offset] = id;
        self.bytes[offset + 1] = 0;
        self.bytes[offset + 2..end].copy_from_slice(body);
        self.bytes[self.link_to_next] = offset as u8;
        self.link_to_next = offset + 1;
        self.next_capability = end.next_multiple_of(4);
        let status = self.u16_at(STATUS) | STATUS_CAPABILITY_LIST;
        self.set_u16(STATUS, status);
        offset
    }

    /// Let the guest write the bits set in `mask`, from `offset` on.
    pub fn set_writable(&mut self, offset: usize, mask: &[u8]) {
        self.writable[offset..offset + mask.len()].copy_from_slice(mask);
    }

    /// A guest read; past the conventional space reads 0.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset + i as u64)
                .ok()
                .and_then(|at| self.bytes.get(at).copied())
                .unwrap_or(0);
        }
    }

    /// A guest write: only writable bits change.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &value) in data.iter().enumerate() {
            let Some(at) = usize::try_from(offset + i as u64)
                .ok()
                .filter(|&at| at < CONFIG_SPACE_SIZE)
            else {
                continue;
            };
            let mask = self.writable[at];
            self.bytes[at] = (self.bytes[at] & !mask) | (value & mask);
        }
    }

    pub fn u8_at(&self, offset: usize) -> u8 {
        self.bytes[offset]
    }

    pub fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    pub fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.bytes[offset..offset + 4].try_into().unwrap())
    }

    /// Device-side stores, past the write mask.
    pub fn set_u8(&mut self, offset: usize, value: u8) {
        self.bytes[offset] = value;
    }

    pub fn set_u16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    pub fn set_u32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// The bytes as the guest sees them, for a snapshot.
    pub fn save(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// Takes on saved bytes. Every bit the guest cannot write (identity, BAR types,
    /// the capability list) must be what this function has, or the snapshot is of
    /// another device: the error names the first offset that differs.
    pub fn restore(&mut self, saved: &[u8]) -> Result<(), String> {
        if saved.len() != CONFIG_SPACE_SIZE {
            return Err(format!(
                "configuration space of {} bytes, not {CONFIG_SPACE_SIZE}",
                saved.len()
            ));
        }
        let differs = (0..CONFIG_SPACE_SIZE)
            .find(|&at| (saved[at] ^ self.bytes[at]) & !self.writable[at] != 0);
        if let Some(at) = differs {
            return Err(format!(
                "configuration space differs at {at:#04x} ({:#04x} saved, {:#04x} here): \
                 another kind of device",
                saved[at], self.bytes[at]
            ));
        }
        self.bytes.copy_from_slice(saved);
        Ok(())
    }

    /// The address BAR `index` holds now (whatever the command register says).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        self.bars[index]?;
        let low = BAR0 + 4 * index;
        let lo = u64::from(self.u32_at(low) & !0xf);
        let hi = u64::from(self.u32_at(low + 4));
        Some(hi << 32 | lo)
    }

    /// The memory BARs the function answers: none while memory decode is off.
    pub fn mapped_bars(&self) -> Vec<BarMapping> {
        if self.u16_at(COMMAND) & COMMAND_MEMORY == 0 {
            return Vec::new();
        }
        (0..BAR_COUNT)
            .filter_map(|index| {
                Some(BarMapping {
                    index: index as u8,
                    addr: self.bar_address(index)?,
                    size: self.bars[index]?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> ConfigSpace {
        ConfigSpace::new(&Identity {
            vendor: 0x1af4,
            device: 0x1042,
            revision: 1,
            class: 0x01_80_00,
            subsystem_vendor: 0x1af4,
            subsystem_id: 0x1042,
        })
    }

    fn read32(s: &ConfigSpace, offset: u64) -> u32 {
        let mut b = [0; 4];
        s.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn write32(s: &mut ConfigSpace, offset: u64, value: u32) {
        s.write(offset, &value.to_le_bytes());
    }

    #[test]
    fn header_decodes_identity() {
        let s = space();
        assert_eq!(read32(&s, 0), 0x1042_1af4);
        // Revision 1, class 01 subclass 80 prog-if 00.
        assert_eq!(read32(&s, 8), 0x0180_0001);
        assert_eq!(read32(&s, 0x2c), 0x1042_1af4);
        // No capabilities yet, no INTx pin.
        assert_eq!(read32(&s, 0x34), 0);
        assert_eq!(s.u8_at(INTERRUPT_PIN), 0);
        // Extended space reads zero.
        assert_eq!(read32(&s, 0x100), 0);
        assert_eq!(read32(&s, 0xffc), 0);
    }

    #[test]
    fn only_writable_bits_change() {
        let mut s = space();
        write32(&mut s, 0, 0xffff_ffff);
        assert_eq!(read32(&s, 0), 0x1042_1af4);
        // Command takes decode/master/INTx-disable; status stays read-only.
        write32(&mut s, COMMAND as u64, 0xffff_ffff);
        assert_eq!(s.u16_at(COMMAND), 0x0407);
        assert_eq!(s.u16_at(STATUS), 0);
        s.write(INTERRUPT_LINE as u64, &[11, 0xff]);
        assert_eq!(s.u8_at(INTERRUPT_LINE), 11);
        assert_eq!(s.u8_at(INTERRUPT_PIN), 0);
        // Byte and word accesses land where they should.
        s.write(COMMAND as u64 + 1, &[0x04]);
        assert_eq!(s.u16_at(COMMAND), 0x0407);
        let mut word = [0; 2];
        s.read(2, &mut word);
        assert_eq!(u16::from_le_bytes(word), 0x1042);
    }

    #[test]
    fn bar_sizing_reads_back_the_size_mask() {
        let mut s = space();
        s.add_memory_bar64(0, 0xc000_8000, 0x8000);
        assert_eq!(read32(&s, 0x10), 0xc000_8004);
        assert_eq!(read32(&s, 0x14), 0);
        // The OS sizes: all-ones, read back, restore.
        write32(&mut s, 0x10, 0xffff_ffff);
        write32(&mut s, 0x14, 0xffff_ffff);
        assert_eq!(read32(&s, 0x10), 0xffff_8004);
        assert_eq!(read32(&s, 0x14), 0xffff_ffff);
        write32(&mut s, 0x10, 0xd000_0000);
        write32(&mut s, 0x14, 0x1);
        assert_eq!(s.bar_address(0), Some(0x1_d000_0000));
        // Low bits never stick: the BAR stays aligned.
        write32(&mut s, 0x10, 0xd000_1234);
        assert_eq!(s.bar_address(0), Some(0x1_d000_0000));
        // Unimplemented BARs and the ROM BAR size to 0 (absent).
        for reg in [0x18, 0x1c, 0x20, 0x24, 0x30] {
            write32(&mut s, reg, 0xffff_ffff);
            assert_eq!(read32(&s, reg), 0, "{reg:#x}");
        }
        assert_eq!(s.bar_address(2), None);
    }

    #[test]
    fn bars_are_mapped_only_with_memory_decode() {
        let mut s = space();
        s.add_memory_bar64(2, 0xc001_0000, 0x1000);
        assert!(s.mapped_bars().is_empty());
        s.write(COMMAND as u64, &[COMMAND_MEMORY as u8]);
        assert_eq!(
            s.mapped_bars(),
            vec![BarMapping {
                index: 2,
                addr: 0xc001_0000,
                size: 0x1000
            }]
        );
    }

    #[test]
    fn capabilities_form_a_list() {
        let mut s = space();
        let first = s.add_capability(0x09, &[4, 1, 2]);
        let second = s.add_capability(0x11, &[0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(first, 0x40);
        assert_eq!(second, 0x48);
        assert_eq!(
            s.u16_at(STATUS) & STATUS_CAPABILITY_LIST,
            STATUS_CAPABILITY_LIST
        );
        let mut walked = Vec::new();
        let mut at = s.u8_at(CAPABILITIES_POINTER) as usize;
        while at != 0 {
            walked.push((at, s.u8_at(at)));
            at = s.u8_at(at + 1) as usize;
        }
        assert_eq!(walked, vec![(0x40, 0x09), (0x48, 0x11)]);
        // Read-only until made writable.
        s.write(0x42, &[0xff]);
        assert_eq!(s.u8_at(0x42), 4);
        s.set_writable(0x42, &[0x0f]);
        s.write(0x42, &[0xff]);
        assert_eq!(s.u8_at(0x42), 0x0f);
    }
}
