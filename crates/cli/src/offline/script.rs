//! The inputs of `run` and `simulate`: the `--context` object and the `--events` list.
//!
//! An events list is a JSON array; each item is one step:
//!
//! | item | meaning |
//! | --- | --- |
//! | `"SUBMIT"` | send `SUBMIT` with an empty payload to the main instance |
//! | `{"type": "SUBMIT", "payload": {...}}` | the same with a payload |
//! | `{"advanceMs": 1000}` | move the manual clock forward and fire the timers that fall due |
//! | `{"machine": "Payment", "type": "PROCESS"}` | send to the latest live instance of a machine |
//! | `{"machine": "Payment", "where": {"orderId": "O2"}, "type": ...}` | ... whose data has these values |
//! | `{"instance": "Payment#2", "type": ...}` | send to an instance by trace label, id, or machine name |
//! | `{"create": "Order", "context": {...}}` | create another instance |
//! | `{"broadcast": "Order", "type": ..., "state": "Pending"}` | send to every instance the machine's matching rules select |
//!
//! `component` narrows `machine`/`create`/`broadcast` to one component; `comment` is allowed anywhere and
//! ignored. Every error names the item (counted from 1) and what is wrong with it.

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Map, Value};
use std::path::Path;
use xcomponent_core::instance::{Context, InstanceId};

/// Which instance an event goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The instance the command created (`--machine`).
    Main,
    /// An instance id.
    Id(InstanceId),
    /// A trace label: the number after `#` (`Payment#2`, `#2`).
    Label(u32),
    /// The most recently created live instance of a machine whose data holds `filter`.
    Latest {
        /// Only this component.
        component: Option<String>,
        /// The machine.
        machine: String,
        /// Top-level values the instance data must hold (`===`).
        filter: Context,
    },
}

/// One step of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send an event.
    Send {
        /// Where.
        target: Target,
        /// Event type.
        event: String,
        /// Payload.
        payload: Context,
    },
    /// Move the manual clock forward, firing the timers that fall due on the way.
    Advance {
        /// How far, in milliseconds.
        ms: u64,
    },
    /// Send an event to every instance of a machine (in `state`, when given) that the machine's
    /// matching rules for this event select (all of them when the event has no rules).
    Broadcast {
        /// Only this component.
        component: Option<String>,
        /// The machine.
        machine: String,
        /// Only instances in this state.
        state: Option<String>,
        /// Event type.
        event: String,
        /// Payload.
        payload: Context,
    },
    /// Create an instance.
    Create {
        /// Only this component.
        component: Option<String>,
        /// The machine.
        machine: String,
        /// Initial data.
        context: Context,
    },
}

/// A parsed item with its position, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Position in the list, from 1.
    pub number: usize,
    /// The item as written (compact JSON), for messages.
    pub text: String,
    /// What to do.
    pub step: Step,
}

/// Reads an argument that is either JSON text or `@path` to a JSON file.
pub fn read_json_argument(argument: &str, what: &str) -> Result<Value> {
    let (text, origin) = match argument.strip_prefix('@') {
        Some(path) => {
            let text = std::fs::read_to_string(Path::new(path))
                .with_context(|| format!("{what}: cannot read {path}"))?;
            (text, format!("{what} (file {path})"))
        }
        None => (argument.to_owned(), what.to_owned()),
    };
    serde_json::from_str(&text).map_err(|error| anyhow!("{origin} is not valid JSON: {error}"))
}

/// Parses `--context`: a JSON object (or `@file.json`).
pub fn parse_context_argument(argument: Option<&str>) -> Result<Context> {
    let Some(argument) = argument else { return Ok(Context::new()) };
    match read_json_argument(argument, "--context")? {
        Value::Object(map) => Ok(map),
        other => bail!(
            "--context must be a JSON object such as {{\"orderId\": \"O1\"}}, found {}",
            kind_of(&other)
        ),
    }
}

/// Parses `--events`: a JSON array of items (or `@file.json`).
pub fn parse_events_argument(argument: Option<&str>) -> Result<Vec<Item>> {
    let Some(argument) = argument else { return Ok(Vec::new()) };
    let value = read_json_argument(argument, "--events")?;
    parse_items(&value).context("--events")
}

