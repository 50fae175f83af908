//! The qcow2 header (QEMU's `docs/interop/qcow2.txt`), the layout constants, and the
//! errors an image can have.

pub(crate) const MAGIC: &[u8] = b"QFI\xfb";

/// Largest virtual size accepted: ext4's limit for one file.
pub(super) const MAX_VIRTUAL_SIZE: u64 = 16 << 40;
/// QEMU's own limit for the L1 table.
pub(super) const MAX_L1_BYTES: u64 = 32 << 20;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

pub(super) const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub(super) const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub(super) const L2_COMPRESSED: u64 = 1 << 62;
pub(super) const L2_ZERO: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("bad magic {0:02x?} (a qcow2 image starts with \"QFI\\xfb\")")]
    BadMagic([u8; 4]),
    #[error("the header is cut short ({0} bytes)")]
    ShortHeader(u64),
    #[error("version {0} is not supported (only 2 and 3)")]
    Version(u32),
    #[error("cluster_bits {0} is out of range (9 to 21)")]
    ClusterBits(u32),
    #[error("header length {0} is invalid")]
    HeaderLength(u32),
    #[error("it has a backing file ({0:?}): hvbox needs a self-contained image; flatten it with `qemu-img convert -O qcow2 IMAGE FLAT.qcow2`")]
    BackingFile(String),
    #[error("it is encrypted ({0}): hvbox cannot use encrypted images")]
    Encrypted(&'static str),
    #[error("its data is in an external data file: hvbox needs a self-contained image")]
    ExternalDataFile,
    #[error("it is marked corrupt: check it with `qemu-img check`")]
    MarkedCorrupt,
    #[error("it uses incompatible features hvbox does not know (bits {0:#x})")]
    UnknownFeatures(u64),
    #[error("unknown compression type {0}")]
    CompressionType(u8),
    #[error("virtual size {size} bytes is larger than hvbox supports ({MAX_VIRTUAL_SIZE} bytes)")]
    TooLarge { size: u64 },
    #[error("the L1 table has {entries} entries; the virtual size needs {needed}")]
    L1TooSmall { entries: u64, needed: u64 },
    #[error("the L1 table is {bytes} bytes, more than the {MAX_L1_BYTES} a qcow2 image may have")]
    L1TooLarge { bytes: u64 },
    #[error("{what} at offset {offset:#x} is not aligned to the {cluster_size}-byte clusters")]
    Misaligned {
        what: String,
        offset: u64,
        cluster_size: u64,
    },
    #[error("{what} at offset {offset:#x} ({len} bytes) lies beyond the end of the file ({file_len} bytes)")]
    BeyondEof {
        what: String,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    #[error("L2 table loop: L1 entries {first} and {second} both point at the L2 table at offset {offset:#x}")]
    SharedL2 {
        first: u64,
        second: u64,
        offset: u64,
    },
    #[error("L2 table loop: {what} at offset {offset:#x} points into {target}")]
    IntoMetadata {
        what: String,
        offset: u64,
        target: String,
    },
    #[error("aliased clusters: guest offsets {first:#x} and {second:#x} both point at the stored cluster at offset {offset:#x} (each guest cluster needs its own)")]
    Aliased {
        first: u64,
        second: u64,
        offset: u64,
    },
    #[error("the compressed cluster for guest offset {guest:#x} does not decompress: {detail}")]
    Decompress { guest: u64, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    Zlib,
    Zstd,
}

#[derive(Debug, Clone)]
pub(super) struct Header {
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u64,
    pub l1_offset: u64,
    pub extended_l2: bool,
    pub compression: Compression,
}

/// How much of the file start is read for the header.
pub(super) const HEADER_READ: u64 = 4096;

impl Header {
    pub(super) fn parse(b: &[u8]) -> Result<Header, Qcow2Error> {
        let be32 = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        let be64 = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
        if b.len() < 4 || &b[..4] != MAGIC {
            let mut magic = [0u8; 4];
            let n = b.len().min(4);
            magic[..n].copy_from_slice(&b[..n]);
            return Err(Qcow2Error::BadMagic(magic));
        }
        if b.len() < 72 {
            return Err(Qcow2Error::ShortHeader(b.len() as u64));
        }
        let version = be32(4);
        if !(2..=3).contains(&version) {
            return Err(Qcow2Error::Version(version));
        }
        let backing_offset = be64(8);
        let backing_size = be32(16) as usize;
        let cluster_bits = be32(20);
        let size = be64(24);
        let crypt = be32(32);
        let l1_size = u64::from(be32(36));
        let l1_offset = be64(40);
        if backing_offset != 0 {
            let start = usize::try_from(backing_offset).unwrap_or(usize::MAX);
            let name = b
                .get(start..start.saturating_add(backing_size.min(1023)))
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_else(|| format!("name at offset {backing_offset:#x}"));
            return Err(Qcow2Error::BackingFile(name));
        }
        match crypt {
            0 => {}
            1 => return Err(Qcow2Error::Encrypted("AES")),
            2 => return Err(Qcow2Error::Encrypted("LUKS")),
            _ => return Err(Qcow2Error::Encrypted("unknown method")),
        }
        if !(9..=21).contains(&cluster_bits) {
            return Err(Qcow2Error::ClusterBits(cluster_bits));
        }
        let mut extended_l2 = false;
        let mut compression = Compression::Zlib;
        if version == 3 {
            if b.len() < 104 {
                return Err(Qcow2Error::ShortHeader(b.len() as u64));
            }
            let incompat = be64(72);
            let header_length = be32(100);
            if header_length < 104 || header_length % 8 != 0 {
                return Err(Qcow2Error::HeaderLength(header_length));
            }
            if incompat & INCOMPAT_CORRUPT != 0 {
                return Err(Qcow2Error::MarkedCorrupt);
            }
            if incompat & INCOMPAT_DATA_FILE != 0 {
                return Err(Qcow2Error::ExternalDataFile);
            }
            let known = INCOMPAT_DIRTY | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
            if incompat & !known != 0 {
                return Err(Qcow2Error::UnknownFeatures(incompat & !known));
            }
            extended_l2 = incompat & INCOMPAT_EXTL2 != 0;
            if header_length > 104 {
                compression = match b.get(104) {
                    Some(0) => Compression::Zlib,
                    Some(1) => Compression::Zstd,
                    Some(&t) => return Err(Qcow2Error::CompressionType(t)),
                    None => return Err(Qcow2Error::ShortHeader(b.len() as u64)),
                };
            }
        }
        if size > MAX_VIRTUAL_SIZE {
            return Err(Qcow2Error::TooLarge { size });
        }
        let header = Header {
            cluster_bits,
            size,
            l1_size,
            l1_offset,
            extended_l2,
            compression,
        };
        let needed = size.div_ceil(header.cluster_size() * header.l2_entries());
        if l1_size < needed {
            return Err(Qcow2Error::L1TooSmall {
                entries: l1_size,
                needed,
            });
        }
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(Qcow2Error::L1TooLarge { bytes: l1_size * 8 });
        }
        if l1_offset % header.cluster_size() != 0 || l1_offset == 0 && l1_size > 0 {
            return Err(Qcow2Error::Misaligned {
                what: "the L1 table".into(),
                offset: l1_offset,
                cluster_size: header.cluster_size(),
            });
        }
        Ok(header)
    }

    pub(super) fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    pub(super) fn l2_entry_bytes(&self) -> u64 {
        if self.extended_l2 {
            16
        } else {
            8
        }
    }

    pub(super) fn l2_entries(&self) -> u64 {
        self.cluster_size() / self.l2_entry_bytes()
    }
}
