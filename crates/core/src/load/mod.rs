//! Loading a component file: YAML text → [`model::Component`] plus a [`SpanIndex`] that knows
//! where every node starts, so that every later diagnostic can say `file:line:column`.
//!
//! Two passes over the same YAML stack (serde-saphyr and the granit parser it is built on):
//! the marked-event pass builds the span index and reports syntax errors and duplicate keys;
//! then serde-saphyr deserializes the model and its errors (wrong type, missing key, unknown
//! enum value) are placed with its own location and named with the span index.

mod spans;
mod tree;

pub use spans::{NodeSpan, SpanIndex, child_index, child_key, parent_path};

use crate::diagnostic::{Diagnostic, Position, Severity, codes};
use crate::model;
use serde_saphyr::MessageFormatter;
use std::path::Path;

/// A component read from a file, with the positions of its nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedComponent {
    /// The model, as written.
    pub component: model::Component,
    /// Where each node of the file starts.
    pub spans: SpanIndex,
    /// The file name diagnostics mention.
    pub file: String,
}

/// Reads and parses a component file. An unreadable file is a diagnostic (`XC0001`), not a panic.
pub fn load_component_file(path: &Path) -> Result<LoadedComponent, Vec<Diagnostic>> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_component(&text, &file),
        Err(error) => {
            let reason = match error.kind() {
                std::io::ErrorKind::InvalidData => "it is not UTF-8 text".to_owned(),
                _ => error.to_string(),
            };
            Err(vec![
                Diagnostic::new(
                    Severity::Error,
                    codes::FILE_UNREADABLE,
                    format!("cannot read the component file: {reason}"),
                )
                .at(&file, Position::default(), "")
                .with_hint(
                    "check the path and the file's permissions; component files are UTF-8 YAML",
                ),
            ])
        }
    }
}

/// Parses the YAML `text` of a component; `file` is only used to label diagnostics.
pub fn parse_component(text: &str, file: &str) -> Result<LoadedComponent, Vec<Diagnostic>> {
    let spans = SpanIndex::build(text).map_err(|problems| {
        problems
            .into_iter()
            .map(|problem| {
                Diagnostic::new(Severity::Error, problem.code, problem.message)
                    .at(file, problem.at, "")
                    .with_hint(problem.hint)
            })
            .collect::<Vec<_>>()
    })?;
    if spans.is_empty() {
        return Err(vec![
            Diagnostic::new(
                Severity::Error,
                codes::WRONG_SHAPE,
                "the file holds no component (the YAML document is empty)",
            )
            .at(file, Position::new(1, 1), "")
            .with_hint("a component is a mapping with at least `name:` and `stateMachines:`"),
        ]);
    }
    let options = serde_saphyr::options! { with_snippet: false };
    match serde_saphyr::from_str_with_options::<model::Component>(text, options) {
        Ok(component) => Ok(LoadedComponent { component, spans, file: file.to_owned() }),
        Err(error) => Err(vec![shape_diagnostic(&error, &spans, file)]),
    }
}

/// Turns a deserialization error into a diagnostic placed on the offending node.
fn shape_diagnostic(error: &serde_saphyr::Error, spans: &SpanIndex, file: &str) -> Diagnostic {
    let reason = plain_reason(&serde_saphyr::UserMessageFormatter.format_message(error));
    let clamp = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
    let position = error
        .location()
        .map(|location| Position::new(clamp(location.line()), clamp(location.column())));
    let mut path =
        position.and_then(|position| spans.path_at(position)).unwrap_or_default().to_owned();
    let missing_field =
        reason.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`'));
    let points_at_a_key = position
        .is_some_and(|position| spans.get(&path).is_some_and(|span| span.key == Some(position)));
    if missing_field.is_some() && points_at_a_key {
        // The error points at one key of the mapping that lacks the field: name the mapping.
        path = parent_path(&path).unwrap_or_default().to_owned();
    }
    let subject = if path.is_empty() { "the component".to_owned() } else { format!("`{path}`") };
    let (message, hint) = if let Some(field) = missing_field {
        (
            format!("{subject} lacks the required key `{field}`"),
            format!("add `{field}:` to this mapping"),
        )
    } else if path.ends_with(".guard") && reason.contains("untagged enum Guard") {
        (
            format!("{subject} must be an expression string or a mapping `{{expression: ...}}`"),
            "write `guard: \"context.amount > 100\"`".to_owned(),
        )
    } else if reason == LIST_EXPECTED {
        (
            format!("{subject} has the wrong type or value: {reason}"),
            "write one `- item` line per element, or `[]` for none".to_owned(),
        )
    } else {
        (
            format!("{subject} has the wrong type or value: {reason}"),
            "compare with the format (`xcomponent-ai schema` prints its JSON Schema)".to_owned(),
        )
    };
    let position = position.unwrap_or_else(|| spans.locate(&path));
    Diagnostic::new(Severity::Error, codes::WRONG_SHAPE, message)
        .at(file, position, path)
        .with_hint(hint)
}

