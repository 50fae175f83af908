//! grub's environment block (`grubenv`): `saved_entry` names the default
//! entry, and older Fedora keeps the kernel arguments in `kernelopts`.

use std::collections::HashMap;

/// `key=value` lines; the `#` padding and comments are ignored.
pub(crate) fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Replace arguments that are exactly `$name` or `${name}` by the words of
/// that grubenv variable, as grub does for BLS `options $kernelopts`.
/// Unknown variables are kept (and later dropped with other `$` args).
pub(crate) fn expand(args: &[String], env: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for arg in args {
        let name = arg
            .strip_prefix("${")
            .and_then(|a| a.strip_suffix('}'))
            .or_else(|| arg.strip_prefix('$'));
        match name.and_then(|n| env.get(n)) {
            Some(value) => out.extend(value.split_whitespace().map(str::to_string)),
            None => out.push(arg.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_expands() {
        let env = parse(
            "# GRUB Environment Block\nsaved_entry=abc-6.5.6-300.fc39.x86_64\n\
             kernelopts=root=UUID=12 ro rootflags=subvol=root\nboot_success=1\n###########",
        );
        assert_eq!(env["saved_entry"], "abc-6.5.6-300.fc39.x86_64");
        let args: Vec<String> = ["$kernelopts", "quiet", "${boot_success}", "$tuned_params"]
            .map(String::from)
            .into();
        assert_eq!(
            expand(&args, &env).join(" "),
            "root=UUID=12 ro rootflags=subvol=root quiet 1 $tuned_params"
        );
        assert!(parse("\u{0}\u{ff}garbage\n=x\n").is_empty());
    }
}
