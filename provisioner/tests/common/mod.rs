//! Builds real disk images with the system tools (mkfs.ext4, sfdisk): no
//! mounting, everything inside a temp dir.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const MIB: u64 = 1 << 20;
pub const ROOT_UUID: &str = "6b0a5e1c-1f4f-4b5a-9d3e-0c2f5b7e8a11";
pub const K9: &str = "6.1.0-9-cloud-amd64";
pub const K10: &str = "6.1.0-10-cloud-amd64";
/// Memory of the machines tests extract boot files for; above 1 GiB, so
/// hvbox's own cap on kernel + initrd is the limit that applies.
pub const GUEST_MEMORY: u64 = 2 << 30;

/// Run a command, panicking with its output if it fails.
pub fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed:\n{text}");
    text
}

/// Distinct, multi-block contents for a fake kernel/initrd file.
pub fn contents(tag: &str) -> Vec<u8> {
    format!("<{tag}>").repeat(40_000).into_bytes()
}

/// A small synthetic x86 bzImage: a real boot-protocol setup header whose
/// version string starts with `release`, followed by `contents("kernel
/// <release>")` as the "payload".
pub fn kernel_image(release: &str) -> Vec<u8> {
    kernel_image_with(release, &format!("kernel {release}"))
}

/// Like [`kernel_image`] with a payload tag of your choice (to tell apart
/// two files that claim the same release).
pub fn kernel_image_with(release: &str, tag: &str) -> Vec<u8> {
    const SETUP_SECTS: u8 = 3;
    const VERSION_AT: usize = 0x600;
    let mut img = vec![0u8; (usize::from(SETUP_SECTS) + 1) * 512];
    img[0x1F1] = SETUP_SECTS;
    img[0x1FE..0x200].copy_from_slice(&[0x55, 0xAA]);
    img[0x200..0x202].copy_from_slice(&[0xEB, 0x66]); // jmp over the header
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    img[0x20E..0x210].copy_from_slice(&((VERSION_AT - 0x200) as u16).to_le_bytes());
    let text = format!(
        "{release} (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian {release}\0"
    );
    img[VERSION_AT..VERSION_AT + text.len()].copy_from_slice(text.as_bytes());
    img.extend(contents(tag));
    img
}

/// The bytes an extracted initrd for `release` must have.
pub fn initrd_image(release: &str) -> Vec<u8> {
    contents(&format!("initrd {release}"))
}

/// A directory tree to become a guest filesystem.
pub struct Tree {
    pub root: PathBuf,
}

impl Tree {
    pub fn new(dir: &Path, name: &str) -> Self {
        let root = dir.join(name);
        fs::create_dir_all(&root).unwrap();
        Self { root }
    }

    pub fn file(&self, path: &str, data: &[u8]) -> &Self {
        let p = self.root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
        self
    }

    /// A symlink stored verbatim in the guest fs (may point at guest-absolute
    /// paths that do not exist on the host).
    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let p = self.root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
        self
    }

    /// A kernel (with setup header) and its initrd in `dir`, Debian names.
    pub fn kernel(&self, dir: &str, release: &str) -> &Self {
        self.file(&format!("{dir}/vmlinuz-{release}"), &kernel_image(release))
            .file(
                &format!("{dir}/initrd.img-{release}"),
                &initrd_image(release),
            )
    }

    /// Debian cloud-image style root: two kernels, their initrds, fstab.
    pub fn debian_root(&self) -> &Self {
        for v in [K9, K10] {
            self.kernel("boot", v);
            self.file(&format!("boot/config-{v}"), b"CONFIG_EXT4_FS=y\n");
        }
        self.file(
            "etc/fstab",
            format!(
                "# /etc/fstab: static file system information.\n\n\
                 PARTUUID={ROOT_UUID} / ext4 rw,discard,errors=remount-ro 0 1\n"
            )
            .as_bytes(),
        )
    }

    /// `mkfs.ext4 -d` this tree into a new image file of `size_mib`.
    pub fn mkfs(&self, img: &Path, size_mib: u64, extra: &[&str]) {
        let size = format!("{size_mib}M");
        let mut args = vec!["-q", "-F", "-d", self.root.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend([img.to_str().unwrap(), size.as_str()]);
        run("mkfs.ext4", &args, None);
    }
}

