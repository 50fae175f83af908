//! `hvbox completions SHELL` and `hvbox man`: generated from the clap definition, so
//! they never drift from the commands that exist. Hidden commands (the supervisor,
//! the completion helper) are left out of both.

use super::spec_manual;
use super::BadArguments;
use crate::args::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Names in bash: clap's script completes commands and options; this wrapper adds
/// the names `hvbox complete-names` prints for the words typed so far, and drops
/// the `[NAME]...` placeholders clap offers for positional arguments.
const BASH_NAMES: &str = r#"
_hvbox_with_names() {
    _hvbox "$@"
    local cur="${COMP_WORDS[COMP_CWORD]}" kept=() w names
    for w in "${COMPREPLY[@]}"; do
        case "$w" in '['*|'<'*) ;; *) kept+=("$w") ;; esac
    done
    COMPREPLY=("${kept[@]}")
    names=$("${COMP_WORDS[0]}" complete-names -- "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)
    if [[ -n "$names" ]]; then
        COMPREPLY+=($(compgen -W "$names" -- "$cur"))
    fi
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _hvbox_with_names -o nosort -o bashdefault -o default hvbox
else
    complete -F _hvbox_with_names -o bashdefault -o default hvbox
fi
"#;

/// Names in fish: the same helper, given the words before the cursor.
const FISH_NAMES: &str = r#"
complete -c hvbox -a '(hvbox complete-names -- (commandline -opc)[2..-1] 2>/dev/null)'
"#;

pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut visible(&Cli::command()), "hvbox", &mut out);
    match shell {
        clap_complete::Shell::Bash => out.extend_from_slice(BASH_NAMES.as_bytes()),
        clap_complete::Shell::Fish => out.extend_from_slice(FISH_NAMES.as_bytes()),
        _ => {}
    }
    print(&out)
}

/// `hvbox man [COMMAND…]` prints one page; `hvbox man --dir DIR` writes them all.
pub fn man(page: &[String], dir: Option<&Path>) -> Result<ExitCode> {
    if let Some(dir) = dir {
        for name in write_all(dir)? {
            println!("{}", dir.join(name).display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = Vec::new();
    match page {
        [one] if one == "hvbox.yaml" => out.extend_from_slice(spec_page().as_bytes()),
        _ => render(&command_at(page)?, &mut out)?,
    }
    print(&out)
}

fn spec_page() -> String {
    spec_manual::page(&crate::spec::schema::schema(), env!("CARGO_PKG_VERSION"))
}

/// The command `path` names (`box list`), built so its page names it `hvbox-box-list`.
fn command_at(path: &[String]) -> Result<clap::Command> {
    let mut cmd = visible(&Cli::command());
    cmd.build();
    for word in path {
        let Some(sub) = cmd.find_subcommand(word).cloned() else {
            return Err(BadArguments(format!(
                "hvbox man: no command `{}` (`hvbox man hvbox.yaml` is the spec's page)",
                path.join(" ")
            ))
            .into());
        };
        cmd = sub;
    }
    Ok(cmd)
}

/// A command's page, with SEE ALSO naming its subcommands' pages (and, for hvbox
/// itself, the spec's).
fn render(cmd: &clap::Command, out: &mut Vec<u8>) -> Result<()> {
    clap_mangen::Man::new(cmd.clone())
        .source(format!("hvbox {}", env!("CARGO_PKG_VERSION")))
        .manual("hvbox manual")
        .render(out)?;
    let mut see: Vec<String> = cmd
        .get_subcommands()
        .map(|s| format!(".BR {} (1)", page_name(s)))
        .collect();
    if cmd.get_name() == "hvbox" {
        see.push(".BR hvbox.yaml (5)".into());
    } else {
        see.insert(0, ".BR hvbox (1)".into());
    }
    writeln!(out, ".SH \"SEE ALSO\"\n{}", see.join(",\n"))?;
    Ok(())
}

fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or(cmd.get_name())
        .replace('-', "\\-")
}

/// Every page into `dir`: hvbox.1, one hvbox-COMMAND.1 per command, hvbox.yaml.5.
fn write_all(dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut root = visible(&Cli::command());
    root.build();
    let mut written = Vec::new();
    let mut todo = vec![root];
    while let Some(cmd) = todo.pop() {
        let name = format!("{}.1", cmd.get_display_name().unwrap_or(cmd.get_name()));
        let mut page = Vec::new();
        render(&cmd, &mut page)?;
        write_file(&dir.join(&name), &page)?;
        written.push(name);
        todo.extend(cmd.get_subcommands().cloned());
    }
    write_file(&dir.join("hvbox.yaml.5"), spec_page().as_bytes())?;
    written.push("hvbox.yaml.5".into());
    written.sort();
    Ok(written)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `cmd` without its hidden subcommands and arguments, and without clap's `help`
/// subcommand (each command's -h is its help).
fn visible(cmd: &clap::Command) -> clap::Command {
    // clap cannot take a subcommand back out: rebuild the list without the hidden.
    let mut out = strip_subcommands(cmd);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(visible(sub));
    }
    out
}

/// `cmd` with no subcommands: a copy of its settings, arguments and texts.
fn strip_subcommands(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(forever(cmd.get_name()))
        .disable_help_subcommand(true)
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommand_required(cmd.is_subcommand_required_set())
        .arg_required_else_help(cmd.is_arg_required_else_help_set());
    if let Some(v) = cmd.get_version() {
        out = out.version(forever(v));
    }
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    if let Some(a) = cmd.get_long_about() {
        out = out.long_about(a.clone());
    }
    if let Some(a) = cmd.get_after_long_help() {
        out = out.after_long_help(a.clone());
    }
    for alias in cmd.get_visible_aliases() {
        out = out.visible_alias(forever(alias));
    }
    out
}

/// clap takes its names as `'static` (without its `string` feature); these few
/// copies live as long as the process, which only prints a script or a page.
fn forever(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// All at once, and a closed pipe (`| head`) is not an error.
fn print(bytes: &[u8]) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_commands_are_left_out() {
        let cmd = visible(&Cli::command());
        assert!(cmd.find_subcommand("supervise").is_none());
        assert!(cmd.find_subcommand("complete-names").is_none());
        assert!(cmd.find_subcommand("up").is_some());
        assert!(cmd
            .find_subcommand("box")
            .and_then(|b| b.find_subcommand("list"))
            .is_some());
    }
}
