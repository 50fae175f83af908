//! Asking the user before deleting things: on a terminal a `[y/N]` question;
//! without one, a refusal that says how to go on (Vagrant's behaviour for destroy).

use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal, Write};

/// Ask `question` on standard error and read the answer from standard input; true
/// only for `y` or `yes`. Without a terminal on standard input nobody can answer:
/// the error is `refusal`, then why and `force_flag`.
pub fn ask(question: &str, refusal: &str, force_flag: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("{refusal}: standard input is not a terminal to ask on; pass {force_flag} to go ahead without asking");
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    // End of input (Ctrl-D) reads nothing: no.
    stdin.lock().read_line(&mut answer)?;
    if answer.is_empty() {
        writeln!(stderr)?;
    }
    Ok(yes(&answer))
}

fn yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_yes_is_yes() {
        for a in ["y\n", "Y", " yes ", "YES\n"] {
            assert!(super::yes(a), "{a:?}");
        }
        for a in ["", "\n", "n", "no", "yep", "maybe"] {
            assert!(!super::yes(a), "{a:?}");
        }
    }
}
