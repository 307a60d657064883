//! The stable diagnostic codes and their explanation pages (`docs/errors/XC0NNN.md`, embedded).
//!
//! Codes never change meaning once published: a check that goes away leaves its code unused.
//! Ranges: `XC00xx` reading and parsing the file, `XC01xx` machines, states and transitions,
//! `XC02xx` transition kinds, `XC03xx` guards, `XC04xx` entry point, `XC05xx` cascading rules
//! and parent links, `XC06xx` keys the format does not know.

/// A code with its one-line title and its explanation page (Markdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// `XC0107`.
    pub code: &'static str,
    /// What the code is about, in a few words.
    pub title: &'static str,
    /// The explanation page: what, why, how to fix.
    pub page: &'static str,
}

macro_rules! codes {
    ($($name:ident = $code:literal, $title:literal;)*) => {
        $(
            #[doc = $title]
            pub const $name: &str = $code;
        )*

        /// Every code, in numeric order.
        pub static ALL: &[CodeInfo] = &[
            $(CodeInfo {
                code: $code,
                title: $title,
                page: include_str!(concat!("../../../../docs/errors/", $code, ".md")),
            },)*
        ];
    };
}

codes! {
    FILE_UNREADABLE = "XC0001", "The component file cannot be read.";
    YAML_SYNTAX = "XC0002", "The file is not well-formed YAML.";
    WRONG_SHAPE = "XC0003", "A value has the wrong type, or a required key is missing.";
    DUPLICATE_KEY = "XC0004", "A key appears twice in the same mapping.";
    NO_MACHINES = "XC0101", "The component declares no state machine.";
    DUPLICATE_MACHINE = "XC0102", "Two machines have the same name.";
    NO_STATES = "XC0103", "A machine declares no state.";
    DUPLICATE_STATE = "XC0104", "Two states of a machine have the same name.";
    UNKNOWN_INITIAL_STATE = "XC0105", "initialState names a state the machine does not declare.";
    UNKNOWN_SOURCE_STATE = "XC0106", "A transition leaves from a state the machine does not declare.";
    UNKNOWN_TARGET_STATE = "XC0107", "A transition goes to a state the machine does not declare.";
    TRANSITION_FROM_TERMINAL = "XC0108", "A transition leaves a final or error state, so it never fires.";
    AMBIGUOUS_TRANSITIONS = "XC0109", "Two transitions leave the same state on the same event and nothing tells them apart.";
    EMPTY_NAME = "XC0110", "A name or event is empty.";
    TIMEOUT_WITHOUT_DELAY = "XC0201", "A timeout transition has no timeoutMs.";
    INTER_MACHINE_WITHOUT_TARGET = "XC0202", "An inter_machine transition has no targetMachine.";
    INTER_MACHINE_UNKNOWN_TARGET = "XC0203", "An inter_machine transition targets a machine the component does not declare.";
    CROSS_COMPONENT_WITHOUT_TARGET = "XC0204", "A cross_component transition has no targetComponent.";
    TARGET_EVENT_WITHOUT_RULES = "XC0205", "A cross_component targetEvent has no matchingRules to choose the receivers.";
    CROSS_COMPONENT_WITHOUT_MACHINE = "XC0206", "A cross_component transition has no targetMachine.";
    KEY_IGNORED_FOR_TYPE = "XC0207", "A transition key has no effect for this transition type.";
    TRANSITION_TARGET_STATE = "XC0208", "targetState on a transition is ignored.";
    GUARD_DOES_NOT_COMPILE = "XC0301", "A guard expression does not compile.";
    UNKNOWN_ENTRY_MACHINE = "XC0401", "entryMachine names a machine the component does not declare.";
    ENTRY_MODE_UNSET = "XC0402", "entryMachine is set without entryMachineMode.";
    ENTRY_SETTINGS_WITHOUT_ENTRY = "XC0403", "entryMachineMode or autoCreateEntryPoint is set without entryMachine.";
    CASCADE_UNKNOWN_MACHINE = "XC0501", "A cascading rule targets a machine the component does not declare.";
    CASCADE_UNKNOWN_STATE = "XC0502", "A cascading rule targets a state the target machine does not declare.";
    CASCADE_EVENT_NOT_ACCEPTED = "XC0503", "A cascading rule sends an event the target state does not accept.";
    PARENT_LINK_WITHOUT_EVENT = "XC0504", "parentLink is enabled without onStateChange.";
    UNKNOWN_KEY = "XC0601", "A key is not part of the component format.";
}

/// Looks a code up; accepts `XC0107`, `xc0107` and `0107`.
pub fn lookup(code: &str) -> Option<&'static CodeInfo> {
    let wanted = code.trim();
    let digits = wanted.strip_prefix("XC").or_else(|| wanted.strip_prefix("xc")).unwrap_or(wanted);
    ALL.iter().find(|info| &info.code[2..] == digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_starts_with_its_code() {
        for info in ALL {
            assert!(
                info.page.starts_with(&format!("# {}", info.code)),
                "page of {} must start with `# {}`",
                info.code,
                info.code
            );
        }
    }

    #[test]
    fn codes_are_unique_and_sorted() {
        let mut sorted: Vec<&str> = ALL.iter().map(|info| info.code).collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, ALL.iter().map(|info| info.code).collect::<Vec<_>>());
    }

    #[test]
    fn lookup_accepts_prefixless_and_lowercase_codes() {
        assert_eq!(lookup("xc0107").map(|info| info.code), Some(UNKNOWN_TARGET_STATE));
        assert_eq!(lookup("0107").map(|info| info.code), Some(UNKNOWN_TARGET_STATE));
        assert!(lookup("XC9999").is_none());
    }
}
