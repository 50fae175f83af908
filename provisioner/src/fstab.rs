//! `/etc/fstab`: which device is mounted at `/`.

/// The device field (`UUID=…`, `PARTUUID=…`, `LABEL=…`, `/dev/…`) of the
/// entry mounted at `/`, if any. Comments and blank lines are ignored; the
/// last `/` entry wins, as it would when mounting in order.
pub(crate) fn root_device(fstab: &str) -> Option<String> {
    fstab
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let device = fields.next()?;
            (fields.next()? == "/").then(|| unquote_tag(device))
        })
        .next()
}

/// util-linux accepts `UUID="…"`; the kernel's root= does not.
fn unquote_tag(device: &str) -> String {
    match device.split_once('=') {
        Some((tag, value)) => format!("{tag}={}", value.trim_matches('"')),
        None => device.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::root_device;

    #[test]
    fn finds_root_and_ignores_comments() {
        let fstab = "# /etc/fstab: static file system information.\n\
                     #PARTUUID=dead / ext4 rw 0 1\n\
                     \n\
                     PARTUUID=6b0a5e1c-1f4f-4b5a-9d3e-0c2f5b7e8a11 / ext4 rw,discard,errors=remount-ro 0 1\n\
                     PARTUUID=1234-5678 /boot/efi vfat defaults 0 0\n";
        assert_eq!(
            root_device(fstab).as_deref(),
            Some("PARTUUID=6b0a5e1c-1f4f-4b5a-9d3e-0c2f5b7e8a11")
        );
    }

    #[test]
    fn other_forms() {
        assert_eq!(
            root_device("  UUID=\"abcd\"\t/\text4 defaults 0 1").as_deref(),
            Some("UUID=abcd")
        );
        assert_eq!(
            root_device("LABEL=cloudimg-rootfs / ext4 defaults 0 1").as_deref(),
            Some("LABEL=cloudimg-rootfs")
        );
        assert_eq!(
            root_device("/dev/vda1 / ext4 defaults 0 1").as_deref(),
            Some("/dev/vda1")
        );
    }

    #[test]
    fn no_root_entry() {
        assert_eq!(root_device(""), None);
        assert_eq!(
            root_device("# / only in a comment\n/dev/vdb /data ext4 defaults 0 2\n"),
            None
        );
        assert_eq!(root_device("/dev/vda1\n"), None);
    }
}
