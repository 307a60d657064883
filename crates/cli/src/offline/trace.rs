//! The trace of an offline run: every runtime event as one line, instances named by stable
//! labels (`Order#1`, `Payment#2`: machine name and order of first appearance), times relative
//! to the start of the run, data printed with sorted keys and instance ids replaced by labels.
//! The same text is what `run` prints and what the golden tests snapshot.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use xcomponent_core::instance::{Context, InstanceId, Millis, Status};
use xcomponent_runtime::{Registry, RuntimeEvent};

/// What the trace knows about one instance.
#[derive(Debug, Clone)]
pub struct Known {
    /// Order of first appearance, from 1.
    pub number: u32,
    /// `Machine#number`.
    pub label: String,
    /// Id.
    pub id: InstanceId,
    /// Component name (empty when unknown).
    pub component: Arc<str>,
    /// Machine name (empty when unknown).
    pub machine: Arc<str>,
    /// Last state seen.
    pub state: Arc<str>,
    /// Last status seen.
    pub status: Status,
    /// Not yet disposed.
    pub live: bool,
    /// Last data seen.
    pub context: Arc<Context>,
}

/// One rendered trace line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Milliseconds since the start of the run.
    pub t: Millis,
    /// Human-readable form.
    pub text: String,
    /// Machine-readable form (`kind`, `t`, `instance` label, then the runtime's description).
    pub json: Value,
}

/// Labels and last known facts of every instance seen in the trace.
#[derive(Debug, Default)]
pub struct Tracker {
    instances: Vec<Known>,
    by_id: HashMap<InstanceId, usize>,
    show_component: bool,
}

impl Tracker {
    /// A tracker; `show_component` adds the component name to creation lines.
    pub fn new(show_component: bool) -> Tracker {
        Tracker { show_component, ..Tracker::default() }
    }

    /// Every instance seen, in label order.
    pub fn instances(&self) -> &[Known] {
        &self.instances
    }

    /// The instance with this id, if seen.
    pub fn get(&self, id: &InstanceId) -> Option<&Known> {
        self.by_id.get(id).map(|&index| &self.instances[index])
    }

    /// The instance with this label number, if seen.
    pub fn by_number(&self, number: u32) -> Option<&Known> {
        self.instances.get(usize::try_from(number).ok()?.checked_sub(1)?)
    }

    /// The label of an id (a new `#n` when never seen).
    pub fn label(&mut self, id: InstanceId) -> String {
        let index = self.slot(id, "", "");
        self.instances[index].label.clone()
    }

    fn slot(&mut self, id: InstanceId, component: &str, machine: &str) -> usize {
        if let Some(&index) = self.by_id.get(&id) {
            let known = &mut self.instances[index];
            if known.machine.is_empty() && !machine.is_empty() {
                known.machine = machine.into();
                known.component = component.into();
                known.label = format!("{machine}#{}", known.number);
            }
            return index;
        }
        let number = u32::try_from(self.instances.len() + 1).unwrap_or(u32::MAX);
        self.instances.push(Known {
            number,
            label: format!("{machine}#{number}"),
            id,
            component: component.into(),
            machine: machine.into(),
            state: "".into(),
            status: Status::Active,
            live: true,
            context: Arc::new(Context::new()),
        });
        self.by_id.insert(id, self.instances.len() - 1);
        self.instances.len() - 1
    }

    /// Records an instance that existed before the trace started (an entry point).
    pub fn existing(
        &mut self,
        id: InstanceId,
        component: &str,
        machine: &str,
        state: &str,
        context: Arc<Context>,
        t: Millis,
    ) -> Line {
        let index = self.slot(id, component, machine);
        let known = &mut self.instances[index];
        known.state = state.into();
        known.context = context.clone();
        let label = known.label.clone();
        let text = format!(
            "{label} existed at start in {state} (entry point) {}",
            self.render_value(&Value::Object(Context::clone(&context)))
        );
        Line {
            t,
            text: with_time(t, &text),
            json: json!({"t": t, "kind": "instance_existing", "instance": self.instances[index].label, "currentState": state}),
        }
    }

