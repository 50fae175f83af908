//! What is wrong with a spec, and where: one [`SpecError`] per problem, gathered in
//! [`SpecProblems`], the error of every spec check.

use super::locate::{error_at, Step};
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem, with the file, line and column it is at (when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.path.display(), self.message),
            _ => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    /// A problem without a place in the file.
    pub fn whole(path: &Path, message: impl Into<String>) -> SpecError {
        SpecError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// serde_yaml's error, its position moved up front.
    pub fn from_yaml(path: &Path, e: &serde_yaml::Error) -> SpecError {
        let location = e.location();
        SpecError {
            path: path.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message: strip_location(&e.to_string()),
        }
    }

    /// `message` at the node `at` leads to in the spec `text` (with that node's path
    /// in front, as serde_yaml writes it: `machines.web.disks[0].path: …`).
    pub fn at(path: &Path, text: &str, at: &[Step], message: &str) -> SpecError {
        SpecError::from_yaml(path, &error_at(text, at, message))
    }
}

/// serde_yaml ends its messages with " at line L column C"; we print that up front.
pub fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

/// Every problem found in a spec, in the order of the file, each once.
#[derive(Debug)]
pub struct SpecProblems {
    path: PathBuf,
    problems: Vec<SpecError>,
}

impl SpecProblems {
    pub fn new(path: &Path, mut problems: Vec<SpecError>) -> SpecProblems {
        // Problems without a position (a file that cannot be read) go last.
        problems.sort_by(|a, b| {
            let key = |p: &SpecError| (p.line.is_none(), p.line, p.column);
            key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
        });
        // Machines that take the same top-level key meet the same problem.
        problems.dedup();
        SpecProblems {
            path: path.to_path_buf(),
            problems,
        }
    }

    /// The lines printed before the error line: every problem, when there are
    /// several (one problem is the error line itself).
    pub fn details(&self) -> Vec<String> {
        match self.problems.as_slice() {
            [_] => Vec::new(),
            all => all.iter().map(ToString::to_string).collect(),
        }
    }
}

/// One problem as itself; several as how many, [`SpecProblems::details`] listing them.
impl fmt::Display for SpecProblems {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => one.fmt(f),
            all => {
                let name = self.path.file_name().unwrap_or(self.path.as_os_str());
                write!(f, "{} has {} problems", name.to_string_lossy(), all.len())
            }
        }
    }
}

impl std::error::Error for SpecProblems {}
