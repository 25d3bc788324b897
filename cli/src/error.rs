//! One error type for the whole tool: a one-line message and the exit status it maps to.

use std::fmt;

/// Exit status for a bad invocation or bad input (missing/unreadable/malformed file, mismatched
/// sample rates, too many stems, unwritable output).
pub const EXIT_INPUT: i32 = 2;

/// Exit status when the command ran but found problems (check) or could not meet a target
/// (render).
pub const EXIT_PROBLEMS: i32 = 1;

/// What went wrong, as far as the exit status is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Usage or input error: exit status [`EXIT_INPUT`].
    Input,
    /// The work was done but its result fails the request: exit status [`EXIT_PROBLEMS`].
    Failed,
}

/// A one-line, specific error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// Exit-status class.
    pub kind: ErrorKind,
    /// The message, one line, without the "error:" prefix.
    pub message: String,
}

impl CliError {
    /// A usage or input error (exit status 2).
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Input,
            message: one_line(message.into()),
        }
    }

    /// A result that fails the request (exit status 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Failed,
            message: one_line(message.into()),
        }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Input => EXIT_INPUT,
            ErrorKind::Failed => EXIT_PROBLEMS,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Result alias used throughout the tool.
pub type Result<T> = std::result::Result<T, CliError>;

/// Joins the lines of a message so that every error prints on one line.
fn one_line(message: String) -> String {
    if message.contains('\n') {
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        message
    }
}

/// Describes an I/O error without the "(os error N)" noise.
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "no such file or directory".into(),
        K::PermissionDenied => "permission denied".into(),
        K::IsADirectory => "is a directory".into(),
        K::NotADirectory => "a parent path is not a directory".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}
