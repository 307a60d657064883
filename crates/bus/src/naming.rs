//! How logical names map onto each broker's names.
//!
//! The runtime speaks in the seeds' logical names: a component's queue is `xcomponent:<Component>`
//! and channels are `fsm:registry:announce`, `fsm:events:state_change`, … Each backend maps them:
//!
//! | logical | Redis | RabbitMQ | Kafka | NATS |
//! | --- | --- | --- | --- | --- |
//! | queue `xcomponent:Payment` | stream `xcomponent:Payment`, group per consumer group | quorum queue `xcomponent.Payment` | topic `xcomponent.Payment` | stream `XC_xcomponent_Payment` on subject `xcomponent.queue.Payment` |
//! | channel `fsm:events:state_change` | pub/sub channel `fsm:events:state_change` | topic exchange `xcomponent.events`, routing key `fsm.events.state_change` | topic `xcomponent.fsm.events.state_change` | subject `fsm.events.state_change` |

pub use xcomponent_core::bus::component_queue;

/// The RabbitMQ topic exchange that carries every channel.
pub const RABBITMQ_EXCHANGE: &str = "xcomponent.events";

/// A logical name with `:` turned into `.` (RabbitMQ routing keys and queue names, NATS subjects).
pub fn dotted(name: &str) -> String {
    name.replace(':', ".")
}

/// The Kafka topic of a queue or channel: dotted, prefixed with `xcomponent.` unless it already is.
pub fn kafka_topic(name: &str) -> String {
    let dotted = dotted(name);
    let topic =
        if dotted.starts_with("xcomponent.") { dotted } else { format!("xcomponent.{dotted}") };
    // Kafka topic names allow letters, digits, '.', '_' and '-' only.
    topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect()
}

/// The NATS subject of a channel: dotted, with characters NATS gives a meaning to replaced and
/// empty tokens (which NATS refuses) filled with `_`.
pub fn nats_channel_subject(name: &str) -> String {
    let subject: String = dotted(name)
        .chars()
        .map(|c| if c.is_whitespace() || c == '*' || c == '>' { '_' } else { c })
        .collect();
    subject
        .split('.')
        .map(|token| if token.is_empty() { "_" } else { token })
        .collect::<Vec<_>>()
        .join(".")
}

/// The durable JetStream consumer of a consumer group: letters, digits, `_` and `-` kept, any
/// other character (`.`, `*`, `>`, spaces are not allowed) replaced with `_`.
pub fn nats_consumer(group: &str) -> String {
    let name: String = group
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    if name.is_empty() { "_".to_owned() } else { name }
}

/// The JetStream stream and subject of a queue: `XC_<name>` on `xcomponent.queue.<rest>`.
pub fn nats_queue(name: &str) -> (String, String) {
    let token: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    let subject_tail = name.strip_prefix("xcomponent:").unwrap_or(name);
    let subject_tail: String = subject_tail
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    (format!("XC_{token}"), format!("xcomponent.queue.{subject_tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_seeds_conventions() {
        assert_eq!(component_queue("Payment"), "xcomponent:Payment");
        assert_eq!(dotted("fsm:events:state_change"), "fsm.events.state_change");
        assert_eq!(kafka_topic("fsm:registry:announce"), "xcomponent.fsm.registry.announce");
        assert_eq!(kafka_topic("xcomponent:Payment"), "xcomponent.Payment");
        assert_eq!(kafka_topic("xcomponent:Pay ment"), "xcomponent.Pay_ment");
        assert_eq!(nats_channel_subject("fsm:events:state_change"), "fsm.events.state_change");
        assert_eq!(nats_channel_subject("fsm::a b:"), "fsm._.a_b._");
        assert_eq!(nats_consumer("runtimes"), "runtimes");
        assert_eq!(nats_consumer("run.times *"), "run_times__");
        assert_eq!(
            nats_queue("xcomponent:Payment"),
            ("XC_xcomponent_Payment".to_owned(), "xcomponent.queue.Payment".to_owned())
        );
    }
}
