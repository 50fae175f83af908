//! The starter projects `hvbox init --template NAME` writes: the repository's
//! `examples/`, built into the binary so an installed hvbox has them.

/// One file of a template, at its path relative to the project folder.
pub struct TemplateFile {
    pub path: &'static str,
    pub text: &'static str,
    /// Written with mode 0755 (a script provision steps or users run).
    pub executable: bool,
}

pub struct Template {
    pub name: &'static str,
    /// One line for `hvbox init --list-templates`.
    pub description: &'static str,
    /// `hvbox.yaml` first.
    pub files: &'static [TemplateFile],
}

macro_rules! file {
    ($example:literal, $path:literal) => {
        file!($example, $path, false)
    };
    ($example:literal, $path:literal, $exec:literal) => {
        TemplateFile {
            path: $path,
            text: include_str!(concat!("../../examples/", $example, "/", $path)),
            executable: $exec,
        }
    };
}

/// Every folder of `examples/` (a test checks that none is missing, nor any file).
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "quickstart",
        description: "one Debian machine from the box `hvbox box build debian-bookworm` makes",
        files: &[file!("quickstart", "hvbox.yaml")],
    },
    Template {
        name: "web-server",
        description: "nginx provisioned, site/ published to it, host port 8080 forwarded to 80",
        files: &[
            file!("web-server", "hvbox.yaml"),
            file!("web-server", "site/index.html"),
        ],
    },
    Template {
        name: "web-and-db",
        description: "two machines, web (port 8080 forwarded) and db (postgresql)",
        files: &[file!("web-and-db", "hvbox.yaml")],
    },
    Template {
        name: "provisioning",
        description: "provision steps: a shell step as root, a script as the user, a file copied",
        files: &[
            file!("provisioning", "hvbox.yaml"),
            file!("provisioning", "scripts/setup-user.sh", true),
            file!("provisioning", "config/motd"),
        ],
    },
    Template {
        name: "data-mount",
        description: "a shared folder: data/ writable at /srv/data, the project read-only",
        files: &[
            file!("data-mount", "hvbox.yaml"),
            file!("data-mount", "data/README.txt"),
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// For clap: each name with its description, so `--help`, completions and the error
/// for an unknown name list them.
pub fn possible_values() -> Vec<clap::builder::PossibleValue> {
    TEMPLATES
        .iter()
        .map(|t| clap::builder::PossibleValue::new(t.name).help(t.description))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.insert(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }

    /// The embedded copies are the examples, all of them, byte for byte and mode.
    #[test]
    fn templates_are_the_examples() {
        let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut on_disk = BTreeSet::new();
        walk(&examples, &examples, &mut on_disk);
        let mut embedded = BTreeSet::new();
        for t in TEMPLATES {
            assert_eq!(t.files[0].path, "hvbox.yaml", "{}", t.name);
            for f in t.files {
                let path = examples.join(t.name).join(f.path);
                assert_eq!(std::fs::read_to_string(&path).unwrap(), f.text);
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o111 != 0, f.executable, "{}", path.display());
                embedded.insert(format!("{}/{}", t.name, f.path));
            }
        }
        assert_eq!(embedded, on_disk, "examples/ and TEMPLATES differ");
    }
}