    /// Records one runtime event and renders it.
    pub fn observe(&mut self, registry: &Registry, event: &RuntimeEvent, t: Millis) -> Line {
        let mut description = event.describe(registry);
        let component = event
            .component()
            .map(|index| registry.definition(index).name.clone())
            .unwrap_or_else(|| "".into());
        let text = match event {
            RuntimeEvent::InstanceCreated { instance, machine, state, context, parent, .. } => {
                let definition = registry.definition(event.component().unwrap_or_default());
                let machine_def = definition.machine(*machine);
                let index = self.slot(*instance, &component, &machine_def.name);
                let state_name = machine_def.state(*state).name.clone();
                let parent = parent
                    .map(|parent| format!(" (child of {})", self.label(parent)))
                    .unwrap_or_default();
                let known = &mut self.instances[index];
                known.state = state_name.clone();
                known.context = context.clone();
                let label = known.label.clone();
                let component_note = if self.show_component {
                    format!(" (component {component})")
                } else {
                    String::new()
                };
                format!(
                    "{label} created in {state_name}{parent}{component_note} {}",
                    self.render_value(&Value::Object(Context::clone(context)))
                )
            }
            RuntimeEvent::StateChanged {
                instance,
                machine,
                from,
                to,
                transition,
                context,
                status,
                ..
            } => {
                let machine_def =
                    registry.definition(event.component().unwrap_or_default()).machine(*machine);
                let transition_def = machine_def.transition(*transition);
                let index = self.slot(*instance, &component, &machine_def.name);
                let before = self.instances[index].context.clone();
                let changes = self.render_changes(&before, context);
                let known = &mut self.instances[index];
                known.state = machine_def.state(*to).name.clone();
                known.status = *status;
                known.context = context.clone();
                let kind = serde_json::to_value(transition_def.kind)
                    .ok()
                    .and_then(|kind| kind.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let kind = if matches!(kind.as_str(), "regular" | "triggerable") {
                    String::new()
                } else {
                    format!(" [{kind}]")
                };
                let status = if *status == Status::Active {
                    String::new()
                } else {
                    format!(" => {}", status.as_str())
                };
                format!(
                    "{} {} --{}--> {}{kind}{status}{changes}",
                    known.label,
                    machine_def.state(*from).name,
                    transition_def.event_name,
                    machine_def.state(*to).name
                )
            }
            RuntimeEvent::EventIgnored { instance, event, reason, .. } => {
                format!("{} ignored {event}: {reason}", self.label(*instance))
            }
            RuntimeEvent::InstanceDisposed { instance, machine, state, status, .. } => {
                let machine_def =
                    registry.definition(event.component().unwrap_or_default()).machine(*machine);
                let index = self.slot(*instance, &component, &machine_def.name);
                let known = &mut self.instances[index];
                known.live = false;
                known.status = *status;
                known.state = machine_def.state(*state).name.clone();
                format!("{} disposed in {} ({})", known.label, known.state, status.as_str())
            }
            RuntimeEvent::TimeoutFired { instance, machine, transition, .. } => {
                let transition_def = registry
                    .definition(event.component().unwrap_or_default())
                    .machine(*machine)
                    .transition(*transition);
                let kind = serde_json::to_value(transition_def.kind)
                    .ok()
                    .and_then(|kind| kind.as_str().map(str::to_owned))
                    .unwrap_or_default();
                format!(
                    "{} timer {} fired ({kind}, {}ms)",
                    self.label(*instance),
                    transition_def.event_name,
                    transition_def.delay_ms
                )
            }
            RuntimeEvent::HookFailed { instance, kind, method, error, .. } => {
                format!("{} hook {} {method} failed: {error}", self.label(*instance), kind.as_str())
            }
            RuntimeEvent::EffectFailed { instance, error, .. } => {
                format!("{} effect failed: {error}", self.label(*instance))
            }
            RuntimeEvent::CommitFailed { error, events } => {
                format!("commit failed, {events} events rolled back: {error}")
            }
        };
        let label = event.instance().map(|id| self.label(id));
        if let Value::Object(fields) = &mut description {
            fields.insert("t".into(), json!(t));
            fields.insert("kind".into(), json!(event.kind()));
            if let Some(label) = label {
                fields.insert("instance".into(), json!(label));
            }
        }
        Line { t, text: with_time(t, &text), json: description }
    }

    /// Compact JSON with sorted keys and known instance ids replaced by their labels.
    pub fn render_value(&self, value: &Value) -> String {
        let mut out = String::new();
        self.write_value(value, &mut out);
        out
    }

    fn write_value(&self, value: &Value, out: &mut String) {
        match value {
            Value::Object(fields) => {
                let mut keys: Vec<&String> = fields.keys().collect();
                keys.sort();
                out.push('{');
                for (position, key) in keys.into_iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    if let Some(value) = fields.get(key) {
                        self.write_value(value, out);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (position, item) in items.iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    self.write_value(item, out);
                }
                out.push(']');
            }
            Value::String(text) => {
                match text.parse::<InstanceId>().ok().and_then(|id| self.get(&id)) {
                    Some(known) => out.push_str(&Value::String(known.label.clone()).to_string()),
                    None => out.push_str(&value.to_string()),
                }
            }
            other => out.push_str(&other.to_string()),
        }
    }

    /// `  set {...}  unset [...]` for what changed in the data (empty when nothing did).
    fn render_changes(&self, before: &Context, after: &Context) -> String {
        let set: Map<String, Value> = after
            .iter()
            .filter(|(key, value)| before.get(*key) != Some(*value))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let mut unset: Vec<&String> =
            before.keys().filter(|key| !after.contains_key(*key)).collect();
        unset.sort();
        let mut out = String::new();
        if !set.is_empty() {
            let _ = write!(out, "  set {}", self.render_value(&Value::Object(set)));
        }
        if !unset.is_empty() {
            let _ = write!(
                out,
                "  unset {}",
                unset.iter().map(|key| key.as_str()).collect::<Vec<_>>().join(",")
            );
        }
        out
    }
}

/// `+0ms`, `+250ms`, `+30s`, `+15min`, `+7d`: the largest unit that divides the time exactly.
pub fn format_relative(t: Millis) -> String {
    const UNITS: [(Millis, &str); 4] =
        [(86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")];
    if t != 0 {
        for (size, unit) in UNITS {
            if t % size == 0 {
                return format!("+{}{unit}", t / size);
            }
        }
    }
    format!("+{t}ms")
}

fn with_time(t: Millis, text: &str) -> String {
    format!("{:>8}  {text}", format_relative(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcomponent_runtime::DrawId;

    #[test]
    fn relative_times_use_the_largest_exact_unit() {
        assert_eq!(format_relative(0), "+0ms");
        assert_eq!(format_relative(250), "+250ms");
        assert_eq!(format_relative(30_000), "+30s");
        assert_eq!(format_relative(900_000), "+15min");
        assert_eq!(format_relative(604_800_000), "+7d");
        assert_eq!(format_relative(1_500), "+1500ms");
    }

    #[test]
    fn values_render_sorted_with_labels_for_known_ids() {
        let mut tracker = Tracker::new(false);
        let id = InstanceId::draw();
        let label = tracker.label(id);
        assert_eq!(label, "#1");
        let value = json!({"z": 1, "a": {"child": id.to_string(), "list": [2, "x"]}});
        assert_eq!(tracker.render_value(&value), r##"{"a":{"child":"#1","list":[2,"x"]},"z":1}"##);
    }
}
