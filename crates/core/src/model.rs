//! The component model exactly as users write it in YAML (the original xcomponent-ai format).
//!
//! These types are a faithful, lossless image of the file: names stay strings, optional keys stay
//! `Option`, and keys this version does not know are kept in `extra` so validation can warn about
//! them with a position. Turning this into something executable is `definition::Definition`'s job.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Keys found in the YAML that no field here knows about, kept so that `validate` can report them.
pub type ExtraKeys = IndexMap<String, Value>;

/// A component: a named set of state machines deployed together (one YAML file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Component identity: registry key, bus channel suffix, `componentName` in stored events.
    pub name: String,
    /// Informational version string (`1.0.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The machines of this component; names are unique.
    #[serde(default)]
    pub state_machines: Vec<StateMachine>,
    /// The entry-point machine, if the component has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_machine: Option<String>,
    /// `singleton` (one live instance at most) or `multiple`. Unset: many allowed, none auto-created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_machine_mode: Option<EntryMachineMode>,
    /// Create one entry instance when the component starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_entry_point: Option<bool>,
    /// Free-form, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Dashboard layout hints (`machines: {name: {x, y}}`, `algorithm`); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Value>,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}

/// How many instances the entry machine may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryMachineMode {
    /// At most one live instance; a second create is refused with a clear error.
    Singleton,
    /// Any number of instances.
    Multiple,
}

/// One state machine: states, transitions and the instance-data declarations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateMachine {
    /// Unique within the component.
    pub name: String,
    /// The state new instances start in (the `entry` type marker has no runtime meaning).
    pub initial_state: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Declared states; names are unique within the machine.
    #[serde(default)]
    pub states: Vec<State>,
    /// Declared transitions, in declaration order (the order breaks ties).
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// When set, the instance data is called `publicMember` (XComponent naming); same behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_member_type: Option<String>,
    /// Notify the parent instance on every state change of a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_link: Option<ParentLink>,
    /// Declaration of the instance data (field name → field): drawn as forms by the dashboard,
    /// checked on creation (`context_schema::ContextSchema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_schema: Option<IndexMap<String, ContextField>>,
    /// Free-form, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}

/// `parentLink` on a machine: every transition of a child sends `onStateChange` to its parent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentLink {
    /// Whether the link is active.
    #[serde(default)]
    pub enabled: bool,
    /// Event type sent to the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_state_change: Option<String>,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}

/// One field of a `contextSchema`: its form input, and whether creations must give it
/// (`required`) with its type (`type`), as `context_schema` reads them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContextField {
    /// `text`/`string`, `number`, `integer`, `select`, `boolean`, `array`, `object`, ...
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub field_type: Option<String>,
    /// Label shown in forms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether a creation must give the field (and forms require it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Placeholder text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Help text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Choices for `select`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<Value>>,
    /// Lower bound for numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    /// Upper bound for numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// HTML input pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Default value offered by forms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}

/// The kind of a state.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StateType {
    /// Marker for the initial state; behaves as `regular`.
    Entry,
    /// An ordinary state.
    #[default]
    Regular,
    /// Terminal success: the instance completes and leaves the live set.
    Final,
    /// Terminal failure: the instance ends in error and leaves the live set.
    Error,
}

impl StateType {
    /// Final and error states end an instance.
    pub fn is_terminal(self) -> bool {
        matches!(self, StateType::Final | StateType::Error)
    }
}

/// One state of a machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Unique within the machine.
    pub name: String,
    /// Kind of state (default `regular`).
    #[serde(default, rename = "type")]
    pub state_type: StateType,
    /// Hook called after every transition into this state (not at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_entry: Option<String>,
    /// Hook called before every transition out of this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exit: Option<String>,
    /// Legacy alias of `onEntry` (`onEntry` wins when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_method: Option<String>,
    /// Legacy alias of `onExit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_method: Option<String>,
    /// Events sent to other instances whenever an instance enters this state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cascading_rules: Vec<CascadingRule>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}

impl State {
    /// The entry hook, honouring the legacy alias.
    pub fn entry_hook(&self) -> Option<&str> {
        self.on_entry.as_deref().or(self.entry_method.as_deref())
    }

    /// The exit hook, honouring the legacy alias.
    pub fn exit_hook(&self) -> Option<&str> {
        self.on_exit.as_deref().or(self.exit_method.as_deref())
    }
}

/// The kind of a transition.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TransitionType {
    /// Fired by an event.
    #[default]
    Regular,
    /// Fired by an event (same as regular; marks transitions meant for users and other systems).
    Triggerable,
    /// Fired by an event (same as regular; usually a self-loop).
    Internal,
    /// Fired by the clock `timeoutMs` after entering `from`.
    Timeout,
    /// Fired by the clock right after entering `from` (`timeoutMs` delay, default 0).
    Auto,
    /// After the transition, creates a child instance of `targetMachine` in this component.
    InterMachine,
    /// After the transition, creates an instance in (or sends `targetEvent` to) another component.
    CrossComponent,
}

