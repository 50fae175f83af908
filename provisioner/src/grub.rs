//! The menu of a `grub.cfg`: every entry's kernel, arguments and initrds,
//! and the entry grub boots without user input.

/// Kernel, arguments and initrds of one menu entry, as written in grub.cfg
/// (paths are relative to the filesystem grub loads them from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrubEntry {
    pub kernel: String,
    pub args: Vec<String>,
    pub initrds: Vec<String>,
}

/// A `menuentry` or `submenu` with its title and `--id`/`$menuentry_id_option` id.
#[derive(Debug, Default)]
struct Item {
    title: String,
    id: Option<String>,
    /// `Some` once the entry has a `linux` line.
    boot: Option<GrubEntry>,
    /// `Some` for a submenu.
    children: Option<Vec<Item>>,
}

#[derive(Debug, Default)]
pub(crate) struct Menu {
    items: Vec<Item>,
    /// The `set default=` grub would honour on a normal boot.
    default: Option<String>,
}

impl Menu {
    /// Entries with a `linux` line, in menu order (submenus flattened).
    pub fn entries(&self) -> Vec<&GrubEntry> {
        fn walk<'a>(items: &'a [Item], out: &mut Vec<&'a GrubEntry>) {
            for item in items {
                out.extend(item.boot.as_ref());
                walk(item.children.as_deref().unwrap_or_default(), out);
            }
        }
        let mut out = Vec::new();
        walk(&self.items, &mut out);
        out
    }

    /// The default entry: `set default=` as an index, title or id, with `>`
    /// stepping into submenus (`${saved_entry}` takes `saved_entry` from
    /// grubenv); grub falls back to the first item when that names nothing.
    /// `None` if the chosen item boots no Linux kernel.
    pub fn default_entry(&self, saved_entry: Option<&str>) -> Option<&GrubEntry> {
        let wanted = match self.default.as_deref() {
            Some("${saved_entry}" | "$saved_entry") => saved_entry,
            other => other,
        };
        let item = wanted
            .and_then(|w| find_path(&self.items, w))
            .or_else(|| self.items.first())?;
        first_boot(item)
    }
}

/// Follow `a>b>c`, each part an index or a title/id, through submenus.
fn find_path<'a>(items: &'a [Item], path: &str) -> Option<&'a Item> {
    let mut level = items;
    let mut found = None;
    for part in path.split('>') {
        let item = match part.parse::<usize>() {
            Ok(n) => level.get(n),
            Err(_) => level
                .iter()
                .find(|i| i.title == part || i.id.as_deref() == Some(part)),
        }?;
        level = item.children.as_deref().unwrap_or_default();
        found = Some(item);
    }
    found
}

/// A submenu chosen as default boots its first entry.
fn first_boot(item: &Item) -> Option<&GrubEntry> {
    match &item.children {
        Some(children) => first_boot(children.first()?),
        None => item.boot.as_ref(),
    }
}

enum Frame {
    Item(Item),
    /// `function … {` and other blocks we only need to balance.
    Other,
}

