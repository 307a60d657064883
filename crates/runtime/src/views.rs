//! The public views the runtime answers with: outcomes of sends, live instances with names
//! resolved, their timers and available transitions, shard counters.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use xcomponent_core::instance::{Context, EventId, InstanceId, Millis, ParentRef, Status};

/// What happened to an event sent to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum SendOutcome {
    /// The instance took a transition.
    #[serde(rename_all = "camelCase")]
    Transitioned {
        /// State before.
        previous_state: Arc<str>,
        /// State after.
        new_state: Arc<str>,
        /// Status after.
        status: Status,
        /// Stored event id (nil without a store).
        event_id: EventId,
    },
    /// Nothing changed.
    #[serde(rename_all = "camelCase")]
    Ignored {
        /// Why.
        reason: String,
        /// The instance's state.
        current_state: Arc<str>,
        /// Events the instance accepts now.
        allowed_events: Vec<Arc<str>>,
    },
}

/// Totals of a `send_many`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchOutcome {
    /// Events that made a transition.
    pub transitioned: usize,
    /// Events that changed nothing.
    pub ignored: usize,
    /// Events for unknown instances, or rolled back by a storage failure.
    pub failed: usize,
}

/// Filters for listing live instances.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Only this component.
    pub component: Option<String>,
    /// Only this machine.
    pub machine: Option<String>,
    /// Only this state.
    pub state: Option<String>,
    /// Substring of the id or of the data's JSON text.
    pub text: Option<String>,
    /// Only ids greater than this (paging).
    pub after: Option<InstanceId>,
    /// At most this many (per shard before merging, then overall).
    pub limit: usize,
}

/// A timer as shown to users.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerView {
    /// Event of the timed transition.
    pub event: Arc<str>,
    /// Where it leads.
    pub target_state: Arc<str>,
    /// `timeout` or `auto`.
    pub kind: xcomponent_core::model::TransitionType,
    /// Absolute deadline.
    pub deadline: Millis,
}

/// A transition available from the current state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableTransition {
    /// Event to send.
    pub event: Arc<str>,
    /// Target state.
    pub to: Arc<str>,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: xcomponent_core::model::TransitionType,
    /// Guard text, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// inter_machine/cross_component target machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_machine: Option<String>,
    /// cross_component target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_component: Option<String>,
}

/// A live instance, with names resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    /// Id.
    pub id: InstanceId,
    /// Component.
    pub component_name: Arc<str>,
    /// Machine.
    pub machine_name: Arc<str>,
    /// Current state.
    pub current_state: Arc<str>,
    /// Type of the current state.
    pub state_type: xcomponent_core::model::StateType,
    /// Status.
    pub status: Status,
    /// Data.
    pub context: Arc<Context>,
    /// Whether the machine calls its data `publicMember`.
    pub public_member: bool,
    /// Created as the entry point.
    pub is_entry_point: bool,
    /// Parent link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// Number of stored events.
    pub seq: u64,
    /// Creation time.
    pub created_at: Millis,
    /// Last transition time.
    pub updated_at: Millis,
    /// Armed timers.
    pub pending_timers: Vec<TimerView>,
    /// Transitions leaving the current state.
    pub available_transitions: Vec<AvailableTransition>,
}

/// Counters of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardStats {
    /// Live instances.
    pub instances: usize,
    /// Armed timers.
    pub timers: usize,
}
