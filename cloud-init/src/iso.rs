//! A compact ISO 9660 (ECMA-119) writer with Rock Ridge names.
//!
//! cloud-init's NoCloud datasource finds its seed as a filesystem labelled
//! `cidata`; an ISO 9660 image is what every guest kernel can read. Level-1
//! names are 8.3 upper case, so the real names (`meta-data`, ...) travel in
//! Rock Ridge `NM` entries, which Linux, isoinfo and xorriso all honour.
//!
//! Layout (2048-byte sectors): 0-15 system area, 16 primary volume
//! descriptor, 17 terminator, 18 L path table, 19 M path table, 20 SUSP
//! continuation area (holds `ER`), 21.. root directory, then file data.
//! Output is a pure function of the inputs: no clocks, no randomness.

use std::io::{self, Write};

const SECTOR: usize = 2048;
const PVD_SECTOR: u32 = 16;
const L_PATH_SECTOR: u32 = 18;
const M_PATH_SECTOR: u32 = 19;
const CE_SECTOR: u32 = 20;
const ROOT_SECTOR: u32 = 21;
/// Directory records cannot exceed 255 bytes, so names are bounded.
const MAX_NAME: usize = 150;
/// Fixed directory-record timestamp (1970-01-01 00:00:00 UTC) for reproducible images.
const RECORD_DATE: [u8; 7] = [70, 1, 1, 0, 0, 0, 0];
/// ECMA-119 8.4.26.1 "date not specified": sixteen '0' digits and a zero zone.
const NO_DATE: [u8; 17] = *b"0000000000000000\0";

const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DES: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

const MODE_DIR: u32 = 0o040_555;
const MODE_FILE: u32 = 0o100_444;

/// Writes an ISO 9660 image holding `files` (name, contents) flat in the root.
///
/// Names must be unique, non-empty, at most 150 bytes, without `/` or NUL;
/// each file must be smaller than 4 GiB (the format's 32-bit size field).
pub fn write_iso9660(
    volume_label: &str,
    files: &[(&str, &[u8])],
    out: &mut impl Write,
) -> io::Result<()> {
    if volume_label.len() > 32 {
        return Err(invalid(format!(
            "volume label {volume_label:?} exceeds 32 bytes"
        )));
    }
    let mut entries = plan_entries(files)?;

    // Record lengths do not depend on extents, so a first packing with
    // placeholder extents sizes the root directory; file data follows it.
    let dir_sectors = sectors(root_dir(&entries, 0).len());
    let mut next = ROOT_SECTOR + dir_sectors;
    for e in &mut entries {
        // Empty files own no sectors; extent 0 is the customary placeholder.
        if !e.data.is_empty() {
            e.extent = next;
            next = next
                .checked_add(sectors(e.data.len()))
                .ok_or_else(|| invalid("image exceeds the 32-bit sector count".into()))?;
        }
    }
    let total_sectors = next;
    let dir_bytes = dir_sectors * SECTOR as u32;

    // System area is unused; PVD follows at sector 16.
    out.write_all(&[0u8; SECTOR * PVD_SECTOR as usize])?;
    out.write_all(&pvd(volume_label, total_sectors, dir_bytes))?;
    out.write_all(&terminator())?;
    out.write_all(&path_table(u32::to_le_bytes, u16::to_le_bytes))?;
    out.write_all(&path_table(u32::to_be_bytes, u16::to_be_bytes))?;
    out.write_all(&pad_sector(er_entry()))?;
    out.write_all(&root_dir(&entries, dir_bytes))?;

    for e in &entries {
        out.write_all(e.data)?;
        let tail = e.data.len() % SECTOR;
        if tail != 0 {
            out.write_all(&vec![0u8; SECTOR - tail])?;
        }
    }
    out.flush()
}

struct Entry<'a> {
    iso_name: Vec<u8>,
    name: &'a str,
    data: &'a [u8],
    extent: u32,
}

/// Validates names, derives unique level-1 identifiers and sorts the
/// entries as ECMA-119 9.3 requires (by identifier).
fn plan_entries<'a>(files: &[(&'a str, &'a [u8])]) -> io::Result<Vec<Entry<'a>>> {
    let mut entries: Vec<Entry<'a>> = Vec::with_capacity(files.len());
    for &(name, data) in files {
        if name.is_empty() || name.len() > MAX_NAME || name.contains(['/', '\0']) {
            return Err(invalid(format!("invalid file name {name:?}")));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(invalid(format!("file {name:?} is 4 GiB or larger")));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(invalid(format!("duplicate file name {name:?}")));
        }
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, e),
            _ => (name, ""),
        };
        let mut base = d_chars(stem, 8);
        let ext = d_chars(ext, 3);
        if base.is_empty() {
            base.push(b'_');
        }
        let mut iso_name = level1(&base, &ext);
        let mut n = 1u32;
        while entries.iter().any(|e| e.iso_name == iso_name) {
            // Collisions get a numeric tail, keeping the stem within 8 chars.
            let tag = n.to_string().into_bytes();
            let mut b = base.clone();
            b.truncate(8 - tag.len());
            b.extend_from_slice(&tag);
            iso_name = level1(&b, &ext);
            n += 1;
        }
        entries.push(Entry {
            iso_name,
            name,
            data,
            extent: 0,
        });
    }
    entries.sort_by(|a, b| a.iso_name.cmp(&b.iso_name));
    Ok(entries)
}