/// Parse a grub.cfg. Unknown commands and stray `}` are ignored and an
/// entry left open at the end is dropped, so any input yields a (possibly
/// empty) menu.
pub(crate) fn parse(cfg: &str) -> Menu {
    let mut menu = Menu::default();
    let mut stack: Vec<Frame> = Vec::new();
    for line in cfg.lines() {
        let words = lex(line);
        let Some(first) = words.first() else {
            continue;
        };
        let inside = in_entry(&stack);
        let current = match stack.last_mut() {
            Some(Frame::Item(item)) if item.children.is_none() => Some(item),
            _ => None,
        };
        match (first.text.as_str(), current) {
            // The first `linux` line: later ones are usually the other
            // branch of an `if` (linux16 vs linuxefi) for the same kernel.
            ("linux" | "linux16" | "linuxefi", Some(item))
                if words.len() > 1 && item.boot.is_none() =>
            {
                item.boot = Some(GrubEntry {
                    kernel: strip_device(&words[1].text),
                    args: words[2..].iter().map(|w| w.text.clone()).collect(),
                    initrds: Vec::new(),
                });
            }
            ("initrd" | "initrd16" | "initrdefi", Some(item)) => {
                // grub refuses an initrd before the kernel; so do we.
                if let Some(boot) = &mut item.boot {
                    boot.initrds
                        .extend(words[1..].iter().map(|w| strip_device(&w.text)));
                }
            }
            ("set", None) if !inside => {
                for w in &words[1..] {
                    if let Some(value) = w.text.strip_prefix("default=") {
                        // `${next_entry}` is a one-shot override; other
                        // variables cannot be evaluated here.
                        if !value.contains('$') || value.contains("saved_entry") {
                            menu.default = Some(value.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
        let mut opened = false;
        for w in words.iter().filter(|w| w.bare) {
            match w.text.as_str() {
                "{" => {
                    let frame = match first.text.as_str() {
                        "menuentry" | "submenu" if !opened => Frame::Item(Item {
                            title: words.get(1).map(|w| w.text.clone()).unwrap_or_default(),
                            id: item_id(&words),
                            boot: None,
                            children: (first.text == "submenu").then(Vec::new),
                        }),
                        _ => Frame::Other,
                    };
                    opened = true;
                    stack.push(frame);
                }
                "}" => match stack.pop() {
                    Some(Frame::Item(item)) => match stack.iter_mut().rev().find_map(|f| match f {
                        Frame::Item(i) => i.children.as_mut(),
                        Frame::Other => None,
                    }) {
                        Some(children) => children.push(item),
                        None => menu.items.push(item),
                    },
                    Some(Frame::Other) | None => {}
                },
                _ => {}
            }
        }
    }
    menu
}

fn in_entry(stack: &[Frame]) -> bool {
    stack.iter().any(|f| matches!(f, Frame::Item(_)))
}

/// The id after `--id` or `$menuentry_id_option` on a menuentry line.
fn item_id(words: &[Word]) -> Option<String> {
    let at = words
        .iter()
        .position(|w| w.text == "--id" || w.text == "$menuentry_id_option")?;
    words.get(at + 1).map(|w| w.text.clone())
}

/// Drop arguments that must not reach the guest kernel from us:
/// `console=` (hvbox picks the console for its own serial device),
/// `BOOT_IMAGE=` (grub-internal) and unexpanded variables such as
/// Ubuntu's `$vt_handoff`.
pub(crate) fn clean_args(args: &[String]) -> Vec<String> {
    args.iter()
        .filter(|a| !a.starts_with("console=") && !a.starts_with("BOOT_IMAGE=") && !a.contains('$'))
        .cloned()
        .collect()
}

/// A shell-like word; `bare` if no part of it was quoted or escaped (only
/// a bare `{` or `}` is a block delimiter).
struct Word {
    text: String,
    bare: bool,
}

/// Split a line like grub's lexer: whitespace and `;` separate words,
/// `'…'` is literal, `"…"` and `\` escape, `#` starts a comment.
fn lex(line: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut word: Option<Word> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() || c == ';' {
            words.extend(word.take());
            continue;
        }
        if c == '#' && word.is_none() {
            break;
        }
        let w = word.get_or_insert_with(|| Word {
            text: String::new(),
            bare: true,
        });
        match c {
            '\'' => {
                w.bare = false;
                w.text.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                w.bare = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.text.extend(chars.next()),
                        c => w.text.push(c),
                    }
                }
            }
            '\\' => {
                w.bare = false;
                w.text.extend(chars.next());
            }
            c => w.text.push(c),
        }
    }
    words.extend(word);
    words
}

/// `($root)/boot/vmlinuz` or `(hd0,gpt1)/vmlinuz` → path inside the filesystem.
fn strip_device(path: &str) -> String {
    match path.strip_prefix('(').and_then(|p| p.split_once(')')) {
        Some((_, rest)) => rest.to_string(),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = r#"
# DO NOT EDIT THIS FILE
if [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
else
   set default="0"
fi
function load_video {
  if [ x$feature_all_video_module = xy ]; then
    insmod all_video
  fi
}
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux $menuentry_id_option 'gnulinux-simple-abc' {
	load_video
	insmod ext2
	if [ x$feature_platform_search_hint = xy ]; then
	  search --no-floppy --fs-uuid --set=root --hint-bios=hd0,gpt1 abc
	fi
	echo	'Loading Linux 6.1.0-9-cloud-amd64 ...'
	linux	/boot/vmlinuz-6.1.0-9-cloud-amd64 root=PARTUUID=1111 ro console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 consoleblank=0
	echo	'Loading initial ramdisk ...'
	initrd	/boot/initrd.img-6.1.0-9-cloud-amd64
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-abc' {
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-10-cloud-amd64' $menuentry_id_option 'gnulinux-6.1.0-10-advanced-abc' {
		linux	/boot/vmlinuz-6.1.0-10-cloud-amd64 root=PARTUUID=2222 ro
	}
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-10-cloud-amd64 (recovery mode)' {
		linux	/boot/vmlinuz-6.1.0-10-cloud-amd64 root=PARTUUID=2222 ro single
	}
}
"#;

    #[test]
    fn first_menuentry_is_default() {
        let menu = parse(DEBIAN);
        let e = menu.default_entry(None).unwrap();
        assert_eq!(e.kernel, "/boot/vmlinuz-6.1.0-9-cloud-amd64");
        assert_eq!(e.initrds, ["/boot/initrd.img-6.1.0-9-cloud-amd64"]);
        assert_eq!(
            clean_args(&e.args).join(" "),
            "root=PARTUUID=1111 ro earlyprintk=ttyS0,115200 consoleblank=0"
        );
        assert_eq!(menu.entries().len(), 3);
    }

    #[test]
    fn set_default_by_index_title_id_and_saved_entry() {
        let with = |default: &str| DEBIAN.replace("set default=\"0\"", default);
        let kernel_args = |cfg: &str, saved: Option<&str>| {
            let menu = parse(cfg);
            let e = menu.default_entry(saved).unwrap();
            format!("{} {}", e.kernel, e.args.join(" "))
        };
        let advanced = "/boot/vmlinuz-6.1.0-10-cloud-amd64 root=PARTUUID=2222 ro";
        assert_eq!(kernel_args(&with("set default=\"1>0\""), None), advanced);
        assert_eq!(
            kernel_args(&with("set default='1>1'"), None),
            format!("{advanced} single")
        );
        assert_eq!(
            kernel_args(
                &with("set default=\"gnulinux-advanced-abc>gnulinux-6.1.0-10-advanced-abc\""),
                None
            ),
            advanced
        );
        assert_eq!(
            kernel_args(
                &with("set default=\"Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-10-cloud-amd64\""),
                None
            ),
            advanced
        );
        // A submenu as default boots its first entry.
        assert_eq!(kernel_args(&with("set default=1"), None), advanced);
        let saved = with("set default=\"${saved_entry}\"");
        assert_eq!(kernel_args(&saved, Some("1>0")), advanced);
        // Unknown names and a missing saved_entry fall back to the first item.
        assert!(kernel_args(&saved, None).contains("6.1.0-9"));
        assert!(kernel_args(&with("set default=7"), None).contains("6.1.0-9"));
        assert!(kernel_args(&with("set default=nope"), None).contains("6.1.0-9"));
    }

    #[test]
    fn device_prefix_quotes_and_variables() {
        let cfg = "menuentry \"x\" {\n linux ($root)/vmlinuz-5 BOOT_IMAGE=/vmlinuz-5 root=UUID=ab ro \"quiet\" $vt_handoff\n initrd (hd0,gpt2)/ucode.img /initrd.img-5\n}\n";
        let menu = parse(cfg);
        let e = menu.default_entry(None).unwrap();
        assert_eq!(e.kernel, "/vmlinuz-5");
        assert_eq!(e.initrds, ["/ucode.img", "/initrd.img-5"]);
        assert_eq!(clean_args(&e.args).join(" "), "root=UUID=ab ro quiet");
    }

    #[test]
    fn quoted_braces_and_titles_do_not_confuse_nesting() {
        let cfg = "menuentry 'a } { b' --id 'it'\\''s' {\n linux /vmlinuz-1 x='{'\n}\nmenuentry 'c' {\n linux /vmlinuz-2\n}\n";
        let menu = parse(cfg);
        assert_eq!(menu.entries().len(), 2);
        assert_eq!(menu.items[0].id.as_deref(), Some("it's"));
        assert_eq!(menu.default_entry(None).unwrap().args, ["x={"]);
    }

    #[test]
    fn no_usable_entry() {
        assert!(parse("").default_entry(None).is_none());
        let chain = "set timeout=5\nmenuentry 'x' {\n  chainloader +1\n}\nmenuentry 'y' {\n linux /vmlinuz\n}\n";
        assert!(parse(chain).default_entry(None).is_none());
        assert_eq!(parse(chain).entries().len(), 1);
        assert!(parse("# menuentry 'x' {\n#  linux /vmlinuz-1\n#}\n")
            .default_entry(None)
            .is_none());
        // Unbalanced input does not panic.
        assert!(parse("}\n}\nmenuentry {\n{\n")
            .default_entry(None)
            .is_none());
        assert!(parse("initrd /x\nlinux /y\n").entries().is_empty());
    }
}
