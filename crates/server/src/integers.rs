//! Integers a request body cannot carry exactly. serde_json keeps an integer exact when it fits
//! in 64 bits (`i64` or `u64`, so 2^53 + 1 stays 2^53 + 1) and silently turns a longer one into
//! the nearest double. Keeping those exact would take arbitrary precision in every store, guard
//! and index; instead the API refuses them, naming the field, and the client can send a string.
//!
//! The check reads the raw body once more, after it parsed: integer literals (no fraction, no
//! exponent) outside `i64::MIN..=u64::MAX` are reported with their dot path (`context.amount`,
//! `payload.lines.2`). Bodies without a run of 19 digits, that is nearly all, skip the walk.

/// Fewest digits an integer outside the 64-bit range has (u64::MAX has 20; i64::MIN 19).
const SHORTEST_OUT_OF_RANGE: usize = 19;

/// The dot path and the text of the first integer literal of `json` (a valid JSON text) outside
/// the 64-bit range, if any.
pub(crate) fn out_of_range(json: &[u8]) -> Option<(String, String)> {
    if !has_long_digit_run(json) {
        return None;
    }
    let mut path: Vec<Step> = Vec::new();
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'{' => path.push(Step::Key(None)),
            b'[' => path.push(Step::Index(0)),
            b'}' | b']' => {
                path.pop();
            }
            b',' => match path.last_mut() {
                Some(Step::Index(index)) => *index += 1,
                Some(Step::Key(key)) => *key = None,
                None => {}
            },
            b'"' => {
                let end = string_end(json, at);
                // A string right after `{` or `,` in an object is a key.
                if let Some(Step::Key(key @ None)) = path.last_mut() {
                    *key = Some((at, end));
                }
                at = end;
            }
            b'-' | b'0'..=b'9' => {
                let end = json[at..]
                    .iter()
                    .position(|byte| {
                        !matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    })
                    .map_or(json.len(), |length| at + length);
                let literal = &json[at..end];
                if !fits(literal) {
                    let literal = String::from_utf8_lossy(literal).into_owned();
                    return Some((render(json, &path), literal));
                }
                at = end;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// One level of the path: an object key (the byte span of its quoted text, once read) or an
/// array index.
enum Step {
    Key(Option<(usize, usize)>),
    Index(usize),
}

/// Whether `json` holds `SHORTEST_OUT_OF_RANGE` digits in a row anywhere.
fn has_long_digit_run(json: &[u8]) -> bool {
    let mut run = 0;
    for byte in json {
        run = if byte.is_ascii_digit() { run + 1 } else { 0 };
        if run >= SHORTEST_OUT_OF_RANGE {
            return true;
        }
    }
    false
}

/// The index of the closing quote of the string opening at `start`.
fn string_end(json: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while at < json.len() {
        match json[at] {
            b'\\' => at += 2,
            b'"' => return at,
            _ => at += 1,
        }
    }
    json.len()
}

/// Whether a number literal is a double (fraction or exponent) or an integer within 64 bits.
fn fits(literal: &[u8]) -> bool {
    if literal.iter().any(|byte| matches!(byte, b'.' | b'e' | b'E')) {
        return true;
    }
    let Ok(text) = std::str::from_utf8(literal) else { return true };
    if text.starts_with('-') { text.parse::<i64>().is_ok() } else { text.parse::<u64>().is_ok() }
}

/// `context.lines.2.qty`; a key that cannot be decoded is shown as written.
fn render(json: &[u8], path: &[Step]) -> String {
    let parts: Vec<String> = path
        .iter()
        .map(|step| match step {
            Step::Index(index) => index.to_string(),
            Step::Key(Some((start, end))) => {
                let quoted = &json[*start..=(*end).min(json.len() - 1)];
                serde_json::from_slice::<String>(quoted)
                    .unwrap_or_else(|_| String::from_utf8_lossy(quoted).into_owned())
            }
            Step::Key(None) => String::new(),
        })
        .collect();
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Option<(String, String)> {
        out_of_range(json.as_bytes())
    }

    #[test]
    fn sixty_four_bit_integers_and_doubles_pass() {
        assert_eq!(check(r#"{"a": 18446744073709551615, "b": -9223372036854775808}"#), None);
        assert_eq!(check(r#"{"a": 9007199254740993, "b": 1.8446744073709551616e19}"#), None);
        assert_eq!(
            check(r#"{"a": 123456789012345678901234.5, "b": "123456789012345678901234"}"#),
            None
        );
        assert_eq!(check(r#"{"a": 1, "b": [2, 3], "c": {"d": true, "e": null}}"#), None);
    }

    #[test]
    fn a_longer_integer_is_named_by_its_path() {
        let found = check(r#"{"context": {"amount": 18446744073709551616}}"#);
        assert_eq!(found, Some(("context.amount".into(), "18446744073709551616".into())));
        let found = check(r#"{"payload": {"lines": [1, {"q": 2}, {"q": -9223372036854775809}]}}"#);
        assert_eq!(found, Some(("payload.lines.2.q".into(), "-9223372036854775809".into())));
        let found = check(r#"{"a,\"b": {"x": "]}", "y\u0041": [[], 99999999999999999999]}}"#);
        assert_eq!(found, Some(("a,\"b.yA.1".into(), "99999999999999999999".into())));
    }
}