/// What goes into one partition.
#[derive(Clone)]
pub enum Content<'a> {
    Image(&'a Path),
    Bytes(Vec<u8>),
    Empty(u64),
}

impl Content<'_> {
    fn len(&self) -> u64 {
        match self {
            Content::Image(p) => fs::metadata(p).unwrap().len(),
            Content::Bytes(b) => b.len() as u64,
            Content::Empty(n) => *n,
        }
    }
}

/// Partition a new disk with sfdisk (`label` is "gpt" or "dos"; `attrs` are
/// extra sfdisk fields per partition such as `uuid=…` or `type=…`) and copy
/// each content in at 1 MiB-aligned offsets, keeping holes.
pub fn make_disk(disk: &Path, label: &str, header: &str, parts: &[(Content, &str)]) {
    let numbered: Vec<_> = parts
        .iter()
        .enumerate()
        .map(|(i, (content, attrs))| (i as u32 + 1, content.clone(), *attrs))
        .collect();
    make_disk_numbered(disk, label, header, &numbered);
}

/// Like [`make_disk`] with explicit partition numbers (gaps allowed on GPT),
/// e.g. Ubuntu's root 1, BIOS boot 14, ESP 15, /boot 16.
pub fn make_disk_numbered(disk: &Path, label: &str, header: &str, parts: &[(u32, Content, &str)]) {
    let mut script = format!("label: {label}\n{header}\n");
    let mut offsets = Vec::new();
    let mut start = MIB;
    let name = disk.file_name().unwrap().to_str().unwrap();
    for (number, content, attrs) in parts {
        let len = content.len().div_ceil(MIB) * MIB;
        script += &format!(
            "{name}{number} : start={}, size={}, {attrs}\n",
            start / 512,
            len / 512
        );
        offsets.push(start);
        start += len;
    }
    let f = fs::File::create(disk).unwrap();
    f.set_len(start + MIB).unwrap();
    drop(f);
    run(
        "sfdisk",
        &["--quiet", disk.to_str().unwrap()],
        Some(&script),
    );
    for ((_, content, _), offset) in parts.iter().zip(offsets) {
        match content {
            Content::Image(img) => {
                let seek = format!("seek={}", offset / MIB);
                let iff = format!("if={}", img.display());
                let of = format!("of={}", disk.display());
                run(
                    "dd",
                    &[
                        &iff,
                        &of,
                        "bs=1M",
                        &seek,
                        "conv=notrunc,sparse",
                        "status=none",
                    ],
                    None,
                );
            }
            Content::Bytes(b) => {
                use std::os::unix::fs::FileExt;
                let f = fs::OpenOptions::new().write(true).open(disk).unwrap();
                f.write_all_at(b, offset).unwrap();
            }
            Content::Empty(_) => {}
        }
    }
}

/// A GPT disk with a single Linux partition holding `img`.
pub fn gpt_disk(disk: &Path, img: &Path, uuid: &str) {
    make_disk(
        disk,
        "gpt",
        "",
        &[(Content::Image(img), &format!("uuid={uuid}"))],
    );
}

/// Cut a disk image (or grow it with a hole) to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Overwrite bytes of an image in place.
pub fn overwrite(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, offset).unwrap();
}

/// A Debian-like GPT disk (two kernels, grub-less) in `dir`.
pub fn debian_disk(dir: &Path) -> PathBuf {
    let tree = Tree::new(dir, "root");
    tree.debian_root();
    let part = dir.join("part.img");
    tree.mkfs(&part, 64, &[]);
    let disk = dir.join("disk.img");
    gpt_disk(&disk, &part, ROOT_UUID);
    disk
}

/// Names in `dir` that look like leftover temp files.
pub fn temp_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// A GPT disk holding `tree` as a 32 MiB ext4 root; returns the disk path.
pub fn disk_from(dir: &Path, tree: &Tree) -> PathBuf {
    let part = dir.join("part.img");
    tree.mkfs(&part, 32, &[]);
    let disk = dir.join("disk.img");
    gpt_disk(&disk, &part, ROOT_UUID);
    disk
}

/// An fstab naming the GPT root partition as `/`.
pub fn fstab(tree: &Tree) -> &Tree {
    tree.file(
        "etc/fstab",
        format!("PARTUUID={ROOT_UUID} / ext4 defaults 0 1\n").as_bytes(),
    )
}
