//! The end of an offline run: how every instance stands, as text lines or JSON lines.

use super::session::FinalState;
use super::trace::{Tracker, format_relative};
use serde_json::{Value, json};

/// One text line per instance: label, state, status, whether it is still live, armed timers.
pub fn final_states_text(states: &[FinalState], tracker: &Tracker) -> Vec<String> {
    let width = states.iter().map(|state| state.known.label.len()).max().unwrap_or(0);
    let state_width = states.iter().map(|state| state.known.state.len()).max().unwrap_or(0);
    states
        .iter()
        .map(|state| {
            let known = &state.known;
            let mut line = format!(
                "  {:<width$}  {:<state_width$}  {}",
                known.label,
                known.state,
                known.status.as_str()
            );
            if !known.live {
                line.push_str(" (finished)");
            }
            if !state.timers.is_empty() {
                let timers: Vec<String> = state
                    .timers
                    .iter()
                    .map(|(event, due)| format!("{event} at {}", format_relative(*due)))
                    .collect();
                line.push_str(&format!("  timers: {}", timers.join(", ")));
            }
            line.push_str(&format!(
                "  {}",
                tracker.render_value(&Value::Object(known.context.as_ref().clone()))
            ));
            line
        })
        .collect()
}

/// One JSON object per instance (`kind: "final_state"`).
pub fn final_states_json(states: &[FinalState]) -> Vec<Value> {
    states
        .iter()
        .map(|state| {
            let known = &state.known;
            let timers: Vec<Value> = state
                .timers
                .iter()
                .map(|(event, due)| json!({"event": event, "dueAt": due}))
                .collect();
            json!({
                "kind": "final_state",
                "instance": known.label,
                "instanceId": known.id,
                "componentName": &*known.component,
                "machineName": &*known.machine,
                "currentState": &*known.state,
                "status": known.status,
                "live": known.live,
                "context": &*known.context,
                "pendingTimers": timers,
            })
        })
        .collect()
}
