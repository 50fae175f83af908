//! Bounds on an MBR, checked before the mbrman crate reads it. Root in the
//! guest writes the table, and the crate trusts it: a used partition at
//! sector 0 makes it panic (finding the table's alignment), it adds logical
//! partitions' sector numbers in 32 bits without checking for overflow, and it
//! follows the chain of extended boot records as far as the chain goes.

use std::fs::File;
use std::os::unix::fs::FileExt;

const SECTOR: u64 = 512;
const ENTRIES: usize = 446;
/// Linux names at most 256 partitions of a disk; real tables have a handful.
pub(crate) const MAX_LOGICAL: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Entry {
    sys: u8,
    start: u32,
}

/// `Ok` when mbrman can read the table without panicking, or when there is no
/// table (mbrman then fails by itself); else what is wrong, and where.
pub(crate) fn check(file: &File) -> Result<(), String> {
    let Some(mbr) = read_table(file, 0) else {
        return Ok(());
    };
    for (i, e) in mbr.iter().enumerate() {
        if e.sys != 0 && e.start == 0 {
            return Err(format!(
                "MBR partition {} starts at sector 0, over the partition table",
                i + 1
            ));
        }
    }
    let Some(extended) = mbr.iter().find(|e| is_extended(e.sys)) else {
        return Ok(());
    };
    let mut relative = 0u32;
    for links in 1.. {
        let at = u64::from(extended.start) + u64::from(relative);
        let Some([logical, next, ..]) = read_table(file, at) else {
            return Ok(());
        };
        if links > MAX_LOGICAL {
            return Err(format!(
                "the extended partition chains more than {MAX_LOGICAL} logical partitions"
            ));
        }
        if logical.sys != 0 && u64::from(logical.start) + at > u64::from(u32::MAX) {
            return Err(format!(
                "logical partition {} lies past the 2 TiB an MBR can address \
                 (its boot record is at sector {at})",
                links + 4
            ));
        }
        // mbrman stops at a link that does not move forward, or at the last.
        if next.start == 0 || next.start <= relative {
            return Ok(());
        }
        if extended.start.checked_add(next.start).is_none() {
            return Err(format!(
                "the extended boot record after sector {at} lies past the 2 TiB an MBR \
                 can address"
            ));
        }
        relative = next.start;
    }
    unreachable!("the loop returns")
}

fn is_extended(sys: u8) -> bool {
    matches!(sys, 0x05 | 0x0f | 0x85 | 0xc5)
}

/// The four entries of the table in `sector`, if it ends with the 0x55AA signature.
fn read_table(file: &File, sector: u64) -> Option<[Entry; 4]> {
    let mut buf = [0u8; SECTOR as usize];
    file.read_exact_at(&mut buf, sector.checked_mul(SECTOR)?)
        .ok()?;
    if buf[510..] != [0x55, 0xaa] {
        return None;
    }
    Some(std::array::from_fn(|i| {
        let e = &buf[ENTRIES + 16 * i..ENTRIES + 16 * (i + 1)];
        Entry {
            sys: e[4],
            start: u32::from_le_bytes(e[8..12].try_into().unwrap()),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition entry: type, first sector, sectors.
    type Part = (u8, u32, u32);

    /// A 1 MiB disk with partition tables at the given sectors.
    fn disk(tables: &[(u64, &[Part])]) -> File {
        let file = tempfile::tempfile().unwrap();
        file.set_len(1 << 20).unwrap();
        for (sector, entries) in tables {
            let mut buf = [0u8; 512];
            for (i, &(sys, start, len)) in entries.iter().enumerate() {
                let e = &mut buf[ENTRIES + 16 * i..];
                e[4] = sys;
                e[8..12].copy_from_slice(&start.to_le_bytes());
                e[12..16].copy_from_slice(&len.to_le_bytes());
            }
            buf[510..].copy_from_slice(&[0x55, 0xaa]);
            file.write_all_at(&buf, sector * 512).unwrap();
        }
        file
    }

    #[test]
    fn accepts_real_tables() {
        assert_eq!(check(&disk(&[])), Ok(()));
        assert_eq!(check(&disk(&[(0, &[(0x83, 2048, 1024)])])), Ok(()));
        // An extended partition at 100 with two logical partitions.
        let file = disk(&[
            (0, &[(0x83, 1, 50), (0x05, 100, 1000)]),
            (100, &[(0x83, 1, 10), (0x05, 20, 30)]),
            (120, &[(0x83, 1, 10)]),
        ]);
        assert_eq!(check(&file), Ok(()));
        mbrman::MBR::read_from(&mut &file, 512).unwrap();
    }

    /// Found by the disk_boot fuzz target: mbrman panicked on this table.
    #[test]
    fn a_partition_at_sector_0_is_refused() {
        let file = disk(&[(0, &[(0, 0, 0), (0x83, 0, 16)])]);
        assert_eq!(
            check(&file),
            Err("MBR partition 2 starts at sector 0, over the partition table".into())
        );
    }

    #[test]
    fn a_long_chain_of_logical_partitions_is_refused() {
        let mut tables: Vec<(u64, Vec<Part>)> = vec![(0, vec![(0x05, 10, 2000)])];
        for i in 0..200u32 {
            tables.push((10 + u64::from(i), vec![(0x83, 1, 1), (0x05, i + 1, 1)]));
        }
        let tables: Vec<(u64, &[Part])> = tables.iter().map(|(s, e)| (*s, e.as_slice())).collect();
        assert_eq!(
            check(&disk(&tables)),
            Err("the extended partition chains more than 128 logical partitions".into())
        );
    }

    #[test]
    fn logical_partitions_past_32_bits_are_refused() {
        let file = disk(&[(0, &[(0x05, 10, 100)]), (10, &[(0x83, u32::MAX - 5, 1)])]);
        assert!(check(&file)
            .unwrap_err()
            .contains("logical partition 5 lies past"));
    }
}
