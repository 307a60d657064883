//! The executable form of a component: names resolved to indexes, guards compiled, candidate
//! transitions grouped per (state, event), timed transitions listed per state.
//!
//! `Definition::compile` trusts nothing: a reference it cannot resolve is a `CompileError`, so the
//! engine never meets a dangling name. (`validate` reports the same problems earlier, with
//! positions and hints.)

use crate::context_schema::ContextSchema;
use crate::guard::{CompiledGuard, GuardError};
use crate::instance::{MachineIdx, StateIdx, TransitionIdx};
use crate::model::{self, EntryMachineMode, MatchingRule, StateType, TransitionType};
use rustc_hash::FxHashMap;
use serde_json::Value;
use smallvec::SmallVec;
use std::sync::Arc;

/// Index of an event name inside one machine.
pub type EventIdx = u16;

/// Why a component cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A name that should refer to a state, machine... refers to nothing.
    #[error("{location}: unknown {kind} \"{name}\"")]
    Unknown {
        /// Where the reference is (`machine Order, transition 3`).
        location: String,
        /// `state`, `machine`, ...
        kind: &'static str,
        /// The name that was not found.
        name: String,
    },
    /// A name is declared twice.
    #[error("{location}: duplicate {kind} \"{name}\"")]
    Duplicate {
        /// Where.
        location: String,
        /// `state` or `machine`.
        kind: &'static str,
        /// The duplicated name.
        name: String,
    },
    /// A guard does not parse.
    #[error("{location}: guard does not compile: {error}")]
    Guard {
        /// Where.
        location: String,
        /// The parser's complaint.
        error: GuardError,
    },
    /// A required key is missing or a limit is exceeded.
    #[error("{location}: {message}")]
    Invalid {
        /// Where.
        location: String,
        /// What is wrong.
        message: String,
    },
}

/// How many entry instances a component allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// Not written: many allowed, none auto-created (the original's distributed runtime).
    Unset,
    /// At most one live instance.
    Singleton,
    /// Any number.
    Multiple,
}

/// A compiled component.
#[derive(Debug)]
pub struct Definition {
    /// The source model (served by the API, used by diagrams).
    pub model: Arc<model::Component>,
    /// Component name.
    pub name: Arc<str>,
    /// Machines, by index.
    pub machines: Vec<MachineDef>,
    machine_index: FxHashMap<Box<str>, MachineIdx>,
    /// The entry machine.
    pub entry_machine: Option<MachineIdx>,
    /// The entry mode.
    pub entry_mode: EntryMode,
    /// Create an entry instance at start.
    pub auto_create_entry_point: bool,
}

/// A compiled machine.
#[derive(Debug)]
pub struct MachineDef {
    /// Machine name.
    pub name: Arc<str>,
    /// Initial state.
    pub initial: StateIdx,
    /// States by index.
    pub states: Vec<StateDef>,
    state_index: FxHashMap<Box<str>, StateIdx>,
    /// Transitions in declaration order.
    pub transitions: Vec<TransitionDef>,
    /// Event names used by transitions of this machine.
    pub event_names: Vec<Arc<str>>,
    event_index: FxHashMap<Box<str>, EventIdx>,
    /// The data is called `publicMember` in APIs.
    pub public_member: bool,
    /// `parentLink.onStateChange`, when enabled.
    pub parent_link_event: Option<Arc<str>>,
    /// What `contextSchema` asks of the initial data; `None` when it checks nothing.
    pub context_schema: Option<ContextSchema>,
}

/// A compiled state.
#[derive(Debug)]
pub struct StateDef {
    /// State name.
    pub name: Arc<str>,
    /// Kind.
    pub kind: StateType,
    /// Entry hook.
    pub on_entry: Option<Arc<str>>,
    /// Exit hook.
    pub on_exit: Option<Arc<str>>,
    /// Cascading rules run on entry.
    pub cascades: Vec<CascadeDef>,
    /// Candidate transitions per event, in declaration order.
    pub outgoing: Vec<(EventIdx, SmallVec<[TransitionIdx; 2]>)>,
    /// Timeout and auto transitions leaving this state.
    pub timed: SmallVec<[TransitionIdx; 2]>,
}