impl TransitionType {
    /// Transitions the clock fires.
    pub fn is_timed(self) -> bool {
        matches!(self, TransitionType::Timeout | TransitionType::Auto)
    }
}

/// One transition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Source state.
    pub from: String,
    /// Target state (`from == to` is a self-loop).
    pub to: String,
    /// Event type that fires the transition.
    pub event: String,
    /// Kind (default `regular`).
    #[serde(default, rename = "type")]
    pub transition_type: TransitionType,
    /// Delay for `timeout` (required) and `auto` (default 0), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// On a self-loop, restart this timeout (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_on_transition: Option<bool>,
    /// `inter_machine`: the machine to instantiate; `cross_component`: the target machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_machine: Option<String>,
    /// `cross_component`: the target component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_component: Option<String>,
    /// `cross_component`: send this event to matching target instances instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_event: Option<String>,
    /// Not used by the runtime (kept for compatibility; `validate` warns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_state: Option<String>,
    /// Child/target context: target key → dot path in the source data (select + rename).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_mapping: Option<IndexMap<String, String>>,
    /// Hook called during the transition (after onExit, before the state change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_method: Option<String>,
    /// Property routing rules; their presence also turns off the payload merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_rules: Option<Vec<MatchingRule>>,
    /// Send an event to the parent instance after this transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_parent: Option<NotifyParent>,
    /// A boolean expression over `context`, `payload`/`event` and `state` that must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
    /// Legacy structured guards (`{type: context, property, operator, value}`), all must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guards: Option<Vec<LegacyGuard>>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}

impl Transition {
    /// Whether the transition declares matching rules (even an empty list counts, as in the original).
    pub fn has_matching_rules(&self) -> bool {
        self.matching_rules.as_ref().is_some_and(|rules| !rules.is_empty())
    }

    /// The effective `resetOnTransition` (the original's code resets unless told `false`).
    pub fn resets_on_self_loop(&self) -> bool {
        self.reset_on_transition != Some(false)
    }
}

/// A guard: either a bare expression string or `{expression: "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Guard {
    /// `guard: "context.amount > 5000"`
    Expression(String),
    /// `guard: {expression: "context.amount > 5000"}`
    Object {
        /// The expression text.
        expression: String,
    },
}

impl Guard {
    /// The expression text, whichever form was written.
    pub fn expression(&self) -> &str {
        match self {
            Guard::Expression(text) | Guard::Object { expression: text } => text,
        }
    }
}

/// A legacy structured guard from the original's guides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyGuard {
    /// What the property is read from: `context` (default) or `event`/`payload`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Dot path of the property.
    pub property: String,
    /// Comparison operator.
    #[serde(default)]
    pub operator: Operator,
    /// Value compared against.
    pub value: Value,
}

/// Comparison operators of matching rules: `instanceValue OP eventValue`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Operator {
    /// Strict equality (also accepts `==`).
    #[default]
    #[serde(rename = "===", alias = "==")]
    Eq,
    /// Strict inequality (also accepts `!=`).
    #[serde(rename = "!==", alias = "!=")]
    Ne,
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Greater or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Less or equal.
    #[serde(rename = "<=")]
    Le,
}

impl Operator {
    /// The operator as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "===",
            Operator::Ne => "!==",
            Operator::Gt => ">",
            Operator::Lt => "<",
            Operator::Ge => ">=",
            Operator::Le => "<=",
        }
    }
}

/// A property-routing rule: the instance's `instanceProperty` compared with the event's `eventProperty`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchingRule {
    /// Dot path read from the event payload (or, for cross_component, from the source data).
    pub event_property: String,
    /// Dot path read from the target instance's data.
    pub instance_property: String,
    /// `instanceValue OP eventValue` (default `===`).
    #[serde(default)]
    pub operator: Operator,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}

/// A cascading rule on a state: on entry, send `event` to instances of `targetMachine` in `targetState`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CascadingRule {
    /// Another component (default: this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_component: Option<String>,
    /// Machine whose instances receive the event.
    pub target_machine: String,
    /// Only instances in this state receive the event.
    pub target_state: String,
    /// Event type sent.
    pub event: String,
    /// Which target instances (instance property OP payload/source property).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_rules: Option<Vec<MatchingRule>>,
    /// Payload template: a string exactly `"{{path}}"` becomes the typed value at `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}

/// `notifyParent` on a transition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyParent {
    /// Event type sent to the parent.
    pub event: String,
    /// Include `newState` in the payload (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_state: Option<bool>,
    /// Include `childContext` in the payload (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_context: Option<bool>,
    /// Keys not part of the format.
    #[serde(flatten, default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(skip)]
    pub extra: ExtraKeys,
}
