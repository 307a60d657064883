//! How an envelope travels on a bus: JSON with the envelope layout version, so a receiver of
//! another version says clearly what it cannot read; and how receipts travel back (a list of
//! message ids, one bus message per commit and sender).

use crate::partition::PartitionTag;
use serde::{Deserialize, Serialize};
use xcomponent_core::bus::QueueMessage;
use xcomponent_core::message::{ENVELOPE_SCHEMA_VERSION, Envelope, MessageBody, MessageId};

#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    envelope: &'a Envelope,
    /// A command whose sender waits for its outcome: the channel to answer on.
    #[serde(rename = "replyTo", skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    /// Sent again (the outbox sweep, or the relay after a restart): it may have been applied
    /// already, so the receiver reads its inbox first.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    resent: bool,
    /// The copy of a delivery by selector for one partition of a shared component: it reaches
    /// the instances of that partition only.
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<PartitionTag>,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    envelope: Envelope,
    #[serde(rename = "replyTo", default)]
    reply_to: Option<String>,
    #[serde(default)]
    resent: bool,
    #[serde(default)]
    partition: Option<PartitionTag>,
}

/// A message read from a queue: the envelope, and where to answer when its sender waits.
pub(crate) struct Received {
    pub envelope: Envelope,
    pub reply_to: Option<String>,
    /// The sender sent it again: it may be a copy of one applied already.
    pub resent: bool,
    /// For the copy of a delivery by selector: the partition it is for.
    pub partition: Option<PartitionTag>,
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

/// The queue message carrying `envelope`; `resent` when it may have been sent before;
/// `partition` for the copy of a delivery by selector for one partition.
pub(crate) fn encode(
    envelope: &Envelope,
    resent: bool,
    partition: Option<PartitionTag>,
) -> Result<QueueMessage, serde_json::Error> {
    encode_message(envelope, None, resent, partition)
}

/// The queue message carrying `envelope`, answered on `reply_to` when given.
pub(crate) fn encode_command(
    envelope: &Envelope,
    reply_to: Option<&str>,
) -> Result<QueueMessage, serde_json::Error> {
    encode_message(envelope, reply_to, false, None)
}

fn encode_message(
    envelope: &Envelope,
    reply_to: Option<&str>,
    resent: bool,
    partition: Option<PartitionTag>,
) -> Result<QueueMessage, serde_json::Error> {
    let outgoing =
        Outgoing { schema_version: ENVELOPE_SCHEMA_VERSION, envelope, reply_to, resent, partition };
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
    Ok(Received {
        envelope: incoming.envelope,
        reply_to: incoming.reply_to,
        resent: incoming.resent,
        partition: incoming.partition,
    })
}

/// A receipt: the messages one commit stored as done (applied, duplicates or dead-lettered).
#[derive(Serialize, Deserialize)]
struct Receipt {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    received: Vec<MessageId>,
}

/// The channel message carrying the receipt of `received`.
pub(crate) fn encode_receipt(received: &[MessageId]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Receipt {
        schema_version: ENVELOPE_SCHEMA_VERSION,
        received: received.to_vec(),
    })
}

/// The message ids in a receipt, or why it cannot be read.
pub(crate) fn decode_receipt(body: &[u8]) -> Result<Vec<MessageId>, String> {
    let receipt: Receipt =
        serde_json::from_slice(body).map_err(|error| format!("not a receipt: {error}"))?;
    if receipt.schema_version != ENVELOPE_SCHEMA_VERSION {
        return Err(format!(
            "receipt layout {} is not the one this runtime reads",
            receipt.schema_version
        ));
    }
    Ok(receipt.received)
}
