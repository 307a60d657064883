//! The JSON Schema of a component file, generated from the model types (`schemars`), so it can
//! never disagree with what the loader accepts. Editors use it for completion and checks
//! (`# yaml-language-server: $schema=...`); `xcomponent-ai schema` prints it.
//!
//! Unknown keys are allowed by the schema (the loader keeps them and `validate` warns), so the
//! schema describes the known keys without rejecting files that carry extra ones.

use crate::model::Component;
use serde_json::Value;

/// The JSON Schema (draft 2020-12) of a component file.
pub fn component_json_schema() -> Value {
    let schema = schemars::schema_for!(Component);
    let mut value: Value = schema.into();
    if let Value::Object(object) = &mut value {
        object.insert("title".into(), Value::from("xcomponent-ai component"));
        object.insert(
            "description".into(),
            Value::from("A component: a named set of business state machines deployed together (one YAML file)."),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_component_and_its_nested_types() {
        let schema = component_json_schema();
        assert_eq!(schema["title"], "xcomponent-ai component");
        let required: Vec<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(required, vec!["name"]);
        assert!(schema["properties"]["stateMachines"].is_object());
        let definitions = &schema["$defs"];
        for name in [
            "StateMachine",
            "State",
            "Transition",
            "TransitionType",
            "MatchingRule",
            "CascadingRule",
            "Guard",
        ] {
            assert!(definitions[name].is_object(), "missing definition {name}");
        }
        let transition_required: Vec<&str> = definitions["Transition"]["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(transition_required, vec!["from", "to", "event"]);
    }

    #[test]
    fn does_not_expose_the_extra_keys_field() {
        let text = component_json_schema().to_string();
        assert!(!text.contains("\"extra\""));
    }
}
