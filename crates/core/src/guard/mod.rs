//! Guard expressions on transitions: compiled once, evaluated whenever an event could fire the
//! transition.
//!
//! A guard is written in YAML either as `guard: "context.retryCount < 3"`,
//! `guard: {expression: "context.amount > 5000"}` (see [`model::Guard`]) or as a list of legacy
//! structured guards (`guards: [{type: context, property, operator, value}]`, see
//! [`model::LegacyGuard`]). The original runtime ignored both; this module compiles and evaluates
//! them with the Common Expression Language (CEL, through the `cel` crate).
//!
//! # Language
//!
//! CEL, plus JavaScript's strict operators: `===` and `!==` outside string literals mean `==`
//! and `!=`, so guards written for the original (`context.availableStock === 0`) work as their
//! authors meant. Available: `&&`, `||`, `!`, `? :`, comparisons, arithmetic, string, number,
//! boolean and `null` literals, lists and maps, dot paths and `[...]`, `in`, `size()`, `has()`,
//! the comprehension macros (`exists`, `all`, ...) and the CEL standard functions
//! (`startsWith`, `contains`, ...).
//!
//! # Variables
//!
//! | name | value |
//! |---|---|
//! | `context` | the instance data (a map) |
//! | `payload` | the payload of the event being processed (a map) |
//! | `event` | `{type: <event type>, payload: <payload>}` |
//! | `state` | the name of the current state (a string) |
//!
//! Any other free identifier (other than a CEL type name such as `int`) is rejected when the
//! guard is compiled, so a typo such as `ctx.amount` fails at load time, not on the first event.
//!
//! # Semantics (decisions)
//!
//! * **Numbers** are numbers: JSON integers become CEL `int` (or `uint` above `i64::MAX`), other
//!   JSON numbers `double`. Comparisons and equality mix them (`6000.5 > 5000`,
//!   `5000 == 5000.0`). Unlike plain CEL, arithmetic mixes them too: `+ - * %` on an `int` and a
//!   `double` compute in `double`; `int / int` is exact when it divides (`6 / 3 == 2`) and a
//!   `double` otherwise (`7 / 2 == 3.5`), as a JavaScript author expects. Division or remainder
//!   by zero is an evaluation error, never an infinity. `int` overflow is an error.
//! * **A missing field** (`context.retryCount` when the context has no such key) is not a crash:
//!   [`CompiledGuard::evaluate`] returns [`GuardError::Evaluation`] saying
//!   `no such key: retryCount`. The engine treats any error as "the guard does not hold" and
//!   reports the reason. Use `has(context.retryCount)` to test for presence. As in CEL, `&&` and
//!   `||` absorb an error when the other side decides (`false && <error>` is `false`).
//! * **Type mismatches** (`context.amount > "5000"`) are evaluation errors, not `false`.
//! * **A result that is not a boolean** is [`GuardError::NotBoolean`].
//!
//! # Performance
//!
//! The expression is parsed once. Evaluation does not convert the whole context: `context`,
//! `payload` and `event` are lazy maps whose fields are converted only when read (strings are
//! borrowed, not copied), unless the guard uses one of them as a whole (`size(context)`,
//! `context == {...}`), in which case that one variable is converted entirely.
//!
//! # Budget
//!
//! A guard that iterates (`all`, `exists`, `map`...) is stopped after [`MAX_GUARD_STEPS`] steps
//! and reported as [`GuardError::Budget`] (so it does not hold), whatever the size of the data it
//! iterates: a nested comprehension over a large payload list cannot hold a shard. See the
//! `budget` module for what a step is. The bound is counted, not timed, so it is deterministic.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, operators};
use cel::common::traits::Indexer;
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, DYN_TYPE,
    MAP_TYPE, Type,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Value as CelValue};
use serde_json::{Map, Number, Value};

use crate::model;