const LIST_EXPECTED: &str = "a list was expected here";

/// Rewords the deserializer's terse messages about expected shapes.
fn plain_reason(reason: &str) -> String {
    match reason {
        "expected sequence start" => LIST_EXPECTED.to_owned(),
        "expected mapping start" | "expected map" => {
            "a mapping (`key: value` lines) was expected here".to_owned()
        }
        "expected string scalar" => "a text value was expected here".to_owned(),
        "invalid u64" | "invalid u32" | "invalid usize" => {
            "a whole number of at least 0 was expected here".to_owned()
        }
        "invalid bool" | "invalid boolean" => "true or false was expected here".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(result: Result<LoadedComponent, Vec<Diagnostic>>) -> String {
        match result {
            Ok(_) => "loaded".to_owned(),
            Err(diagnostics) => {
                diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
            }
        }
    }

    #[test]
    fn loads_a_minimal_component() {
        let loaded = parse_component(
            "name: C\nstateMachines:\n  - name: M\n    initialState: A\n    states: [{name: A}]\n",
            "c.yaml",
        );
        let Ok(loaded) = loaded else { panic!("should load: {}", render(loaded)) };
        assert_eq!(loaded.component.state_machines[0].initial_state, "A");
        assert_eq!(
            loaded.spans.value_position("stateMachines[0].states[0].name"),
            Some(Position::new(5, 21))
        );
    }

    #[test]
    fn type_error_names_the_node_and_its_position() {
        let text = "name: C\nstateMachines:\n  - name: M\n    initialState: A\n    transitions:\n      - {from: A, to: A, event: E, timeoutMs: soon}\n";
        let rendered = render(parse_component(text, "c.yaml"));
        assert!(rendered.starts_with("c.yaml:6:47: error[XC0003]: `stateMachines[0].transitions[0].timeoutMs` has the wrong type"), "{rendered}");
    }

    #[test]
    fn missing_key_names_the_mapping() {
        let rendered = render(parse_component(
            "name: C\nstateMachines:\n  - name: M\n    states: []\n",
            "c.yaml",
        ));
        assert!(
            rendered.contains(
                "error[XC0003]: `stateMachines[0]` lacks the required key `initialState`"
            ),
            "{rendered}"
        );
    }

    #[test]
    fn missing_key_in_an_empty_mapping_names_that_mapping() {
        let text = "name: C\nstateMachines:\n  - name: M\n    initialState: A\n    transitions:\n      - {}\n";
        let rendered = render(parse_component(text, "c.yaml"));
        assert!(rendered.starts_with("c.yaml:6:9: error[XC0003]: `stateMachines[0].transitions[0]` lacks the required key `from`"), "{rendered}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let rendered = render(parse_component("name: \"open\nstateMachines: []\n", "c.yaml"));
        assert!(rendered.starts_with("c.yaml:1:7: error[XC0002]"), "{rendered}");
    }

    #[test]
    fn duplicate_keys_are_all_reported() {
        let rendered = render(parse_component(
            "name: A\nname: B\nstateMachines: []\nstateMachines: []\n",
            "c.yaml",
        ));
        assert_eq!(rendered.matches("error[XC0004]").count(), 2, "{rendered}");
        assert!(
            rendered.starts_with("c.yaml:2:1: error[XC0004]: key `name` appears twice"),
            "{rendered}"
        );
    }

    #[test]
    fn empty_file_is_a_shape_error() {
        assert!(
            render(parse_component("# only a comment\n", "c.yaml"))
                .contains("error[XC0003]: the file holds no component")
        );
    }

    #[test]
    fn unreadable_file_is_a_diagnostic() {
        let rendered = render(load_component_file(Path::new("/nonexistent/dir/component.yaml")));
        assert!(
            rendered.starts_with(
                "/nonexistent/dir/component.yaml: error[XC0001]: cannot read the component file"
            ),
            "{rendered}"
        );
    }
}
