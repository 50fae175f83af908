//! `hvbox init`: a starter spec, the JSON Schema its first line points editors to,
//! and a .gitignore entry for machine state.

use crate::project::{schema_modeline, Project, STATE_DIR};
use crate::spec::SPEC_FILE;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// After the first line, which points editors to the schema (see [`schema_modeline`]).
const STARTER: &str = r#"# hvbox.yaml — one machine, shared with your team through git.
# Reference: the "Spec reference" section of hvbox's README.

# The box: a catalog name (debian-12, debian-13, or one made by `hvbox box build NAME`),
# or explicit artifacts pinned by digest:
#   box:
#     disk:   { url: https://example.org/disk.raw, digest: "sha512:…" }
#     kernel: { url: https://example.org/vmlinuz,  digest: "sha256:…" }   # optional
#     initrd: { url: https://example.org/initrd,   digest: "sha256:…" }   # optional
box: __BOX__

# hostname: dev          # default: this folder's name
cpus: 2
memory: 1G
# disk: 10G              # grow the machine's disk to this size (default: the box's size)

# engine: auto           # auto | builtin | qemu

ssh:
  user: dev              # created by cloud-init, with passwordless sudo

# Forward host ports to the guest (bound to 127.0.0.1 unless `address` says otherwise):
# ports:
#   - { host: 8080, guest: 80 }
#   - { host: 5353, guest: 53, protocol: udp }

# Set the machine up over ssh once it is up, step by step; `hvbox up` runs them until
# they have all succeeded once, `hvbox provision` runs them again:
# provision:
#   - shell: |                          # as root, unless `privileged: false`
#       apt-get update && apt-get install -y git
#   - script: scripts/setup.sh          # a file beside this one
#     args: [--fast]
#   - { file: config/app.conf, destination: /etc/app.conf }

# Several machines: the keys above are the defaults of each; a key a machine sets
# replaces the top-level one (then remove `hostname` above: each machine has its own).
# machines:
#   web:
#     ports: [{ host: 8080, guest: 80 }]
#   db:
#     memory: 2G
"#;

pub fn run(box_name: &str, force: bool) -> Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let spec = cwd.join(SPEC_FILE);
    if spec.exists() && !force {
        bail!(
            "{} already exists; use --force to overwrite it",
            spec.display()
        );
    }
    std::fs::write(&spec, starter(box_name))
        .with_context(|| format!("writing {}", spec.display()))?;
    ensure_ignored(&cwd.join(".gitignore"))?;
    let project = Project::of_spec(spec.clone());
    project
        .write_schema(true)
        .with_context(|| format!("writing {}", project.schema_path().display()))?;
    println!("wrote {}", spec.display());
    println!("next: `hvbox up`, then `hvbox ssh`");
    Ok(ExitCode::SUCCESS)
}

fn starter(box_name: &str) -> String {
    format!(
        "{}\n{}",
        schema_modeline(),
        STARTER.replace("__BOX__", box_name)
    )
}

/// Machine state (disks, keys) must never be committed.
fn ensure_ignored(gitignore: &Path) -> Result<()> {
    let entry = format!("/{STATE_DIR}/");
    let existing = std::fs::read_to_string(gitignore).unwrap_or_default();
    let already = existing.lines().any(|l| {
        let l = l.trim();
        l == STATE_DIR || l == entry || l == format!("{STATE_DIR}/") || l == format!("/{STATE_DIR}")
    });
    if already {
        return Ok(());
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry);
    text.push('\n');
    std::fs::write(gitignore, text).with_context(|| format!("writing {}", gitignore.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_spec_is_valid() {
        let text = starter("debian-12");
        assert!(text.starts_with("# yaml-language-server: $schema=.hvbox/hvbox.schema.json\n"));
        crate::spec::Spec::parse(&text, Path::new("hvbox.yaml")).unwrap();
        // The commented-out provision steps are valid once uncommented.
        let start = text.find("# provision:").unwrap();
        let steps: String = text[start..]
            .lines()
            .take_while(|l| !l.is_empty())
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap()))
            .collect();
        let spec =
            crate::spec::Spec::parse(&format!("box: b\n{steps}"), Path::new("hvbox.yaml")).unwrap();
        assert_eq!(spec.provision.len(), 3);
    }

    #[test]
    fn gitignore_entry_added_once() {
        let dir = tempfile::tempdir().unwrap();
        let gi = dir.path().join(".gitignore");
        std::fs::write(&gi, "target").unwrap();
        ensure_ignored(&gi).unwrap();
        ensure_ignored(&gi).unwrap();
        assert_eq!(std::fs::read_to_string(&gi).unwrap(), "target\n/.hvbox/\n");
    }
}