/// Why a guard could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// The text is not a valid expression, or it reads a variable that does not exist.
    #[error("invalid guard `{expression}`{}: {message}", position(.line, .column))]
    Parse {
        /// The guard as written.
        expression: String,
        /// What is wrong.
        message: String,
        /// 1-based line in `expression`, when known.
        line: Option<u32>,
        /// 1-based column (in characters) in `expression`, when known.
        column: Option<u32>,
    },
    /// A legacy structured guard that cannot be turned into an expression.
    #[error("invalid legacy guard #{index} (property `{property}`): {message}")]
    Legacy {
        /// 0-based position of the guard in the `guards` list.
        index: usize,
        /// The property it reads.
        property: String,
        /// What is wrong.
        message: String,
    },
    /// The guard failed while running: a missing field, a type mismatch, a division by zero...
    #[error("guard `{expression}` could not be evaluated: {message}")]
    Evaluation {
        /// The guard as written.
        expression: String,
        /// What went wrong, e.g. `no such key: retryCount`.
        message: String,
    },
    /// The guard took more than [`MAX_GUARD_STEPS`] steps (comprehension iterations, list
    /// elements tested with `in` inside one, JSON values read): it is stopped and does not hold.
    #[error(
        "guard `{expression}` could not be evaluated: it exceeded its evaluation budget of {limit} steps (a comprehension over too many elements, or comprehensions nested too deep)"
    )]
    Budget {
        /// The guard as written.
        expression: String,
        /// The budget it exceeded ([`MAX_GUARD_STEPS`]).
        limit: u64,
    },
    /// The guard ran but did not produce a boolean.
    #[error("guard `{expression}` evaluated to a value of type {found}, not to a bool")]
    NotBoolean {
        /// The guard as written.
        expression: String,
        /// The CEL type of the result (`int`, `string`, ...).
        found: String,
    },
}

pub(super) fn position(line: &Option<u32>, column: &Option<u32>) -> String {
    match (line, column) {
        (Some(1), Some(column)) => format!(" at column {column}"),
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        _ => String::new(),
    }
}

/// The data a guard reads.
#[derive(Debug, Clone, Copy)]
pub struct GuardInput<'a> {
    /// The instance data, read as `context`.
    pub context: &'a Map<String, Value>,
    /// The event payload, read as `payload` and `event.payload`.
    pub payload: &'a Map<String, Value>,
    /// The event type, read as `event.type`.
    pub event_type: &'a str,
    /// The current state name, read as `state`.
    pub state: &'a str,
}

/// A parsed guard, ready to evaluate. Cheap to clone (the program is shared).
#[derive(Clone)]
pub struct CompiledGuard {
    pub(super) inner: Arc<Program>,
}

pub(super) struct Program {
    /// The guard as written (or as generated from legacy guards).
    pub(super) source: String,
    /// The parsed and rewritten expression.
    pub(super) expr: IdedExpr,
    /// Which variables the expression uses as a whole, so that they must be converted entirely.
    pub(super) whole: WholeUse,
    /// Whether the expression iterates (has a comprehension), so that its evaluation is
    /// budgeted ([`MAX_GUARD_STEPS`]).
    pub(super) budgeted: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct WholeUse {
    pub(super) context: bool,
    pub(super) payload: bool,
    pub(super) event: bool,
}

impl fmt::Debug for CompiledGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledGuard").field("source", &self.inner.source).finish_non_exhaustive()
    }
}

impl fmt::Display for CompiledGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.source)
    }
}