/// Maps to ISO d-characters (A-Z, 0-9, '_'), truncated to `max`.
fn d_chars(s: &str, max: usize) -> Vec<u8> {
    s.bytes()
        .map(|c| match c.to_ascii_uppercase() {
            c @ (b'A'..=b'Z' | b'0'..=b'9') => c,
            _ => b'_',
        })
        .take(max)
        .collect()
}

fn level1(base: &[u8], ext: &[u8]) -> Vec<u8> {
    [base, b".", ext, b";1"].concat()
}

fn sectors(len: usize) -> u32 {
    len.div_ceil(SECTOR) as u32
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Both-byte-order fields (ECMA-119 7.2.3 / 7.3.3): little-endian then big-endian.
fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

fn both16(v: u16) -> [u8; 4] {
    let [l0, l1] = v.to_le_bytes();
    [l0, l1, l1, l0]
}

/// ECMA-119 9.1 directory record with a System Use area of SUSP entries.
fn dir_record(id: &[u8], extent: u32, size: u32, is_dir: bool, system_use: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both32(extent));
    r[10..18].copy_from_slice(&both32(size));
    r[18..25].copy_from_slice(&RECORD_DATE);
    r[25] = if is_dir { 0x02 } else { 0 };
    r[28..32].copy_from_slice(&both16(1)); // volume sequence number
    r[32] = id.len() as u8;
    r.extend_from_slice(id);
    if r.len() % 2 == 1 {
        r.push(0); // padding so the System Use area starts even
    }
    r.extend_from_slice(system_use);
    if r.len() % 2 == 1 {
        r.push(0); // record length must be even
    }
    r[0] = r.len() as u8;
    r
}

/// Packs ".", ".." and one record per file into whole sectors; a record may
/// not straddle a sector boundary (ECMA-119 6.8.1.1).
fn root_dir(entries: &[Entry], dir_bytes: u32) -> Vec<u8> {
    let mut dir = Vec::new();
    let records = [root_record(true, dir_bytes), root_record(false, dir_bytes)];
    for rec in records.into_iter().chain(entries.iter().map(file_record)) {
        let room = SECTOR - dir.len() % SECTOR;
        if rec.len() > room {
            dir.resize(dir.len() + room, 0);
        }
        dir.extend_from_slice(&rec);
    }
    dir.resize(sectors(dir.len()) as usize * SECTOR, 0);
    dir
}

/// "." carries SP (announces SUSP) and a CE pointing at the ER entry, which
/// does not fit in the 255-byte record but is what makes Linux enable Rock Ridge.
fn root_record(is_dot: bool, dir_bytes: u32) -> Vec<u8> {
    let mut su = Vec::new();
    if is_dot {
        su.extend_from_slice(&[b'S', b'P', 7, 1, 0xBE, 0xEF, 0]);
    }
    su.extend_from_slice(&px(MODE_DIR, 2));
    if is_dot {
        su.extend_from_slice(&[b'C', b'E', 28, 1]);
        su.extend_from_slice(&both32(CE_SECTOR));
        su.extend_from_slice(&both32(0));
        su.extend_from_slice(&both32(er_entry().len() as u32));
    }
    let id: &[u8] = if is_dot { b"\0" } else { b"\x01" };
    dir_record(id, ROOT_SECTOR, dir_bytes, true, &su)
}

fn file_record(e: &Entry) -> Vec<u8> {
    let mut su = px(MODE_FILE, 1).to_vec();
    su.extend_from_slice(&[b'N', b'M', (5 + e.name.len()) as u8, 1, 0]);
    su.extend_from_slice(e.name.as_bytes());
    dir_record(&e.iso_name, e.extent, e.data.len() as u32, false, &su)
}

/// RRIP 1991A PX entry: mode, link count, uid 0, gid 0 (no serial number).
fn px(mode: u32, links: u32) -> [u8; 36] {
    let mut p = [0u8; 36];
    p[..4].copy_from_slice(&[b'P', b'X', 36, 1]);
    p[4..12].copy_from_slice(&both32(mode));
    p[12..20].copy_from_slice(&both32(links));
    p[20..28].copy_from_slice(&both32(0));
    p[28..36].copy_from_slice(&both32(0));
    p
}

