//! How an envelope travels on a bus: JSON with the envelope layout version, so a receiver of
//! another version says clearly what it cannot read.

use serde::{Deserialize, Serialize};
use xcomponent_core::bus::QueueMessage;
use xcomponent_core::message::{ENVELOPE_SCHEMA_VERSION, Envelope, MessageBody};

#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    envelope: &'a Envelope,
    /// A command whose sender waits for its outcome: the channel to answer on.
    #[serde(rename = "replyTo", skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    envelope: Envelope,
    #[serde(rename = "replyTo", default)]
    reply_to: Option<String>,
}

/// A message read from a queue: the envelope, and where to answer when its sender waits.
pub(crate) struct Received {
    pub envelope: Envelope,
    pub reply_to: Option<String>,
}

/// The ordering key of an envelope: its target instance, or its component for a fan-out.
fn key_of(envelope: &Envelope) -> String {
    match &envelope.body {
        MessageBody::Send { instance_id, .. }
        | MessageBody::Create { instance_id, .. }
        | MessageBody::HookCall { instance_id, .. } => instance_id.to_string(),
        MessageBody::Deliver { .. } | MessageBody::Broadcast { .. } => envelope.component.clone(),
    }
}

/// The queue message carrying `envelope`.
pub(crate) fn encode(envelope: &Envelope) -> Result<QueueMessage, serde_json::Error> {
    encode_command(envelope, None)
}

/// The queue message carrying `envelope`, answered on `reply_to` when given.
pub(crate) fn encode_command(
    envelope: &Envelope,
    reply_to: Option<&str>,
) -> Result<QueueMessage, serde_json::Error> {
    let outgoing = Outgoing { schema_version: ENVELOPE_SCHEMA_VERSION, envelope, reply_to };
    let body = serde_json::to_vec(&outgoing)?;
    Ok(QueueMessage { id: envelope.id.to_string(), key: key_of(envelope), body })
}

/// The envelope in a queue message, or why it cannot be read.
pub(crate) fn decode(body: &[u8]) -> Result<Received, String> {
    let incoming: Incoming =
        serde_json::from_slice(body).map_err(|error| format!("not an envelope: {error}"))?;
    if incoming.schema_version != ENVELOPE_SCHEMA_VERSION {
        return Err(format!(
            "envelope layout {} is not the one this runtime reads ({ENVELOPE_SCHEMA_VERSION})",
            incoming.schema_version
        ));
    }
    Ok(Received { envelope: incoming.envelope, reply_to: incoming.reply_to })
}
