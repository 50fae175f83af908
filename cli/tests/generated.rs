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
    let Ok(mut man) = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return hvbox_test_support::skip("rendering the man page needs man (man-db)");
    };
    use std::io::Write;
    man.stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = man.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ssh-config"), "rendered page:\n{text}");
    assert!(text.contains("Declarative virtual machines"), "{text}");
}