impl CompiledGuard {
    /// Parses a guard expression (CEL, with `===`/`!==` accepted for `==`/`!=`).
    ///
    /// Fails with [`GuardError::Parse`] on a syntax error (with the line and column in `text`
    /// where the parser gives one) or on a reference to a variable other than `context`,
    /// `payload`, `event` and `state`.
    pub fn compile(text: &str) -> Result<CompiledGuard, GuardError> {
        let translation = translate_js_operators(text);
        let parse_error = |message: String, offset: Option<usize>| {
            let (line, column) = match offset {
                Some(offset) => {
                    let (line, column) = line_column(text, translation.original_offset(offset));
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            GuardError::Parse { expression: text.to_owned(), message, line, column }
        };
        if text.trim().is_empty() {
            return Err(parse_error("the expression is empty".to_owned(), None));
        }
        let (mut expr, source_info) =
            env().parser().parse_with_source_info(&translation.text).map_err(|errors| {
                let count = errors.errors.len();
                match errors.errors.into_iter().next() {
                    Some(first) => {
                        let offset = usize::try_from(first.pos.0)
                            .ok()
                            .zip(usize::try_from(first.pos.1).ok())
                            .filter(|(line, column)| *line >= 1 && *column >= 1)
                            .map(|(line, column)| char_offset(&translation.text, line, column));
                        let mut message = readable_syntax_error(&first.msg);
                        if count > 1 {
                            message.push_str(&format!(" (and {} more error(s))", count - 1));
                        }
                        parse_error(message, offset)
                    }
                    None => parse_error("the expression does not parse".to_owned(), None),
                }
            })?;
        let mut rewriter = Rewriter::default();
        rewriter.walk(&mut expr);
        if let Some((name, id)) = rewriter.unknown {
            let offset =
                source_info.offset_for(id).and_then(|(start, _)| usize::try_from(start).ok());
            return Err(parse_error(
                format!(
                    "unknown variable `{name}`; a guard can read `context`, `payload`, `event` and `state`"
                ),
                offset,
            ));
        }
        Ok(CompiledGuard {
            inner: Arc::new(Program {
                source: text.to_owned(),
                expr,
                whole: rewriter.whole,
                budgeted: rewriter.comprehensions,
            }),
        })
    }

    /// Builds the guard equivalent to legacy structured guards, all of which must hold:
    /// `{type: context, property: a.b, operator: ">", value: 3}` reads `context.a.b > 3`,
    /// `type: event` or `payload` reads `payload.<property>`. An empty list always holds.
    ///
    /// Path segments that are not identifiers are read with `["..."]`, all-digit segments
    /// index lists (`items.0.sku` is `items[0].sku`).
    pub fn from_legacy(guards: &[model::LegacyGuard]) -> Result<CompiledGuard, GuardError> {
        let text = legacy_expression(guards)?;
        CompiledGuard::compile(&text)
    }

    /// The guard of a transition: its `guard` expression and its legacy `guards`, ANDed.
    /// `Ok(None)` when the transition has neither.
    pub fn for_transition(
        transition: &model::Transition,
    ) -> Result<Option<CompiledGuard>, GuardError> {
        let expression = transition.guard.as_ref().map(|guard| guard.expression());
        let legacy = transition.guards.as_deref().filter(|guards| !guards.is_empty());
        match (expression, legacy) {
            (None, None) => Ok(None),
            (Some(text), None) => CompiledGuard::compile(text).map(Some),
            (None, Some(guards)) => CompiledGuard::from_legacy(guards).map(Some),
            (Some(text), Some(guards)) => {
                // Compiled alone first, so that errors point into the text as written.
                CompiledGuard::compile(text)?;
                let legacy = legacy_expression(guards)?;
                CompiledGuard::compile(&format!("({text}) && {legacy}")).map(Some)
            }
        }
    }

    /// The guard as written (or, for legacy guards, as generated).
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Evaluates the guard.
    ///
    /// `Ok(true)`/`Ok(false)` is the guard's verdict. An error (a missing field, a type mismatch,
    /// a result that is not a boolean) means the guard could not decide: the engine treats it as
    /// "does not hold" and reports the reason.
    pub fn evaluate(&self, input: &GuardInput<'_>) -> Result<bool, GuardError> {
        let program = &*self.inner;
        let budget = program.budgeted.then(|| BudgetHandle(Arc::new(Budget::new(MAX_GUARD_STEPS))));
        let variables = Variables::new(input, program.whole, budget.as_ref());
        let mut context = Context::with_env(Arc::clone(env()));
        context.set_variable_resolver(&variables);
        let result = CelValue::resolve_val(&program.expr, &context);
        // Checked first: a spent budget decides, whatever the expression made of the error.
        if budget.as_ref().is_some_and(|budget| budget.0.exceeded()) {
            return Err(GuardError::Budget {
                expression: program.source.clone(),
                limit: MAX_GUARD_STEPS,
            });
        }
        let result = result.map_err(|error| GuardError::Evaluation {
            expression: program.source.clone(),
            message: describe(&error),
        })?;
        match result.downcast_ref::<CelBool>() {
            Some(verdict) => Ok(*verdict.inner()),
            None => Err(GuardError::NotBoolean {
                expression: program.source.clone(),
                found: result.get_type().name().to_owned(),
            }),
        }
    }
}

mod arith;
mod ast;
mod budget;
mod legacy;
#[cfg(test)]
mod tests;
mod translate;
mod variables;

use arith::*;
use ast::*;
pub use budget::MAX_GUARD_STEPS;
use budget::*;
use legacy::*;
use translate::*;
use variables::*;