/// Parses a JSON array of items.
pub fn parse_items(value: &Value) -> Result<Vec<Item>> {
    let Value::Array(items) = value else {
        bail!(
            "expected a JSON array of events such as [\"SUBMIT\", {{\"type\": \"PAY\"}}], found {}",
            kind_of(value)
        )
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let number = index + 1;
            let text = item.to_string();
            parse_item(item)
                .map(|step| Item { number, text: text.clone(), step })
                .with_context(|| format!("item {number} `{text}` is wrong"))
        })
        .collect()
}

/// Parses one item.
pub fn parse_item(item: &Value) -> Result<Step> {
    match item {
        Value::String(event) => {
            let event = event.trim();
            if event.is_empty() {
                bail!("an event name cannot be empty");
            }
            Ok(Step::Send {
                target: Target::Main,
                event: event.to_owned(),
                payload: Context::new(),
            })
        }
        Value::Object(fields) => parse_object(fields),
        other => bail!("expected an event name or an object, found {}", kind_of(other)),
    }
}

fn parse_object(fields: &Map<String, Value>) -> Result<Step> {
    if let Some(ms) = fields.get("advanceMs") {
        allow_keys(fields, &["advanceMs"])?;
        let ms = ms.as_u64().ok_or_else(|| {
            anyhow!("\"advanceMs\" must be a whole number of milliseconds >= 0, found {ms}")
        })?;
        return Ok(Step::Advance { ms });
    }
    if let Some(machine) = fields.get("create") {
        allow_keys(fields, &["create", "component", "context"])?;
        return Ok(Step::Create {
            component: optional_string(fields, "component")?,
            machine: required_name(machine, "create")?,
            context: optional_object(fields, "context")?,
        });
    }
    let broadcast = fields.get("broadcast");
    if broadcast.is_some() {
        allow_keys(fields, &["broadcast", "type", "payload", "state", "component", "timestamp"])?;
    } else {
        allow_keys(
            fields,
            &["type", "payload", "instance", "machine", "component", "where", "timestamp"],
        )?;
    }
    check_timestamp(fields)?;
    let event = match fields.get("type") {
        Some(event) => required_name(event, "type")?,
        None => bail!(
            "an event object needs \"type\" (the event name), or is {{\"advanceMs\": N}} or {{\"create\": \"Machine\"}}"
        ),
    };
    let payload = optional_object(fields, "payload")?;
    if let Some(machine) = broadcast {
        return Ok(Step::Broadcast {
            component: optional_string(fields, "component")?,
            machine: required_name(machine, "broadcast")?,
            state: optional_string(fields, "state")?,
            event,
            payload,
        });
    }
    let component = optional_string(fields, "component")?;
    let filter = optional_object(fields, "where")?;
    let target = match (optional_string(fields, "instance")?, optional_string(fields, "machine")?) {
        (Some(_), Some(_)) => bail!("give either \"instance\" or \"machine\", not both"),
        (Some(instance), None) => {
            if !filter.is_empty() {
                bail!("\"where\" goes with \"machine\", not with \"instance\"");
            }
            parse_instance_reference(&instance, component)
        }
        (None, Some(machine)) => Target::Latest { component, machine, filter },
        (None, None) => {
            if component.is_some() || !filter.is_empty() {
                bail!("\"component\" and \"where\" need \"machine\"");
            }
            Target::Main
        }
    };
    Ok(Step::Send { target, event, payload })
}

/// `#3`, `Payment#3`, an instance id, or a machine name (the latest live instance).
fn parse_instance_reference(reference: &str, component: Option<String>) -> Target {
    if let Ok(id) = reference.parse::<InstanceId>() {
        return Target::Id(id);
    }
    if let Some(number) =
        reference.rsplit_once('#').and_then(|(_, number)| number.parse::<u32>().ok())
    {
        return Target::Label(number);
    }
    Target::Latest { component, machine: reference.to_owned(), filter: Context::new() }
}