/// A compiled cascading rule.
#[derive(Debug, Clone)]
pub struct CascadeDef {
    /// Target component (`None`: this one).
    pub component: Option<Arc<str>>,
    /// Target machine.
    pub machine: Arc<str>,
    /// Target state.
    pub state: Arc<str>,
    /// Event sent.
    pub event: Arc<str>,
    /// Selection rules.
    pub rules: Vec<MatchingRule>,
    /// Payload template.
    pub payload: Option<Value>,
}

/// Where a `cross_component` transition goes.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossTarget {
    /// Target component.
    pub component: Arc<str>,
    /// Target machine.
    pub machine: Arc<str>,
    /// Event sent to matching instances; `None` creates an instance.
    pub event: Option<Arc<str>>,
    /// Correlation rules: target `instanceProperty` OP the outgoing data's `eventProperty`.
    pub correlation: Vec<MatchingRule>,
}

/// `notifyParent`, resolved.
#[derive(Debug, Clone)]
pub struct NotifyParentDef {
    /// Event sent to the parent.
    pub event: Arc<str>,
    /// Include `newState`.
    pub include_state: bool,
    /// Include `childContext`.
    pub include_context: bool,
}

/// A compiled transition.
#[derive(Debug)]
pub struct TransitionDef {
    /// Source state.
    pub from: StateIdx,
    /// Target state.
    pub to: StateIdx,
    /// Event index within the machine.
    pub event: EventIdx,
    /// Event name.
    pub event_name: Arc<str>,
    /// Kind.
    pub kind: TransitionType,
    /// Delay of timeout/auto transitions (auto defaults to 0).
    pub delay_ms: u64,
    /// On a self-loop, restart this timer.
    pub resets_on_self_loop: bool,
    /// Guard.
    pub guard: Option<CompiledGuard>,
    /// Selection rules (non-empty when present): instance data OP event payload. A
    /// cross_component transition's rules are correlation rules instead (`CrossTarget`).
    pub rules: Option<Vec<MatchingRule>>,
    /// Whether the payload is merged into the data (the original turns the merge off for any
    /// transition that declares matching rules).
    pub merge_payload: bool,
    /// Hook run during the transition.
    pub triggered: Option<Arc<str>>,
    /// `inter_machine`: the child machine.
    pub child_machine: Option<MachineIdx>,
    /// `cross_component`: the target.
    pub cross: Option<CrossTarget>,
    /// Context mapping (target key, source path), in declaration order.
    pub mapping: Option<Vec<(String, String)>>,
    /// Parent notification.
    pub notify_parent: Option<NotifyParentDef>,
}

impl TransitionDef {
    /// Whether the payload is merged into the data (no matching rules).
    pub fn merges_payload(&self) -> bool {
        self.merge_payload
    }
}

