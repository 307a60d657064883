//! Request types whose OpenAPI schema says exactly what the server accepts (so that a client
//! generated from `/openapi.json`, or a fuzzer, never sends a "valid" request that is refused):
//! event bodies (`{type}` or `{event}`, non-blank names without control characters),
//! property-filter operators, statuses.

use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::{PartialSchema, ToSchema};

/// Longest accepted event type.
pub const MAX_EVENT_NAME: usize = 256;

/// What an event name matches: no control character (U+0000-U+001F, U+007F-U+009F) and at
/// least one character that is neither a control character nor white space. The same rule as
/// `check_event_name` in the routes.
pub const EVENT_NAME_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// An event name: not blank, no control character, at most `MAX_EVENT_NAME` bytes.
fn name_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_EVENT_NAME))
        .pattern(Some(EVENT_NAME_PATTERN))
        .description(Some(description))
}

/// A JSON object or null.
fn payload_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(description))
}

/// An event named by its type, or `{type, payload}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EventSpec {
    /// The event type.
    Name(String),
    /// The event type and its payload.
    Full {
        /// The event type.
        #[serde(rename = "type")]
        event_type: String,
        /// The payload (a JSON object).
        #[serde(default)]
        payload: Option<Value>,
    },
}

impl PartialSchema for EventSpec {
    fn schema() -> RefOr<Schema> {
        let full = ObjectBuilder::new()
            .property("type", name_schema("The event type"))
            .required("type")
            .property("payload", payload_schema("The payload"));
        OneOfBuilder::new()
            .item(name_schema("The event type"))
            .item(full)
            .description(Some("An event type, or {type, payload}"))
            .into()
    }
}

impl ToSchema for EventSpec {}

/// Body of the event routes: `{type, payload}` or `{event, payload}`.
#[derive(Debug, Deserialize)]
pub struct EventBody {
    /// The event type (kept raw: an explicit `null` is refused, not read as absent).
    #[serde(default, rename = "type", deserialize_with = "present")]
    pub event_type: Option<Value>,
    /// The event type (or `{type, payload}`), when `type` is absent. Kept raw so that an
    /// explicit `null` is refused rather than read as absent.
    #[serde(default, deserialize_with = "present")]
    pub event: Option<Value>,
    /// The payload (a JSON object).
    #[serde(default)]
    pub payload: Option<Value>,
}

/// `Some(value)` for any present value, `null` included (absent stays `None` via `default`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl PartialSchema for EventBody {
    fn schema() -> RefOr<Schema> {
        let fields = ObjectBuilder::new()
            .property("type", name_schema("The event type"))
            .property("event", EventSpec::schema())
            .property("payload", payload_schema("The payload, merged into the instance data unless the transition has matching rules"));
        let one_of_names = AnyOfBuilder::new()
            .item(ObjectBuilder::new().required("type"))
            .item(ObjectBuilder::new().required("event"))
            .description(Some("`type` or `event` is required"));
        AllOfBuilder::new()
            .item(fields)
            .item(one_of_names)
            .description(Some("An event: {type, payload} or {event, payload}"))
            .into()
    }
}

impl ToSchema for EventBody {}

/// Comparison operator of a property filter (`instanceValue OP value`).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub enum OperatorBody {
    /// Strict equality.
    #[default]
    #[serde(rename = "===")]
    Eq,
    /// Equality (same as `===`).
    #[serde(rename = "==")]
    LooseEq,
    /// Strict inequality.
    #[serde(rename = "!==")]
    Ne,
    /// Inequality (same as `!==`).
    #[serde(rename = "!=")]
    LooseNe,
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

impl From<OperatorBody> for xcomponent_core::model::Operator {
    fn from(operator: OperatorBody) -> Self {
        use xcomponent_core::model::Operator;
        match operator {
            OperatorBody::Eq | OperatorBody::LooseEq => Operator::Eq,
            OperatorBody::Ne | OperatorBody::LooseNe => Operator::Ne,
            OperatorBody::Gt => Operator::Gt,
            OperatorBody::Lt => Operator::Lt,
            OperatorBody::Ge => Operator::Ge,
            OperatorBody::Le => Operator::Le,
        }
    }
}

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusParam {
    /// Accepts events.
    Active,
    /// Reached a final state.
    Completed,
    /// Reached an error state.
    Error,
}

impl From<StatusParam> for xcomponent_core::instance::Status {
    fn from(status: StatusParam) -> Self {
        use xcomponent_core::instance::Status;
        match status {
            StatusParam::Active => Status::Active,
            StatusParam::Completed => Status::Completed,
            StatusParam::Error => Status::Error,
        }
    }
}
