//! `hvbox init`: a starter spec (or a template's project), the JSON Schema its first
//! line points editors to, and a .gitignore entry for machine state.

use super::table::print_table;
use crate::project::{schema_modeline, Project, STATE_DIR};
use crate::spec::SPEC_FILE;
use crate::templates::{self, Template};
use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

/// `hvbox init --list-templates`.
pub fn list_templates() -> Result<ExitCode> {
    let rows: Vec<[String; 2]> = templates::TEMPLATES
        .iter()
        .map(|t| [t.name.to_string(), t.description.to_string()])
        .collect();
    print_table(["TEMPLATE", "WHAT IT SETS UP"], &rows);
    println!("\n`hvbox init --template NAME` writes one here.");
    Ok(ExitCode::SUCCESS)
}

/// `hvbox init --template NAME [--box B]`: the template's files, each checked
/// before any is written, so a refusal leaves the folder as it was.
pub fn from_template(name: &str, box_name: Option<&str>, force: bool) -> Result<ExitCode> {
    // clap admits only known names; this is for callers other than the command line.
    let template = templates::find(name).ok_or_else(|| {
        let names: Vec<&str> = templates::TEMPLATES.iter().map(|t| t.name).collect();
        anyhow!("unknown template {name:?}; templates: {}", names.join(", "))
    })?;
    let cwd = std::env::current_dir()?;
    let files = template_files(template, box_name)?;
    let present: Vec<String> = files
        .iter()
        .filter(|(path, ..)| cwd.join(path).symlink_metadata().is_ok())
        .map(|(path, ..)| path.display().to_string())
        .collect();
    if !present.is_empty() && !force {
        bail!(
            "template {name}: {} already exist{} in {}; use --force to overwrite",
            present.join(", "),
            if present.len() == 1 { "s" } else { "" },
            cwd.display()
        );
    }
    for (path, text, executable) in &files {
        let target = cwd.join(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
        if *executable {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", target.display()))?;
        }
    }
    ensure_ignored(&cwd.join(".gitignore"))?;
    let spec = cwd.join(SPEC_FILE);
    let project = Project::of_spec(spec.clone());
    project
        .write_schema(true)
        .with_context(|| format!("writing {}", project.schema_path().display()))?;
    for (path, ..) in &files {
        println!("wrote {}", cwd.join(path).display());
    }
    println!("template {name}: {}", template.description);
    println!("next: `hvbox validate`, `hvbox up`, then `hvbox ssh`");
    Ok(ExitCode::SUCCESS)
}

/// The template's files as written: the spec with the schema line first, and
/// `box_name` (when given) in place of the template's box.
fn template_files(
    template: &Template,
    box_name: Option<&str>,
) -> Result<Vec<(PathBuf, String, bool)>> {
    template
        .files
        .iter()
        .map(|f| {
            let text = if f.path == SPEC_FILE {
                let spec = match box_name {
                    Some(b) => with_box(f.text, b).ok_or_else(|| {
                        anyhow!(
                            "template {} names no top-level box to replace with {b}",
                            template.name
                        )
                    })?,
                    None => f.text.to_string(),
                };
                format!("{}\n{spec}", schema_modeline())
            } else {
                f.text.to_string()
            };
            Ok((PathBuf::from(f.path), text, f.executable))
        })
        .collect()
}

/// `spec` with its top-level `box:` line naming `box_name`; `None` when it has none.
fn with_box(spec: &str, box_name: &str) -> Option<String> {
    let mut found = false;
    let lines: Vec<String> = spec
        .lines()
        .map(|l| {
            if l.starts_with("box:") {
                found = true;
                format!("box: {box_name}")
            } else {
                l.to_string()
            }
        })
        .collect();
    found.then(|| lines.join("\n") + "\n")
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
    fn every_template_is_a_valid_spec_with_the_schema_line() {
        for t in templates::TEMPLATES {
            let files = template_files(t, Some("team-base")).unwrap();
            let (path, text, _) = &files[0];
            assert_eq!(path, Path::new("hvbox.yaml"));
            assert!(text.starts_with(&schema_modeline()), "{}", t.name);
            crate::spec::ProjectSpec::parse(text, Path::new("hvbox.yaml")).unwrap();
            assert!(text.contains("\nbox: team-base\n"), "{}: {text}", t.name);
        }
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
