//! Shell completions and the man page come from the CLI definition.

use std::process::{Command, Stdio};

fn hvbox(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hvbox"))
        .args(args)
        .output()
        .expect("run hvbox");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completions_know_the_subcommands() {
    let bash = hvbox(&["completions", "bash"]);
    for sub in [
        "up",
        "ssh-config",
        "reload",
        "logs",
        "upgrade-kernel",
        "completions",
        "provision",
        "--no-provision",
    ] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    assert!(
        bash.contains("complete -F _hvbox"),
        "not a bash completion script"
    );
    for shell in ["zsh", "fish"] {
        assert!(
            hvbox(&["completions", shell]).contains("ssh-config"),
            "{shell}"
        );
    }
}

#[test]
fn man_page_renders() {
    let page = hvbox(&["man"]);
    assert!(page.contains(".TH hvbox"), "not a man page:\n{page}");
    let Some(text) = rendered(page.as_bytes()) else {
        return;
    };
    assert!(text.contains("ssh-config"), "rendered page:\n{text}");
    assert!(text.contains("Declarative virtual machines"), "{text}");
}

/// Each command visible in `hvbox --help`, as its page names it.
const PAGES: &[&str] = &[
    "hvbox",
    "hvbox-init",
    "hvbox-validate",
    "hvbox-schema",
    "hvbox-up",
    "hvbox-provision",
    "hvbox-ssh",
    "hvbox-copy",
    "hvbox-console",
    "hvbox-logs",
    "hvbox-list",
    "hvbox-port",
    "hvbox-status",
    "hvbox-halt",
    "hvbox-suspend",
    "hvbox-resume",
    "hvbox-snapshot",
    "hvbox-snapshot-save",
    "hvbox-snapshot-restore",
    "hvbox-snapshot-list",
    "hvbox-snapshot-delete",
    "hvbox-destroy",
    "hvbox-reload",
    "hvbox-ssh-config",
    "hvbox-upgrade-kernel",
    "hvbox-kernels",
    "hvbox-box",
    "hvbox-box-build",
    "hvbox-box-list",
    "hvbox-box-add",
    "hvbox-box-remove",
    "hvbox-box-search",
    "hvbox-box-prune",
    "hvbox-box-export",
    "hvbox-box-update",
    "hvbox-export",
    "hvbox-export-kubevirt",
    "hvbox-vmm",
    "hvbox-vmm-run",
    "hvbox-completions",
    "hvbox-man",
];

/// `page` rendered by man(1), or None (skipped) without man.
fn rendered(page: &[u8]) -> Option<String> {
    use std::io::Write;
    let Ok(mut man) = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        hvbox_test_support::skip("rendering man pages needs man (man-db)");
        return None;
    };
    man.stdin.take().unwrap().write_all(page).unwrap();
    let out = man.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn every_command_has_a_man_page_and_hidden_ones_none() {
    let dir = tempfile::tempdir().unwrap();
    let listed = hvbox(&["man", "--dir", dir.path().to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut wanted: Vec<String> = PAGES.iter().map(|p| format!("{p}.1")).collect();
    wanted.push("hvbox.yaml.5".into());
    wanted.sort();
    assert_eq!(files, wanted, "hvbox man --dir printed:\n{listed}");
    for page in PAGES {
        let bytes = std::fs::read(dir.path().join(format!("{page}.1"))).unwrap();
        let Some(text) = rendered(&bytes) else { return };
        // man justifies lines: compare words.
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&format!("NAME {page} - ")), "{page}:\n{text}");
        assert!(flat.contains("SYNOPSIS hvbox"), "{page}:\n{text}");
    }
    // A page is also printed by command.
    assert!(hvbox(&["man", "box", "list"]).contains(".TH hvbox-box-list 1"));
    let list = rendered(hvbox(&["man", "status"]).as_bytes()).unwrap();
    assert!(
        list.contains("JSON fields (--json)") && list.contains("ssh_port"),
        "{list}"
    );
}

#[test]
fn hvbox_yaml_5_lists_the_keys_and_the_environment() {
    let page = hvbox(&["man", "hvbox.yaml"]);
    let Some(text) = rendered(page.as_bytes()) else {
        return;
    };
    for needle in [
        "HVBOX.YAML(5)",
        "KEYS",
        "ports[].host",
        "machines",
        "cloud_init.packages",
        "provision",
        "ENVIRONMENT",
        "HVBOX_DATA_DIR",
        "HVBOX_CACHE_DIR",
        "HVBOX_MIRRORS",
        "http_proxy, https_proxy, no_proxy",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
        "NO_COLOR",
    ] {
        assert!(text.contains(needle), "no {needle}:\n{text}");
    }
}

/// The bash script in a real bash, driven as bash drives it on Tab (COMP_WORDS,
/// COMP_CWORD), in a project with machines `web` and `db`.
#[test]
fn bash_completes_machine_and_box_names_and_no_hidden_command() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("shop");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("hvbox.yaml"),
        "box: debian-12\nmachines:\n  web:\n  db:\n",
    )
    .unwrap();
    let script = dir.path().join("hvbox.bash");
    std::fs::write(&script, hvbox(&["completions", "bash"])).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_hvbox"))
        .parent()
        .unwrap();
    let driver = r#"
source "$SCRIPT"
complete -p hvbox
try() {
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
    _hvbox_with_names hvbox "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    echo "$*|${COMPREPLY[*]}|"
}
try hvbox up ""
try hvbox ssh w
try hvbox halt --timeout 5 ""
try hvbox snapshot list --machine ""
try hvbox box remove deb
try hvbox ""
try hvbox s
"#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", driver])
        .env("SCRIPT", &script)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("HVBOX_CONFIG_DIR", dir.path().join("config"))
        .env("HVBOX_DATA_DIR", dir.path().join("data"))
        .current_dir(&project)
        .output()
        .expect("run bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply = |line: &str| -> Vec<String> {
        let found = text
            .lines()
            .find(|l| l.starts_with(&format!("{line}|")))
            .unwrap_or_else(|| panic!("no {line:?} in:\n{text}"));
        found
            .split('|')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert!(text.contains("-F _hvbox_with_names"), "{text}");
    let up = reply("hvbox up ");
    assert!(
        up.contains(&"web".into()) && up.contains(&"db".into()),
        "{up:?}"
    );
    assert!(up.contains(&"--timeout".into()), "{up:?}");
    assert!(
        !up.iter().any(|w| w.starts_with('[')),
        "a placeholder offered: {up:?}"
    );
    assert_eq!(reply("hvbox ssh w"), ["web"]);
    let halt = reply("hvbox halt --timeout 5 ");
    assert!(halt.contains(&"db".into()), "{halt:?}");
    let snap = reply("hvbox snapshot list --machine ");
    assert!(snap.contains(&"web".into()), "{snap:?}");
    let boxes = reply("hvbox box remove deb");
    assert!(boxes.contains(&"debian-12".into()), "{boxes:?}");
    let top = reply("hvbox ");
    assert!(
        top.contains(&"up".into()) && top.contains(&"ssh-config".into()),
        "{top:?}"
    );
    for hidden in ["supervise", "complete-names", "help"] {
        assert!(
            !top.contains(&hidden.to_string()),
            "{hidden} offered: {top:?}"
        );
    }
    assert!(!reply("hvbox s").contains(&"supervise".into()));
}
