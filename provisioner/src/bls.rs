//! Boot Loader Specification entries (`/boot/loader/entries/*.conf`), as
//! Fedora and RHEL write them, and which one grub's `blscfg` boots.

use std::cmp::Ordering;

use crate::version_order;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BlsEntry {
    /// File name without `.conf`; what grubenv's `saved_entry` names.
    pub id: String,
    pub title: Option<String>,
    pub version: Option<String>,
    pub linux: Option<String>,
    pub initrds: Vec<String>,
    /// All `options` lines, split into words.
    pub options: Vec<String>,
}

/// Parse one entry: `key value…` lines, `#` comments. Keys may repeat;
/// `initrd` and `options` accumulate, others keep the first value.
pub(crate) fn parse(id: &str, text: &str) -> BlsEntry {
    let mut e = BlsEntry {
        id: id.to_string(),
        ..BlsEntry::default()
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(k, v)| (k, v.trim()));
        if value.is_empty() {
            continue;
        }
        let first = |slot: &mut Option<String>| {
            slot.get_or_insert_with(|| value.to_string());
        };
        match key {
            "title" => first(&mut e.title),
            "version" => first(&mut e.version),
            "linux" => first(&mut e.linux),
            "initrd" => e
                .initrds
                .extend(value.split_whitespace().map(str::to_string)),
            "options" => e
                .options
                .extend(value.split_whitespace().map(str::to_string)),
            _ => {}
        }
    }
    e
}

/// Newest first, as grub's blscfg lists them: by `version`, ties by id;
/// entries without a version last.
pub(crate) fn sort(entries: &mut [BlsEntry]) {
    entries.sort_by(|a, b| match (&a.version, &b.version) {
        (Some(va), Some(vb)) => version_order::compare(vb, va).then_with(|| b.id.cmp(&a.id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b.id.cmp(&a.id),
    });
}

/// The entry booted by default in sorted `entries`: the one grubenv's
/// `saved_entry` names (by id or title), else the first (newest).
pub(crate) fn default_index(entries: &[BlsEntry], saved_entry: Option<&str>) -> Option<usize> {
    let saved = saved_entry.and_then(|s| {
        entries
            .iter()
            .position(|e| e.id == s || e.title.as_deref() == Some(s))
    });
    saved.or((!entries.is_empty()).then_some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEDORA: &str = "title Fedora Linux (6.5.6-300.fc39.x86_64) 39 (Cloud Edition)\n\
        version 6.5.6-300.fc39.x86_64\n\
        linux /vmlinuz-6.5.6-300.fc39.x86_64\n\
        initrd /intel-ucode.img\n\
        initrd /initramfs-6.5.6-300.fc39.x86_64.img\n\
        options root=UUID=12 ro rootflags=subvol=root\n\
        options console=ttyS0 no_timer_check\n\
        grub_users $grub_users\n\
        grub_arg --unrestricted\n\
        grub_class fedora\n";

    #[test]
    fn parses_fedora_entry() {
        let e = parse("abc-6.5.6-300.fc39.x86_64", FEDORA);
        assert_eq!(e.version.as_deref(), Some("6.5.6-300.fc39.x86_64"));
        assert_eq!(e.linux.as_deref(), Some("/vmlinuz-6.5.6-300.fc39.x86_64"));
        assert_eq!(
            e.initrds,
            ["/intel-ucode.img", "/initramfs-6.5.6-300.fc39.x86_64.img"]
        );
        assert_eq!(
            e.options.join(" "),
            "root=UUID=12 ro rootflags=subvol=root console=ttyS0 no_timer_check"
        );
    }

    #[test]
    fn default_is_saved_entry_else_newest() {
        let mut entries = vec![
            parse("m-6.5.9-300.fc39", "version 6.5.9-300.fc39\nlinux /a"),
            parse("m-6.5.10-200.fc39", "version 6.5.10-200.fc39\nlinux /b"),
            parse("zz-unversioned", "linux /d"),
            parse("m-0-rescue", "title Rescue\nversion 0-rescue-m\nlinux /c"),
        ];
        sort(&mut entries);
        let ids: Vec<_> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "m-6.5.10-200.fc39",
                "m-6.5.9-300.fc39",
                "m-0-rescue",
                "zz-unversioned"
            ]
        );
        assert_eq!(default_index(&entries, None), Some(0));
        assert_eq!(default_index(&entries, Some("m-6.5.9-300.fc39")), Some(1));
        assert_eq!(default_index(&entries, Some("Rescue")), Some(2));
        assert_eq!(default_index(&entries, Some("gone")), Some(0));
        assert_eq!(default_index(&[], Some("gone")), None);
    }

    #[test]
    fn odd_input() {
        let e = parse(
            "x",
            "linux\n\n   \noptions\ttab separated\n#linux /no\nlinux /yes\n",
        );
        assert_eq!(e.linux.as_deref(), Some("/yes"));
        assert_eq!(e.options, ["tab", "separated"]);
    }
}
