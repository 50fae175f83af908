//! A newc cpio archive (the initramfs format) of regular files, for test initramfs.

/// `files`: (name, mode, contents); directories are not needed for flat archives.
pub fn newc(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (name, mode, data)) in files.iter().enumerate() {
        entry(&mut out, ino as u32 + 1, name, 0o100000 | mode, data);
    }
    entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpio_lists_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, super::newc(&[("init", 0o755, b"hello")])).unwrap();
        // Read back with the kernel's own format reader's twin, GNU cpio, if present.
        let Ok(out) = std::process::Command::new("cpio")
            .args(["-t", "-F"])
            .arg(&archive)
            .output()
        else {
            return hvbox_test_support::skip("the cross-check needs cpio");
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "init");
    }
}
