//! The components a runtime hosts, by index and by name, and what the property index must cover.
//!
//! The property index keys instances on every `instanceProperty` that some `===` rule may look up
//! with an event value: rules on the machine's own transitions, cascading rules aiming at it, and
//! cross-component transitions aiming at it from any hosted component.

use crate::error::RuntimeError;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use xcomponent_core::definition::Definition;
use xcomponent_core::instance::MachineIdx;
use xcomponent_core::model::{MatchingRule, Operator};

/// Index of a component in the registry.
pub type ComponentIdx = u16;

/// The hosted components (immutable once the runtime has started).
#[derive(Debug)]
pub struct Registry {
    components: Vec<Arc<Definition>>,
    by_name: FxHashMap<Box<str>, ComponentIdx>,
    /// `indexed[component][machine]` = instance paths kept in the property index.
    indexed: Vec<Vec<Vec<Arc<str>>>>,
}

impl Registry {
    /// Builds a registry; component names must be unique.
    pub fn new(components: Vec<Arc<Definition>>) -> Result<Registry, RuntimeError> {
        let mut by_name = FxHashMap::default();
        for (index, definition) in components.iter().enumerate() {
            let index = ComponentIdx::try_from(index)
                .map_err(|_| RuntimeError::Invalid("too many components".into()))?;
            if by_name.insert(definition.name.as_ref().into(), index).is_some() {
                return Err(RuntimeError::Invalid(format!(
                    "component {} is registered twice",
                    definition.name
                )));
            }
        }
        let mut indexed: Vec<Vec<Vec<Arc<str>>>> = components
            .iter()
            .map(|definition| vec![Vec::new(); definition.machines.len()])
            .collect();
        let mut add = |component: ComponentIdx, machine: MachineIdx, rules: &[MatchingRule]| {
            for rule in rules.iter().filter(|rule| rule.operator == Operator::Eq) {
                let paths = &mut indexed[usize::from(component)][usize::from(machine)];
                if !paths.iter().any(|path| **path == *rule.instance_property) {
                    paths.push(rule.instance_property.as_str().into());
                }
            }
        };
        for (component_index, definition) in components.iter().enumerate() {
            let component_index = component_index as ComponentIdx;
            for (machine_index, machine) in definition.machines.iter().enumerate() {
                for transition in &machine.transitions {
                    if let Some(rules) = &transition.rules {
                        add(component_index, machine_index as MachineIdx, rules);
                    }
                    if let Some(target) =
                        transition.cross.as_ref().filter(|target| target.event.is_some())
                        && let Some((target_component, target_machine)) =
                            resolve(&by_name, &components, &target.component, &target.machine)
                    {
                        add(target_component, target_machine, &target.correlation);
                    }
                }
                for state in &machine.states {
                    for cascade in &state.cascades {
                        let component_name =
                            cascade.component.as_deref().unwrap_or(&definition.name);
                        if let Some((target_component, target_machine)) =
                            resolve(&by_name, &components, component_name, &cascade.machine)
                        {
                            add(target_component, target_machine, &cascade.rules);
                        }
                    }
                }
            }
        }
        Ok(Registry { components, by_name, indexed })
    }

    /// All components, by index.
    pub fn components(&self) -> &[Arc<Definition>] {
        &self.components
    }

    /// The component at `index`.
    pub fn definition(&self, index: ComponentIdx) -> &Arc<Definition> {
        &self.components[usize::from(index)]
    }

    /// Looks a component up by name.
    pub fn index_of(&self, name: &str) -> Option<ComponentIdx> {
        self.by_name.get(name).copied()
    }

    /// Resolves a component and machine by name.
    pub fn resolve(
        &self,
        component: &str,
        machine: &str,
    ) -> Result<(ComponentIdx, MachineIdx), RuntimeError> {
        let component_index = self
            .index_of(component)
            .ok_or_else(|| RuntimeError::UnknownComponent(component.to_owned()))?;
        let machine_index =
            self.definition(component_index).machine_index(machine).ok_or_else(|| {
                RuntimeError::UnknownMachine {
                    component: component.to_owned(),
                    machine: machine.to_owned(),
                }
            })?;
        Ok((component_index, machine_index))
    }

    /// Paths of `machine` kept in the property index.
    pub fn indexed_paths(&self, component: ComponentIdx, machine: MachineIdx) -> &[Arc<str>] {
        &self.indexed[usize::from(component)][usize::from(machine)]
    }
}

fn resolve(
    by_name: &FxHashMap<Box<str>, ComponentIdx>,
    components: &[Arc<Definition>],
    component: &str,
    machine: &str,
) -> Option<(ComponentIdx, MachineIdx)> {
    let component_index = *by_name.get(component)?;
    let machine_index = components[usize::from(component_index)].machine_index(machine)?;
    Some((component_index, machine_index))
}
