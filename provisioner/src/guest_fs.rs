//! Paths inside a guest ext filesystem. Everything resolves through
//! ext4-view, so a symlink follows the guest's tree: an absolute target is
//! relative to the guest root and `..` stops at that root. Nothing here can
//! reach a host file.

use ext4_view::{Ext4, Ext4Error};

/// The outcome of resolving a guest path that should name a regular file.
pub(crate) enum Resolved {
    /// Canonical guest path of the regular file.
    File(String),
    /// Why there is no usable file, for messages ("dangling symlink to …").
    Absent(String),
}

/// Resolve `path` (symlinks included) to the canonical path of a regular
/// file. Dangling symlinks, loops and non-files are `Absent`, not errors:
/// callers fall back to other candidates.
pub(crate) fn resolve_file(fs: &Ext4, path: &str) -> Result<Resolved, Ext4Error> {
    let canonical = match fs.canonicalize(path) {
        Ok(p) => p,
        Err(Ext4Error::TooManySymlinks) => {
            return Ok(Resolved::Absent("symlink loop".into()));
        }
        Err(e) if is_missing(&e) => return Ok(Resolved::Absent(why_missing(fs, path))),
        Err(e) => return Err(e),
    };
    let Ok(canonical) = canonical.to_str().map(str::to_string) else {
        return Ok(Resolved::Absent("name is not UTF-8".into()));
    };
    let meta = fs.metadata(canonical.as_str())?;
    Ok(if meta.file_type().is_regular_file() {
        Resolved::File(canonical)
    } else {
        Resolved::Absent(format!("{canonical} is not a regular file"))
    })
}

/// `Some(canonical path)` if `path` resolves to a regular file.
pub(crate) fn find_file(fs: &Ext4, path: &str) -> Result<Option<String>, Ext4Error> {
    Ok(match resolve_file(fs, path)? {
        Resolved::File(p) => Some(p),
        Resolved::Absent(_) => None,
    })
}

fn why_missing(fs: &Ext4, path: &str) -> String {
    match fs.read_link(path) {
        Ok(target) => format!("dangling symlink to {}", target.display()),
        Err(_) => "missing".into(),
    }
}

/// A path as grub or BLS writes it is relative to the filesystem the
/// bootloader reads: `/boot/x` on a root fs, `/x` on a separate boot
/// partition. Try it as written, then by file name in `boot_dir`.
pub(crate) fn find_boot_path(
    fs: &Ext4,
    boot_dir: &str,
    path: &str,
) -> Result<Option<String>, Ext4Error> {
    if let Some(p) = find_file(fs, path)? {
        return Ok(Some(p));
    }
    find_file(fs, &join(boot_dir, file_name(path)))
}

/// Largest config file (grub.cfg, grubenv, BLS entry, fstab) we read; a
/// damaged inode must not make us allocate its claimed size.
const MAX_CONFIG: u64 = 4 << 20;

/// Read a whole small file (a config), `None` if it is not there.
pub(crate) fn read_optional(fs: &Ext4, path: &str) -> Result<Option<Vec<u8>>, Ext4Error> {
    let missing = |e: &Ext4Error| is_missing(e) || matches!(e, Ext4Error::TooManySymlinks);
    let len = match fs.metadata(path) {
        Ok(m) if m.is_dir() => return Ok(None),
        Ok(m) => m.len(),
        Err(e) if missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_CONFIG {
        return Err(Ext4Error::FileTooLarge);
    }
    match fs.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Up to `len` bytes from the start of a file.
pub(crate) fn read_head(fs: &Ext4, path: &str, len: usize) -> Result<Vec<u8>, Ext4Error> {
    let mut file = fs.open(path)?;
    let len = usize::try_from(file.metadata().len()).map_or(len, |n| n.min(len));
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = file.read_bytes(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// UTF-8 names in `dir`; an absent directory has none.
pub(crate) fn list_dir(fs: &Ext4, dir: &str) -> Result<Vec<String>, Ext4Error> {
    if !is_dir(fs, dir)? {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in fs.read_dir(dir)? {
        if let Ok(name) = entry?.file_name().as_str() {
            if name != "." && name != ".." {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

pub(crate) fn is_dir(fs: &Ext4, path: &str) -> Result<bool, Ext4Error> {
    match fs.metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if is_missing(&e) || matches!(e, Ext4Error::TooManySymlinks) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Errors that just mean "not there" while searching.
pub(crate) fn is_missing(e: &Ext4Error) -> bool {
    matches!(
        e,
        Ext4Error::NotFound
            | Ext4Error::NotADirectory
            | Ext4Error::MalformedPath
            | Ext4Error::NotAbsolute
            | Ext4Error::PathTooLong
    )
}

pub(crate) fn join(dir: &str, name: &str) -> String {
    format!(
        "{}/{}",
        dir.trim_end_matches('/'),
        name.trim_start_matches('/')
    )
}

pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub(crate) fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}