impl Definition {
    /// Compiles a component, collecting every problem found.
    pub fn compile(component: model::Component) -> Result<Definition, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut machine_index = FxHashMap::default();
        for (index, machine) in component.state_machines.iter().enumerate() {
            if machine_index.insert(machine.name.as_str().into(), index as MachineIdx).is_some() {
                errors.push(CompileError::Duplicate {
                    location: format!("component {}", component.name),
                    kind: "machine",
                    name: machine.name.clone(),
                });
            }
        }
        if component.state_machines.len() > usize::from(MachineIdx::MAX) {
            errors.push(CompileError::Invalid {
                location: format!("component {}", component.name),
                message: format!("more than {} machines", MachineIdx::MAX),
            });
        }
        let machines: Vec<MachineDef> = component
            .state_machines
            .iter()
            .filter_map(|machine| compile_machine(machine, &machine_index, &mut errors))
            .collect();
        let entry_machine = match &component.entry_machine {
            Some(name) => match machine_index.get(name.as_str()) {
                Some(&index) => Some(index),
                None => {
                    errors.push(CompileError::Unknown {
                        location: format!("component {} entryMachine", component.name),
                        kind: "machine",
                        name: name.clone(),
                    });
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let entry_mode = match component.entry_machine_mode {
            None => EntryMode::Unset,
            Some(EntryMachineMode::Singleton) => EntryMode::Singleton,
            Some(EntryMachineMode::Multiple) => EntryMode::Multiple,
        };
        let auto_create_entry_point = entry_machine.is_some()
            && component.auto_create_entry_point.unwrap_or(entry_mode == EntryMode::Singleton);
        Ok(Definition {
            name: component.name.as_str().into(),
            model: Arc::new(component),
            machines,
            machine_index,
            entry_machine,
            entry_mode,
            auto_create_entry_point,
        })
    }

    /// Looks a machine up by name.
    pub fn machine_index(&self, name: &str) -> Option<MachineIdx> {
        self.machine_index.get(name).copied()
    }

    /// The machine at `index`.
    ///
    /// Indexes come from this definition, so an out-of-range index is a programming error.
    pub fn machine(&self, index: MachineIdx) -> &MachineDef {
        &self.machines[usize::from(index)]
    }

    /// Looks a machine up by name.
    pub fn machine_by_name(&self, name: &str) -> Option<&MachineDef> {
        self.machine_index(name).map(|index| self.machine(index))
    }
}

impl MachineDef {
    /// Looks a state up by name.
    pub fn state_index(&self, name: &str) -> Option<StateIdx> {
        self.state_index.get(name).copied()
    }

    /// The state at `index`.
    pub fn state(&self, index: StateIdx) -> &StateDef {
        &self.states[usize::from(index)]
    }

    /// The transition at `index`.
    pub fn transition(&self, index: TransitionIdx) -> &TransitionDef {
        &self.transitions[usize::from(index)]
    }

    /// Looks an event name up.
    pub fn event_index(&self, name: &str) -> Option<EventIdx> {
        self.event_index.get(name).copied()
    }

    /// The candidate transitions for `event` in `state`, in declaration order.
    pub fn candidates(&self, state: StateIdx, event: EventIdx) -> &[TransitionIdx] {
        self.state(state)
            .outgoing
            .iter()
            .find(|(candidate, _)| *candidate == event)
            .map(|(_, transitions)| transitions.as_slice())
            .unwrap_or(&[])
    }

    /// Finds the timed transition leaving `state` on `event` (used to map stored timers back).
    pub fn timed_transition(&self, state: StateIdx, event: &str) -> Option<TransitionIdx> {
        let state_def = self.state(state);
        state_def.timed.iter().copied().find(|&index| &*self.transition(index).event_name == event)
    }
}

/// Compiles one machine: its states, then its transitions (each checked against the states and
/// machines it names), then each state's outgoing and timed transitions. Every problem found is
/// pushed to `errors`; `None` when the machine cannot be built at all.
fn compile_machine(
    machine: &model::StateMachine,
    machine_index: &FxHashMap<Box<str>, MachineIdx>,
    errors: &mut Vec<CompileError>,
) -> Option<MachineDef> {
    let location = |what: &str| format!("machine {}{}", machine.name, what);
    let (mut states, state_index) = compile_states(machine, &location(""), errors);
    if states.len() > usize::from(StateIdx::MAX)
        || machine.transitions.len() > usize::from(TransitionIdx::MAX)
    {
        errors.push(CompileError::Invalid {
            location: location(""),
            message: "too many states or transitions".into(),
        });
        return None;
    }
    let resolve = |name: &str, what: &str, errors: &mut Vec<CompileError>| -> Option<StateIdx> {
        let found = state_index.get(name).copied();
        if found.is_none() {
            errors.push(CompileError::Unknown {
                location: location(what),
                kind: "state",
                name: name.to_owned(),
            });
        }
        found
    };
    let initial = resolve(&machine.initial_state, " initialState", errors);
    let mut event_index: FxHashMap<Box<str>, EventIdx> = FxHashMap::default();
    let mut event_names: Vec<Arc<str>> = Vec::new();
    let mut transitions = Vec::with_capacity(machine.transitions.len());
    for (position, transition) in machine.transitions.iter().enumerate() {
        let where_ = format!(
            ", transition {} ({} --{}--> {})",
            position + 1,
            transition.from,
            transition.event,
            transition.to
        );
        let from = resolve(&transition.from, &where_, errors);
        let leaves_terminal = from.is_some_and(|from| states[usize::from(from)].kind.is_terminal());
        if leaves_terminal && !state_index.contains_key(transition.to.as_str()) {
            // Leaves a final/error state, so it can never fire; `validate` warns (XC0108).
            continue;
        }
        let to = resolve(&transition.to, &where_, errors);
        let event = *event_index.entry(transition.event.as_str().into()).or_insert_with(|| {
            event_names.push(transition.event.as_str().into());
            (event_names.len() - 1) as EventIdx
        });
        let at = location(&where_);
        let guard = compile_guard(transition, &at, errors);
        let child_machine = child_machine_of(transition, machine_index, &at, errors);
        let cross = cross_target_of(transition, &at, errors);
        if transition.transition_type == TransitionType::Timeout && transition.timeout_ms.is_none()
        {
            errors.push(CompileError::Invalid {
                location: at,
                message: "timeout transition without timeoutMs".into(),
            });
        }
        let (Some(from), Some(to)) = (from, to) else { continue };
        transitions.push(TransitionDef {
            from,
            to,
            event,
            event_name: event_names[usize::from(event)].clone(),
            kind: transition.transition_type,
            delay_ms: transition.timeout_ms.unwrap_or(0),
            resets_on_self_loop: transition.resets_on_self_loop(),
            guard,
            rules: transition.matching_rules.clone().filter(|rules| {
                !rules.is_empty() && transition.transition_type != TransitionType::CrossComponent
            }),
            merge_payload: !transition.has_matching_rules(),
            triggered: transition.triggered_method.as_deref().map(Arc::from),
            child_machine,
            cross,
            mapping: transition.context_mapping.as_ref().map(|mapping| {
                mapping.iter().map(|(target, source)| (target.clone(), source.clone())).collect()
            }),
            notify_parent: transition.notify_parent.as_ref().map(|notify| NotifyParentDef {
                event: notify.event.as_str().into(),
                include_state: notify.include_state.unwrap_or(true),
                include_context: notify.include_context.unwrap_or(false),
            }),
        });
    }
    let initial = initial?;
    link_outgoing(&mut states, &transitions);
    let parent_link_event = machine
        .parent_link
        .as_ref()
        .filter(|link| link.enabled)
        .and_then(|link| link.on_state_change.as_deref())
        .map(Arc::from);
    Some(MachineDef {
        name: machine.name.as_str().into(),
        initial,
        states,
        state_index,
        transitions,
        event_names,
        event_index,
        public_member: machine.public_member_type.is_some(),
        parent_link_event,
        context_schema: machine.context_schema.as_ref().and_then(ContextSchema::compile),
    })
}

/// The machine's states in declaration order, with their index by name (a duplicate name is an
/// error at `location`; the later state keeps the name).
fn compile_states(
    machine: &model::StateMachine,
    location: &str,
    errors: &mut Vec<CompileError>,
) -> (Vec<StateDef>, FxHashMap<Box<str>, StateIdx>) {
    let mut state_index: FxHashMap<Box<str>, StateIdx> = FxHashMap::default();
    let mut states = Vec::with_capacity(machine.states.len());
    for state in &machine.states {
        let index = states.len() as StateIdx;
        if state_index.insert(state.name.as_str().into(), index).is_some() {
            errors.push(CompileError::Duplicate {
                location: location.to_owned(),
                kind: "state",
                name: state.name.clone(),
            });
        }
        states.push(StateDef {
            name: state.name.as_str().into(),
            kind: state.state_type,
            on_entry: state.entry_hook().map(Arc::from),
            on_exit: state.exit_hook().map(Arc::from),
            cascades: state
                .cascading_rules
                .iter()
                .map(|rule| CascadeDef {
                    component: rule.target_component.as_deref().map(Arc::from),
                    machine: rule.target_machine.as_str().into(),
                    state: rule.target_state.as_str().into(),
                    event: rule.event.as_str().into(),
                    rules: rule.matching_rules.clone().unwrap_or_default(),
                    payload: rule.payload.clone(),
                })
                .collect(),
            outgoing: Vec::new(),
            timed: SmallVec::new(),
        });
    }
    (states, state_index)
}

/// The machine an inter_machine transition creates (`None` for other kinds, or when its
/// `targetMachine` is missing or unknown: an error at `location`).
fn child_machine_of(
    transition: &model::Transition,
    machine_index: &FxHashMap<Box<str>, MachineIdx>,
    location: &str,
    errors: &mut Vec<CompileError>,
) -> Option<MachineIdx> {
    if transition.transition_type != TransitionType::InterMachine {
        return None;
    }
    let name = required(
        transition.target_machine.as_deref(),
        "inter_machine transition without targetMachine",
        location,
        errors,
    )?;
    let found = machine_index.get(name).copied();
    if found.is_none() {
        errors.push(CompileError::Unknown {
            location: location.to_owned(),
            kind: "machine",
            name: name.to_owned(),
        });
    }
    found
}

/// Where a cross_component transition sends (`None` for other kinds, or when its
/// `targetComponent` is missing: an error at `location`).
fn cross_target_of(
    transition: &model::Transition,
    location: &str,
    errors: &mut Vec<CompileError>,
) -> Option<CrossTarget> {
    if transition.transition_type != TransitionType::CrossComponent {
        return None;
    }
    let component = required(
        transition.target_component.as_deref(),
        "cross_component transition without targetComponent",
        location,
        errors,
    )?;
    Some(CrossTarget {
        component: component.into(),
        machine: transition.target_machine.as_deref().unwrap_or(component).into(),
        event: transition.target_event.as_deref().map(Arc::from),
        correlation: transition.matching_rules.clone().unwrap_or_default(),
    })
}

/// `value`, or an error at `location` saying `missing` when it is absent.
fn required<'t>(
    value: Option<&'t str>,
    missing: &str,
    location: &str,
    errors: &mut Vec<CompileError>,
) -> Option<&'t str> {
    if value.is_none() {
        errors
            .push(CompileError::Invalid { location: location.to_owned(), message: missing.into() });
    }
    value
}

/// Lists each transition under its source state: by event (candidates in declaration order),
/// and among the state's timed transitions when it is one.
fn link_outgoing(states: &mut [StateDef], transitions: &[TransitionDef]) {
    for (index, transition) in transitions.iter().enumerate() {
        let index = index as TransitionIdx;
        let state = &mut states[usize::from(transition.from)];
        if transition.kind.is_timed() {
            state.timed.push(index);
        }
        match state.outgoing.iter_mut().find(|(event, _)| *event == transition.event) {
            Some((_, candidates)) => candidates.push(index),
            None => state.outgoing.push((transition.event, smallvec::smallvec![index])),
        }
    }
}

fn compile_guard(
    transition: &model::Transition,
    location: &str,
    errors: &mut Vec<CompileError>,
) -> Option<CompiledGuard> {
    // One rule for `validate` and the engine: `guard` and legacy `guards` must all hold.
    match CompiledGuard::for_transition(transition) {
        Ok(guard) => guard,
        Err(error) => {
            errors.push(CompileError::Guard { location: location.to_owned(), error });
            None
        }
    }
}
