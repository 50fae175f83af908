//! The state file's frame: a header page, guest memory (see [`super::memory`]) from
//! the second page on, then the machine's state as JSON. The header is written last,
//! so a file cut short anywhere has none; it holds the format version, where the
//! JSON is, and SHA-256 digests of the JSON and of the header itself.
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | 0..8   | magic `HVBOXVM\0`                                       |
//! | 8..12  | format version (little endian), [`FORMAT`]              |
//! | 12..16 | zero                                                    |
//! | 16..24 | offset of the JSON                                      |
//! | 24..32 | length of the JSON (at most [`MAX_METADATA`])           |
//! | 32..64 | SHA-256 of the JSON                                     |
//! | 64..96 | SHA-256 of bytes 0..64                                  |

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const MAGIC: &[u8; 8] = b"HVBOXVM\0";
/// Bumped whenever what a state holds or means changes: a state of another format
/// is refused, never guessed at.
pub const FORMAT: u32 = 1;
/// Memory starts here, on the second page.
pub const MEMORY_START: u64 = 4096;
/// A machine's JSON state is tens of KiB per vCPU; anything near this is not ours.
pub const MAX_METADATA: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("writing the state file: {0}")]
    Write(io::Error),
    #[error("reading the state file: {0}")]
    Read(io::Error),
    #[error("this is not an hvbox machine state (no HVBOXVM header; the save did not finish?)")]
    NotAState,
    #[error("the state's header is damaged (its checksum does not match)")]
    DamagedHeader,
    #[error("the state is in format {0}, and this hvbox reads format {FORMAT} only")]
    Format(u32),
    #[error("the state's header points outside the file ({offset} + {len} bytes, file {file_len} bytes)")]
    OutOfFile {
        offset: u64,
        len: u64,
        file_len: u64,
    },
    #[error("the state's description is damaged (its SHA-256 does not match)")]
    DamagedMetadata,
    #[error("the state's description does not parse: {0}")]
    Parse(serde_json::Error),
}

/// Write `metadata` after the memory already in `file` (which ends at `memory_end`),
/// then the header. Returns the file's length.
pub fn finish<T: Serialize>(
    file: &File,
    memory_end: u64,
    metadata: &T,
) -> Result<u64, StateFileError> {
    let json = serde_json::to_vec(metadata).map_err(|e| StateFileError::Write(e.into()))?;
    let offset = memory_end.next_multiple_of(MEMORY_START);
    file.write_all_at(&json, offset)
        .map_err(StateFileError::Write)?;
    let mut header = [0u8; 96];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    header[16..24].copy_from_slice(&offset.to_le_bytes());
    header[24..32].copy_from_slice(&(json.len() as u64).to_le_bytes());
    header[32..64].copy_from_slice(&Sha256::digest(&json));
    let own = Sha256::digest(&header[..64]);
    header[64..96].copy_from_slice(&own);
    file.write_all_at(&header, 0)
        .map_err(StateFileError::Write)?;
    Ok(offset + json.len() as u64)
}

/// The machine's state from `file`, checked against its digests.
pub fn read<T: DeserializeOwned>(file: &File) -> Result<T, StateFileError> {
    let file_len = file.metadata().map_err(StateFileError::Read)?.len();
    let mut header = [0u8; 96];
    if file_len < MEMORY_START {
        return Err(StateFileError::NotAState);
    }
    file.read_exact_at(&mut header, 0)
        .map_err(StateFileError::Read)?;
    if &header[..8] != MAGIC {
        return Err(StateFileError::NotAState);
    }
    if Sha256::digest(&header[..64])[..] != header[64..96] {
        return Err(StateFileError::DamagedHeader);
    }
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(StateFileError::Format(format));
    }
    let (offset, len) = (word(16), word(24));
    if len > MAX_METADATA
        || offset < MEMORY_START
        || offset.checked_add(len).is_none_or(|end| end > file_len)
    {
        return Err(StateFileError::OutOfFile {
            offset,
            len,
            file_len,
        });
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact_at(&mut json, offset)
        .map_err(StateFileError::Read)?;
    if Sha256::digest(&json)[..] != header[32..64] {
        return Err(StateFileError::DamagedMetadata);
    }
    serde_json::from_slice(&json).map_err(StateFileError::Parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_any_flipped_byte_is_refused() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(3 * MEMORY_START).unwrap();
        let end = finish(&file, 3 * MEMORY_START, &vec!["vcpu", "state"]).unwrap();
        assert_eq!(read::<Vec<String>>(&file).unwrap(), ["vcpu", "state"]);
        for at in (0..96).chain(3 * MEMORY_START..end) {
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, at).unwrap();
            file.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
            let err = read::<Vec<String>>(&file).err().unwrap();
            assert!(
                matches!(
                    err,
                    StateFileError::NotAState
                        | StateFileError::DamagedHeader
                        | StateFileError::DamagedMetadata
                ),
                "byte {at}: {err}"
            );
            file.write_all_at(&byte, at).unwrap();
        }
        read::<Vec<String>>(&file).unwrap();
    }

    #[test]
    fn a_short_file_or_another_format_is_refused() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(MEMORY_START).unwrap();
        let end = finish(&file, MEMORY_START, &1u32).unwrap();
        file.set_len(end - 1).unwrap();
        assert!(matches!(
            read::<u32>(&file),
            Err(StateFileError::OutOfFile { .. })
        ));
        assert!(matches!(
            read::<u32>(&tempfile::tempfile().unwrap()),
            Err(StateFileError::NotAState)
        ));

        let file = tempfile::tempfile().unwrap();
        file.set_len(MEMORY_START).unwrap();
        finish(&file, MEMORY_START, &1u32).unwrap();
        let mut header = [0u8; 64];
        file.read_exact_at(&mut header, 0).unwrap();
        header[8] = 2;
        file.write_all_at(&header, 0).unwrap();
        file.write_all_at(&Sha256::digest(header), 64).unwrap();
        let err = read::<u32>(&file).err().unwrap();
        assert_eq!(
            err.to_string(),
            "the state is in format 2, and this hvbox reads format 1 only"
        );
    }
}