fn er_entry() -> Vec<u8> {
    let len = 8 + ER_ID.len() + ER_DES.len() + ER_SRC.len();
    let mut e = vec![b'E', b'R', len as u8, 1];
    e.extend_from_slice(&[ER_ID.len() as u8, ER_DES.len() as u8, ER_SRC.len() as u8, 1]);
    e.extend_from_slice(ER_ID);
    e.extend_from_slice(ER_DES);
    e.extend_from_slice(ER_SRC);
    e
}

fn pad_sector(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(SECTOR, 0);
    v
}

/// Fills a string field with `s` padded by spaces, as ECMA-119 requires.
fn put_str(buf: &mut [u8], s: &[u8]) {
    buf.fill(b' ');
    buf[..s.len()].copy_from_slice(s);
}

/// Primary volume descriptor (ECMA-119 8.4).
fn pvd(label: &str, total_sectors: u32, root_bytes: u32) -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = 1;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    put_str(&mut d[8..40], b""); // system identifier
    put_str(&mut d[40..72], label.as_bytes()); // what blkid reports as LABEL
    d[80..88].copy_from_slice(&both32(total_sectors));
    d[120..124].copy_from_slice(&both16(1)); // volume set size
    d[124..128].copy_from_slice(&both16(1)); // volume sequence number
    d[128..132].copy_from_slice(&both16(SECTOR as u16));
    d[132..140].copy_from_slice(&both32(PATH_TABLE_LEN as u32));
    d[140..144].copy_from_slice(&L_PATH_SECTOR.to_le_bytes());
    d[148..152].copy_from_slice(&M_PATH_SECTOR.to_be_bytes());
    let root = dir_record(b"\0", ROOT_SECTOR, root_bytes, true, &[]);
    d[156..190].copy_from_slice(&root);
    put_str(&mut d[190..702], b""); // volume set, publisher, preparer, application ids
    put_str(&mut d[702..813], b""); // copyright, abstract, bibliographic file ids
    for field in d[813..881].chunks_mut(17) {
        field.copy_from_slice(&NO_DATE);
    }
    d[881] = 1; // file structure version
    d
}

fn terminator() -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = 255;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d
}

/// A root-only path table record is 10 bytes (ECMA-119 9.4).
const PATH_TABLE_LEN: usize = 10;

fn path_table(u32b: fn(u32) -> [u8; 4], u16b: fn(u16) -> [u8; 2]) -> Vec<u8> {
    let mut t = vec![1u8, 0]; // identifier length, extended attribute length
    t.extend_from_slice(&u32b(ROOT_SECTOR));
    t.extend_from_slice(&u16b(1)); // parent directory number: root is its own parent
    t.extend_from_slice(&[0, 0]); // root identifier byte, then padding
    debug_assert_eq!(t.len(), PATH_TABLE_LEN);
    pad_sector(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        write_iso9660("cidata", files, &mut out).unwrap();
        out
    }

    #[test]
    fn level1_names_are_unique_d_characters() {
        let files: &[(&str, &[u8])] = &[
            ("meta-data", b"a"),
            ("meta-database", b"b"),
            ("user-data", b""),
            ("x.tar.gz", b"c"),
            (".hidden", b"d"),
        ];
        let names: Vec<Vec<u8>> = plan_entries(files)
            .unwrap()
            .into_iter()
            .map(|e| e.iso_name)
            .collect();
        let as_str: Vec<&str> = names
            .iter()
            .map(|n| std::str::from_utf8(n).unwrap())
            .collect();
        assert_eq!(
            as_str,
            [
                "META_DA1.;1",
                "META_DAT.;1",
                "USER_DAT.;1",
                "X_TAR.GZ;1",
                "_HIDDEN.;1"
            ]
        );
    }

    #[test]
    fn layout_and_descriptors() {
        let img = image(&[("meta-data", b"instance-id: x\n"), ("big", &[7u8; 5000])]);
        // 21 fixed sectors + 1 root dir sector + 1 + 3 data sectors.
        assert_eq!(img.len(), 26 * SECTOR);
        let pvd = &img[16 * SECTOR..17 * SECTOR];
        assert_eq!(&pvd[..7], b"\x01CD001\x01");
        assert_eq!(&pvd[40..72], format!("{:32}", "cidata").as_bytes());
        assert_eq!(&pvd[80..88], both32(26));
        assert_eq!(&img[17 * SECTOR..17 * SECTOR + 7], b"\xffCD001\x01");
    }

    #[test]
    fn rejects_bad_names() {
        let mut out = Vec::new();
        for files in [
            &[("", &b""[..])][..],
            &[("a/b", &b""[..])],
            &[("a", &b""[..]), ("a", &b""[..])],
        ] {
            let err = write_iso9660("cidata", files, &mut out).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn many_files_spill_into_more_directory_sectors() {
        let names: Vec<String> = (0..40).map(|i| format!("file-number-{i:03}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let img = image(&files);
        let root_size = u32::from_le_bytes(img[16 * SECTOR + 166..][..4].try_into().unwrap());
        assert!(root_size > SECTOR as u32);
        assert_eq!(root_size % SECTOR as u32, 0);
    }
}
