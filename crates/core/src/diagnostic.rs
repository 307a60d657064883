//! Diagnostics: one problem found in a component file, with its stable code, its position
//! (`file:line:column` plus the YAML path) and a one-line hint saying how to fix it.
//!
//! Loading (`crate::load`) and validation (`crate::validate`) both report through this type, so
//! the CLI, the server and the tests render every problem the same way. The codes and their
//! explanation pages live in [`codes`].

pub mod codes;

use serde::Serialize;
use std::fmt;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The component cannot be loaded or would misbehave: `validate` exits 1.
    Error,
    /// Probably a mistake, or something that is ignored; an error under `--strict`.
    Warning,
    /// Information about how the file will be understood; never fails validation.
    Note,
}

impl Severity {
    /// The lowercase word used in rendered diagnostics (`error`, `warning`, `note`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A line and column in a file, both counted from 1 (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl Position {
    /// A position from 1-based line and column.
    pub fn new(line: u32, column: u32) -> Position {
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.line, self.column)
    }
}

/// One problem found in a component file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error, warning or note.
    pub severity: Severity,
    /// Stable code (`XC0107`); `xcomponent-ai explain CODE` prints its page.
    pub code: &'static str,
    /// What is wrong, naming the machine/state/transition concerned.
    pub message: String,
    /// The file as the user named it.
    pub file: String,
    /// Line of the offending node, from 1; 0 when the problem concerns the whole file (I/O).
    pub line: u32,
    /// Column of the offending node, from 1; 0 when `line` is 0.
    pub column: u32,
    /// YAML path of the offending node (`stateMachines[0].transitions[3].to`); empty for the root.
    pub path: String,
    /// One line saying how to fix it; may be empty.
    pub hint: String,
}

impl Diagnostic {
    /// A diagnostic without position yet (see [`Diagnostic::at`]).
    pub fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            file: String::new(),
            line: 0,
            column: 0,
            path: String::new(),
            hint: String::new(),
        }
    }

    /// Places the diagnostic in `file` at `position`, on the node at `path`.
    pub fn at(mut self, file: &str, position: Position, path: impl Into<String>) -> Diagnostic {
        self.file = file.to_owned();
        self.line = position.line;
        self.column = position.column;
        self.path = path.into();
        self
    }

    /// Adds the one-line fix hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = hint.into();
        self
    }

    /// The position, when the diagnostic has one.
    pub fn position(&self) -> Option<Position> {
        (self.line > 0).then(|| Position::new(self.line, self.column))
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position() {
            Some(position) => write!(formatter, "{}:{}: ", self.file, position)?,
            None => write!(formatter, "{}: ", self.file)?,
        }
        write!(formatter, "{}[{}]: {}", self.severity, self.code, self.message)?;
        if !self.hint.is_empty() {
            write!(formatter, "\n  = hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// How many diagnostics of each severity a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SeverityCounts {
    /// Errors.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Notes.
    pub notes: usize,
}

impl SeverityCounts {
    /// Counts the diagnostics of `diagnostics` by severity.
    pub fn of(diagnostics: &[Diagnostic]) -> SeverityCounts {
        let mut counts = SeverityCounts::default();
        for diagnostic in diagnostics {
            match diagnostic.severity {
                Severity::Error => counts.errors += 1,
                Severity::Warning => counts.warnings += 1,
                Severity::Note => counts.notes += 1,
            }
        }
        counts
    }
}

impl fmt::Display for SeverityCounts {
    /// `2 errors, 1 warning, 0 notes`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |count: usize, word: &str| {
            if count == 1 { format!("1 {word}") } else { format!("{count} {word}s") }
        };
        write!(
            formatter,
            "{}, {}, {}",
            plural(self.errors, "error"),
            plural(self.warnings, "warning"),
            plural(self.notes, "note")
        )
    }
}

/// Whether any diagnostic of the list is an error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_code_message_and_hint() {
        let diagnostic = Diagnostic::new(
            Severity::Error,
            "XC0107",
            "transition goes to unknown state \"Shiped\"",
        )
        .at("orders.yaml", Position::new(12, 9), "stateMachines[0].transitions[3].to")
        .with_hint("declare the state or fix the name (known: Shipped, Paid)");
        assert_eq!(
            diagnostic.to_string(),
            "orders.yaml:12:9: error[XC0107]: transition goes to unknown state \"Shiped\"\n  = hint: declare the state or fix the name (known: Shipped, Paid)"
        );
    }

    #[test]
    fn renders_file_level_problem_without_position_or_hint() {
        let diagnostic = Diagnostic::new(Severity::Error, "XC0001", "cannot read the file").at(
            "missing.yaml",
            Position::default(),
            "",
        );
        assert_eq!(diagnostic.to_string(), "missing.yaml: error[XC0001]: cannot read the file");
    }

    #[test]
    fn serializes_to_json_with_lowercase_severity() {
        let diagnostic = Diagnostic::new(Severity::Warning, "XC0601", "unknown key").at(
            "a.yaml",
            Position::new(1, 2),
            "foo",
        );
        let json = serde_json::to_value(&diagnostic).unwrap_or_default();
        assert_eq!(json["severity"], "warning");
        assert_eq!(json["code"], "XC0601");
        assert_eq!(json["line"], 1);
        assert_eq!(json["column"], 2);
    }

    #[test]
    fn counts_by_severity() {
        let make = |severity| Diagnostic::new(severity, "XC0000", "x");
        let counts = SeverityCounts::of(&[
            make(Severity::Error),
            make(Severity::Note),
            make(Severity::Note),
        ]);
        assert_eq!(counts.to_string(), "1 error, 0 warnings, 2 notes");
    }
}
