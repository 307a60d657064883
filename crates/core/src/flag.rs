//! Boolean settings written as text (environment variables, query strings): the one parser every
//! crate uses, so `CREATE_DEMO_INSTANCE=1`, `=yes` and `=true` mean the same everywhere.
//!
//! Accepted, in any letter case and with surrounding spaces ignored: `1`/`0`, `true`/`false`,
//! `yes`/`no`, `on`/`off`, `y`/`n`. Anything else is an error naming what is accepted (an empty
//! value included: a typo must not silently mean "off").

/// The spellings accepted, for error messages and help texts.
pub const ACCEPTED: &str = "1/0, true/false, yes/no, on/off (any case)";

/// A value that is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a boolean: use {ACCEPTED}")]
pub struct Error {
    /// The text that was given.
    pub value: String,
}

/// Parses one boolean setting.
pub fn parse(value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Ok(true),
        "0" | "false" | "no" | "off" | "n" => Ok(false),
        _ => Err(Error { value: value.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_spellings_are_accepted_in_any_case() {
        for yes in ["1", "true", "TRUE", "Yes", "on", " y "] {
            assert_eq!(parse(yes), Ok(true), "{yes:?}");
        }
        for no in ["0", "false", "False", "NO", "off", "n"] {
            assert_eq!(parse(no), Ok(false), "{no:?}");
        }
    }

    #[test]
    fn anything_else_is_an_error_that_says_what_to_write() {
        for bad in ["", "2", "enabled", "tru"] {
            let error = parse(bad).expect_err(bad);
            assert!(error.to_string().contains("1/0, true/false, yes/no, on/off"), "{error}");
        }
    }
}
