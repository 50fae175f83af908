//! What a `file` step sends into the guest: a tar stream the guest's own `tar`
//! unpacks, so a folder tree with its modes and symlinks is one ssh session.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// Where the guest unpacks the archive, and what the archive holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Placement {
    /// The folder the archive is unpacked in (made first when missing).
    pub dir: String,
    /// A file's name in `dir`; none for a folder, whose contents go into `dir`.
    pub file_name: Option<String>,
}

/// Where `destination` puts a file or folder called `source_name`. A destination
/// is the path the file or folder gets; one ending in `/` is a folder it goes
/// into under its own name.
pub fn placement(source_is_dir: bool, source_name: &str, destination: &str) -> Placement {
    let into = destination.ends_with('/')
        || destination == "."
        || destination.ends_with("/.")
        || destination == ".."
        || destination.ends_with("/..");
    let trimmed = match destination.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    let joined = |dir: &str| {
        if dir.ends_with('/') {
            format!("{dir}{source_name}")
        } else {
            format!("{dir}/{source_name}")
        }
    };
    match (source_is_dir, into) {
        (true, false) => Placement {
            dir: trimmed.to_string(),
            file_name: None,
        },
        (true, true) => Placement {
            dir: joined(trimmed),
            file_name: None,
        },
        (false, true) => Placement {
            dir: trimmed.to_string(),
            file_name: Some(source_name.to_string()),
        },
        (false, false) => {
            let (dir, name) = match trimmed.rsplit_once('/') {
                Some(("", name)) => ("/", name),
                Some((dir, name)) => (dir, name),
                None => (".", trimmed),
            };
            Placement {
                dir: dir.to_string(),
                file_name: Some(name.to_string()),
            }
        }
    }
}

/// Write `source` as a tar stream to `out`: a file as one entry called `file_name`,
/// a folder as the entries beneath it. The folder itself is no entry, so unpacking
/// into an existing folder (say `/etc`) leaves that folder's own mode alone.
/// Symlinks inside a folder stay symlinks.
pub fn write(source: &Path, file_name: Option<&str>, out: impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    match file_name {
        Some(name) => {
            let mut file = std::fs::File::open(source)
                .with_context(|| format!("reading {}", source.display()))?;
            builder
                .append_file(name, &mut file)
                .with_context(|| format!("sending {}", source.display()))?;
        }
        None => append_tree(&mut builder, source, Path::new(""))?,
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

fn append_tree<W: Write>(builder: &mut tar::Builder<W>, dir: &Path, rel: &Path) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    // The same tree gives the same archive.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = rel.join(entry.file_name());
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
            bail!(
                "{} is neither a file, a folder nor a symlink, so it cannot be copied",
                path.display()
            );
        }
        builder
            .append_path_with_name(&path, &name)
            .with_context(|| format!("sending {}", path.display()))?;
        if kind.is_dir() {
            append_tree(builder, &path, &name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn place(dir: bool, dest: &str) -> (String, Option<String>) {
        let p = placement(dir, "app.conf", dest);
        (p.dir, p.file_name)
    }

    #[test]
    fn destinations_name_the_copy_or_the_folder_it_goes_into() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            place(false, "/etc/app.conf"),
            ("/etc".into(), some("app.conf"))
        );
        assert_eq!(
            place(false, "/etc/renamed"),
            ("/etc".into(), some("renamed"))
        );
        assert_eq!(
            place(false, "/etc/app/"),
            ("/etc/app".into(), some("app.conf"))
        );
        assert_eq!(place(false, "/top"), ("/".into(), some("top")));
        assert_eq!(place(false, "/"), ("/".into(), some("app.conf")));
        assert_eq!(place(false, "notes.txt"), (".".into(), some("notes.txt")));
        assert_eq!(place(false, "."), (".".into(), some("app.conf")));
        assert_eq!(place(false, "a/b"), ("a".into(), some("b")));
        assert_eq!(place(true, "/srv/www"), ("/srv/www".into(), None));
        assert_eq!(place(true, "/srv/"), ("/srv/app.conf".into(), None));
        assert_eq!(place(true, "/"), ("/app.conf".into(), None));
    }

    fn entries(archive: &[u8]) -> Vec<(String, tar::EntryType, u32, String)> {
        let mut archive = tar::Archive::new(archive);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let kind = e.header().entry_type();
                let mode = e.header().mode().unwrap() & 0o777;
                let mut body = String::new();
                if kind.is_symlink() {
                    body = e.link_name().unwrap().unwrap().display().to_string();
                } else {
                    std::io::Read::read_to_string(&mut e, &mut body).unwrap();
                }
                (path, kind, mode, body)
            })
            .collect()
    }

    #[test]
    fn a_file_is_one_entry_under_its_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.conf");
        std::fs::write(&file, "port = 80\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut out = Vec::new();
        write(&file, Some("renamed.conf"), &mut out).unwrap();
        assert_eq!(
            entries(&out),
            [(
                "renamed.conf".to_string(),
                tar::EntryType::Regular,
                0o640,
                "port = 80\n".to_string()
            )]
        );
    }

    #[test]
    fn a_folder_is_its_contents_with_modes_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("sub/run.sh"), PermissionsExt::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("index.html", root.join("home.html")).unwrap();
        let mut out = Vec::new();
        write(&root, None, &mut out).unwrap();
        let got: Vec<_> = entries(&out)
            .into_iter()
            .map(|(path, kind, mode, body)| (path, kind, body, mode))
            .collect();
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["home.html", "index.html", "sub", "sub/run.sh"]);
        assert!(got[0].1.is_symlink() && got[0].2 == "index.html");
        assert_eq!(got[1].2, "hi");
        assert!(got[2].1.is_dir());
        assert_eq!((got[3].2.as_str(), got[3].3), ("#!/bin/sh\n", 0o755));
    }

    #[test]
    fn unreadable_sources_are_named() {
        let err = write(Path::new("/nonexistent/app.conf"), Some("a"), Vec::new()).unwrap_err();
        assert!(
            format!("{err:#}").contains("reading /nonexistent/app.conf"),
            "{err:#}"
        );
    }
}
