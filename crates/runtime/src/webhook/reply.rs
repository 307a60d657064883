//! What a webhook answers: a patch of the instance data and sender actions, the same ones a
//! Rust handler has (`sendToSelf`, `sendTo`, `sendToComponent`, `broadcast`, `createInstance`,
//! `createInstanceInComponent`).
//!
//! ```json
//! {"context": {"checked": true},
//!  "actions": [{"type": "sendToSelf", "event": "VALIDATE", "payload": {}},
//!              {"type": "createInstance", "machine": "Invoice", "context": {"amount": 5}}]}
//! ```
//!
//! An empty body (or `{}`) changes nothing. The patch sets top-level keys, like a payload merge.

use serde::Deserialize;
use xcomponent_core::effect::{MAX_COMMANDS_PER_HOOK, Sender};
use xcomponent_core::instance::{Context, InstanceId};

/// A webhook's reply.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookReply {
    /// Top-level keys to set in the instance data.
    #[serde(default)]
    pub context: Context,
    /// What to send or create, in order, once the reply is stored.
    #[serde(default)]
    pub actions: Vec<HookAction>,
}

/// One sender action of a reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum HookAction {
    /// An event to the instance whose hook it is.
    #[serde(rename_all = "camelCase")]
    SendToSelf {
        /// Event type.
        event: String,
        /// Payload.
        #[serde(default)]
        payload: Context,
    },
    /// An event to an instance of the same component.
    #[serde(rename_all = "camelCase")]
    SendTo {
        /// The target.
        instance_id: InstanceId,
        /// Event type.
        event: String,
        /// Payload.
        #[serde(default)]
        payload: Context,
    },
    /// An event to an instance of another component.
    #[serde(rename_all = "camelCase")]
    SendToComponent {
        /// Its component.
        component: String,
        /// The target.
        instance_id: InstanceId,
        /// Event type.
        event: String,
        /// Payload.
        #[serde(default)]
        payload: Context,
    },
    /// An event to the instances of a machine (optionally in one state, of another component)
    /// that the target transitions' matching rules pick.
    #[serde(rename_all = "camelCase")]
    Broadcast {
        /// Component (default: the instance's).
        #[serde(default)]
        component: Option<String>,
        /// Target machine.
        machine: String,
        /// Only instances in this state.
        #[serde(default)]
        state: Option<String>,
        /// Event type.
        event: String,
        /// Payload.
        #[serde(default)]
        payload: Context,
    },
    /// A new instance of a machine of the same component.
    #[serde(rename_all = "camelCase")]
    CreateInstance {
        /// Its machine.
        machine: String,
        /// Its data.
        #[serde(default)]
        context: Context,
    },
    /// A new instance in another component.
    #[serde(rename_all = "camelCase")]
    CreateInstanceInComponent {
        /// Its component.
        component: String,
        /// Its machine.
        machine: String,
        /// Its data.
        #[serde(default)]
        context: Context,
    },
}

impl HookReply {
    /// Parses a reply body (empty: nothing to do); refuses more than `MAX_COMMANDS_PER_HOOK`
    /// actions.
    pub fn parse(body: &[u8]) -> Result<HookReply, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(HookReply::default());
        }
        let reply: HookReply =
            serde_json::from_slice(body).map_err(|error| format!("invalid reply: {error}"))?;
        if reply.actions.len() > MAX_COMMANDS_PER_HOOK {
            return Err(format!("more than {MAX_COMMANDS_PER_HOOK} actions in one reply"));
        }
        Ok(reply)
    }

    /// Records the actions on `sender` (the same API a Rust handler uses, so created
    /// instances get ids derived from the step).
    pub(crate) fn issue(self, sender: &mut Sender) {
        for action in self.actions {
            match action {
                HookAction::SendToSelf { event, payload } => sender.send_to_self(event, payload),
                HookAction::SendTo { instance_id, event, payload } => {
                    sender.send_to(instance_id, event, payload)
                }
                HookAction::SendToComponent { component, instance_id, event, payload } => {
                    sender.send_to_component(component, instance_id, event, payload)
                }
                HookAction::Broadcast { component: None, machine, state, event, payload } => {
                    sender.broadcast(machine, state.as_deref(), event, payload)
                }
                HookAction::Broadcast {
                    component: Some(component),
                    machine,
                    state,
                    event,
                    payload,
                } => sender.broadcast_to_component(
                    component,
                    machine,
                    state.as_deref(),
                    event,
                    payload,
                    Vec::new(),
                ),
                HookAction::CreateInstance { machine, context } => {
                    sender.create_instance(machine, context);
                }
                HookAction::CreateInstanceInComponent { component, machine, context } => {
                    sender.create_instance_in_component(component, machine, context);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_with_every_action() {
        assert_eq!(HookReply::parse(b" \n").expect("empty"), HookReply::default());
        let body = br#"{"context": {"ok": true}, "actions": [
            {"type": "sendToSelf", "event": "A"},
            {"type": "broadcast", "machine": "M", "state": "S", "event": "B", "payload": {"x": 1}},
            {"type": "createInstanceInComponent", "component": "C", "machine": "M"}]}"#;
        let reply = HookReply::parse(body).expect("valid reply");
        assert_eq!(reply.context.get("ok"), Some(&serde_json::Value::Bool(true)));
        assert_eq!(reply.actions.len(), 3);
        let error = HookReply::parse(br#"{"actions": [{"type": "explode"}]}"#).expect_err("bad");
        assert!(error.starts_with("invalid reply"), "{error}");
    }
}
