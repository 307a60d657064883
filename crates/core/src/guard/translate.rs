//! Translating JavaScript's `===` and `!==` into CEL's `==` and `!=`, outside string literals
//! and comments, keeping a map back to the original columns for error messages.

#[allow(unused_imports)]
use super::*;

/// The translated text, and where characters were dropped from the original.
pub(super) struct Translation {
    pub(super) text: String,
    /// Character offsets, in the original, of the characters dropped (ascending).
    pub(super) removed: Vec<usize>,
}

impl Translation {
    /// The character offset in the original text of the character at `offset` in the translation.
    pub(super) fn original_offset(&self, offset: usize) -> usize {
        let mut original = offset;
        for &removed in &self.removed {
            if removed <= original {
                original += 1;
            } else {
                break;
            }
        }
        original
    }
}

/// Rewrites `===` to `==` and `!==` to `!=`, leaving string literals and comments untouched.
pub(super) fn translate_js_operators(text: &str) -> Translation {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut removed = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            let end = string_literal_end(&chars, i, has_raw_prefix(&chars, i));
            out.extend(&chars[i..end]);
            i = end;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            let end = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| i + n);
            out.extend(&chars[i..end]);
            i = end;
        } else if (c == '=' || c == '!')
            && chars.get(i + 1) == Some(&'=')
            && chars.get(i + 2) == Some(&'=')
        {
            out.push(c);
            out.push('=');
            removed.push(i + 2);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Translation { text: out, removed }
}

pub(super) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether the quote at `quote` opens a raw string (`r"..."`, `R'...'`, `br"..."`, `rb"..."`).
pub(super) fn has_raw_prefix(chars: &[char], quote: usize) -> bool {
    let is_prefix = |c: char| matches!(c, 'r' | 'R' | 'b' | 'B');
    let starts_token = |at: usize| at == 0 || !is_ident_char(chars[at - 1]);
    let prefix: &[char] = if quote >= 2
        && is_prefix(chars[quote - 2])
        && is_prefix(chars[quote - 1])
        && !chars[quote - 2].eq_ignore_ascii_case(&chars[quote - 1])
        && starts_token(quote - 2)
    {
        &chars[quote - 2..quote]
    } else if quote >= 1 && is_prefix(chars[quote - 1]) && starts_token(quote - 1) {
        &chars[quote - 1..quote]
    } else {
        &[]
    };
    prefix.iter().any(|c| matches!(c, 'r' | 'R'))
}

/// The offset just past the string literal opening at `start` (or the end of an unterminated one).
pub(super) fn string_literal_end(chars: &[char], start: usize, raw: bool) -> usize {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = if triple { start + 3 } else { start + 1 };
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && !raw {
            i += 2;
        } else if c == quote {
            if !triple {
                return i + 1;
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                return i + 3;
            }
            i += 1;
        } else if c == '\n' && !triple {
            // An unterminated literal: the parser reports it, the rest is code again.
            return i;
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The parser's message, without its grammar jargon.
pub(super) fn readable_syntax_error(message: &str) -> String {
    let message = message.strip_prefix("Syntax error: ").unwrap_or(message);
    let message = message.replace("'<EOF>'", "the end of the expression");
    // "expecting {'[', '{', '(', '.', '-', '!', 'true', ...}": any operand would do.
    match message.find(" expecting {'['") {
        Some(at) => format!("syntax error: {} where a value was expected", &message[..at]),
        None => format!("syntax error: {message}"),
    }
}

/// The character offset of a 1-based (line, column).
pub(super) fn char_offset(text: &str, line: usize, column: usize) -> usize {
    let before: usize = text.split('\n').take(line - 1).map(|l| l.chars().count() + 1).sum();
    before + column - 1
}

/// The 1-based (line, column) of a character offset.
pub(super) fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let mut line = 1u32;
    let mut column = 1u32;
    for c in text.chars().take(offset) {
        if c == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    (line, column)
}