/// The original's events carry `timestamp` (epoch milliseconds or a date string); it is accepted
/// so its scripts run, and ignored: the session's clock dates every event (`advanceMs` moves it).
fn check_timestamp(fields: &Map<String, Value>) -> Result<()> {
    match fields.get("timestamp") {
        None | Some(Value::Number(_) | Value::String(_)) => Ok(()),
        Some(other) => bail!(
            "\"timestamp\" must be a number (epoch ms) or a date string, found {}",
            kind_of(other)
        ),
    }
}

fn allow_keys(fields: &Map<String, Value>, allowed: &[&str]) -> Result<()> {
    for key in fields.keys() {
        if key != "comment" && !allowed.contains(&key.as_str()) {
            bail!("unknown key \"{key}\" here (allowed: {}, comment)", allowed.join(", "));
        }
    }
    Ok(())
}

fn required_name(value: &Value, key: &str) -> Result<String> {
    match value.as_str().map(str::trim) {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => bail!("\"{key}\" must be a non-empty string, found {value}"),
    }
}

fn optional_string(fields: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    fields.get(key).map(|value| required_name(value, key)).transpose()
}

fn optional_object(fields: &Map<String, Value>, key: &str) -> Result<Context> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(Context::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(other) => bail!("\"{key}\" must be a JSON object, found {}", kind_of(other)),
    }
}

/// "a number", "an array"... for messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(value: Value) -> Vec<Step> {
        parse_items(&value)
            .map(|items| items.into_iter().map(|item| item.step).collect())
            .unwrap_or_default()
    }

    fn error(value: Value) -> String {
        parse_items(&value).map(|_| String::new()).unwrap_or_else(|error| format!("{error:#}"))
    }

    #[test]
    fn parses_every_item_form() {
        let parsed = steps(json!([
            "SUBMIT",
            {"type": "PAY", "payload": {"amount": 3}},
            {"advanceMs": 1000},
            {"machine": "Payment", "where": {"orderId": "O2"}, "type": "PROCESS", "comment": "second order"},
            {"instance": "Payment#4", "type": "COMPLETE"},
            {"instance": "Payment", "type": "COMPLETE"},
            {"create": "Order", "context": {"orderId": "O3"}},
            {"broadcast": "Order", "state": "Pending", "type": "PING"}
        ]));
        assert_eq!(parsed.len(), 8);
        assert!(
            matches!(&parsed[7], Step::Broadcast { machine, state: Some(state), .. } if machine == "Order" && state == "Pending")
        );
        assert_eq!(
            parsed[0],
            Step::Send { target: Target::Main, event: "SUBMIT".into(), payload: Context::new() }
        );
        assert_eq!(parsed[2], Step::Advance { ms: 1000 });
        assert!(
            matches!(&parsed[3], Step::Send { target: Target::Latest { machine, filter, .. }, .. } if machine == "Payment" && filter["orderId"] == "O2")
        );
        assert_eq!(
            parsed[4],
            Step::Send {
                target: Target::Label(4),
                event: "COMPLETE".into(),
                payload: Context::new()
            }
        );
        assert!(
            matches!(&parsed[5], Step::Send { target: Target::Latest { machine, .. }, .. } if machine == "Payment")
        );
        assert!(matches!(&parsed[6], Step::Create { machine, .. } if machine == "Order"));
    }

    #[test]
    fn errors_name_the_item_and_the_problem() {
        assert!(error(json!(["SUBMIT", 3])).starts_with(
            "item 2 `3` is wrong: expected an event name or an object, found a number"
        ));
        assert!(error(json!([{"typ": "X"}])).contains("unknown key \"typ\""));
        assert!(error(json!([{"advanceMs": -5}])).contains("whole number of milliseconds"));
        assert!(
            error(json!([{"type": "X", "payload": [1]}]))
                .contains("\"payload\" must be a JSON object, found an array")
        );
        assert!(error(json!({"type": "X"})).contains("expected a JSON array"));
        assert!(error(json!([""])).contains("cannot be empty"));
    }

    #[test]
    fn context_must_be_an_object() {
        assert!(parse_context_argument(Some("[1]")).is_err());
        assert!(
            parse_context_argument(Some("{\"a\": 1"))
                .is_err_and(|error| error.to_string().contains("not valid JSON"))
        );
        assert_eq!(parse_context_argument(None).ok(), Some(Context::new()));
    }
}
