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
    /// The guard ran but did not produce a boolean.
    #[error("guard `{expression}` evaluated to a value of type {found}, not to a bool")]
    NotBoolean {
        /// The guard as written.
        expression: String,
        /// The CEL type of the result (`int`, `string`, ...).
        found: String,
    },
}

fn position(line: &Option<u32>, column: &Option<u32>) -> String {
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
    inner: Arc<Program>,
}

struct Program {
    /// The guard as written (or as generated from legacy guards).
    source: String,
    /// The parsed and rewritten expression.
    expr: IdedExpr,
    /// Which variables the expression uses as a whole, so that they must be converted entirely.
    whole: WholeUse,
}

#[derive(Debug, Clone, Copy, Default)]
struct WholeUse {
    context: bool,
    payload: bool,
    event: bool,
}

impl fmt::Debug for CompiledGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledGuard")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
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
            GuardError::Parse {
                expression: text.to_owned(),
                message,
                line,
                column,
            }
        };
        if text.trim().is_empty() {
            return Err(parse_error("the expression is empty".to_owned(), None));
        }
        let (mut expr, source_info) = env()
            .parser()
            .parse_with_source_info(&translation.text)
            .map_err(|errors| {
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
            let offset = source_info
                .offset_for(id)
                .and_then(|(start, _)| usize::try_from(start).ok());
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
        let legacy = transition
            .guards
            .as_deref()
            .filter(|guards| !guards.is_empty());
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
        let variables = Variables::new(input, program.whole);
        let mut context = Context::with_env(Arc::clone(env()));
        context.set_variable_resolver(&variables);
        let result = CelValue::resolve_val(&program.expr, &context).map_err(|error| {
            GuardError::Evaluation {
                expression: program.source.clone(),
                message: describe(&error),
            }
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

// ---------------------------------------------------------------------------------------------
// `===` / `!==` translation

/// The translated text, and where characters were dropped from the original.
struct Translation {
    text: String,
    /// Character offsets, in the original, of the characters dropped (ascending).
    removed: Vec<usize>,
}

impl Translation {
    /// The character offset in the original text of the character at `offset` in the translation.
    fn original_offset(&self, offset: usize) -> usize {
        let mut original = offset;
        for &removed in &self.removed {
            if removed <= original {
                original += 1;
            } else {
                break;
            }
        }
        original
    }
}

/// Rewrites `===` to `==` and `!==` to `!=`, leaving string literals and comments untouched.
fn translate_js_operators(text: &str) -> Translation {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut removed = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            let end = string_literal_end(&chars, i, has_raw_prefix(&chars, i));
            out.extend(&chars[i..end]);
            i = end;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n);
            out.extend(&chars[i..end]);
            i = end;
        } else if (c == '=' || c == '!')
            && chars.get(i + 1) == Some(&'=')
            && chars.get(i + 2) == Some(&'=')
        {
            out.push(c);
            out.push('=');
            removed.push(i + 2);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Translation { text: out, removed }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether the quote at `quote` opens a raw string (`r"..."`, `R'...'`, `br"..."`, `rb"..."`).
fn has_raw_prefix(chars: &[char], quote: usize) -> bool {
    let is_prefix = |c: char| matches!(c, 'r' | 'R' | 'b' | 'B');
    let starts_token = |at: usize| at == 0 || !is_ident_char(chars[at - 1]);
    let prefix: &[char] = if quote >= 2
        && is_prefix(chars[quote - 2])
        && is_prefix(chars[quote - 1])
        && !chars[quote - 2].eq_ignore_ascii_case(&chars[quote - 1])
        && starts_token(quote - 2)
    {
        &chars[quote - 2..quote]
    } else if quote >= 1 && is_prefix(chars[quote - 1]) && starts_token(quote - 1) {
        &chars[quote - 1..quote]
    } else {
        &[]
    };
    prefix.iter().any(|c| matches!(c, 'r' | 'R'))
}

/// The offset just past the string literal opening at `start` (or the end of an unterminated one).
fn string_literal_end(chars: &[char], start: usize, raw: bool) -> usize {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = if triple { start + 3 } else { start + 1 };
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && !raw {
            i += 2;
        } else if c == quote {
            if !triple {
                return i + 1;
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                return i + 3;
            }
            i += 1;
        } else if c == '\n' && !triple {
            // An unterminated literal: the parser reports it, the rest is code again.
            return i;
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The parser's message, without its grammar jargon.
fn readable_syntax_error(message: &str) -> String {
    let message = message.strip_prefix("Syntax error: ").unwrap_or(message);
    let message = message.replace("'<EOF>'", "the end of the expression");
    // "expecting {'[', '{', '(', '.', '-', '!', 'true', ...}": any operand would do.
    match message.find(" expecting {'['") {
        Some(at) => format!(
            "syntax error: {} where a value was expected",
            &message[..at]
        ),
        None => format!("syntax error: {message}"),
    }
}

/// The character offset of a 1-based (line, column).
fn char_offset(text: &str, line: usize, column: usize) -> usize {
    let before: usize = text
        .split('\n')
        .take(line - 1)
        .map(|l| l.chars().count() + 1)
        .sum();
    before + column - 1
}

/// The 1-based (line, column) of a character offset.
fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let mut line = 1u32;
    let mut column = 1u32;
    for c in text.chars().take(offset) {
        if c == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    (line, column)
}

// ---------------------------------------------------------------------------------------------
// Legacy guards

fn legacy_expression(guards: &[model::LegacyGuard]) -> Result<String, GuardError> {
    if guards.is_empty() {
        return Ok("true".to_owned());
    }
    let mut parts = Vec::with_capacity(guards.len());
    for (index, guard) in guards.iter().enumerate() {
        let error = |message: String| GuardError::Legacy {
            index,
            property: guard.property.clone(),
            message,
        };
        let root = match guard.source.as_deref().map(str::trim) {
            None | Some("context") => "context",
            Some("event") | Some("payload") => "payload",
            Some(other) => {
                return Err(error(format!(
                    "unknown type `{other}` (expected `context`, `event` or `payload`)"
                )));
            }
        };
        if guard.property.split('.').any(str::is_empty) {
            return Err(error("the property path has an empty segment".to_owned()));
        }
        let mut path = root.to_owned();
        for segment in guard.property.split('.') {
            if is_plain_identifier(segment) {
                path.push('.');
                path.push_str(segment);
            } else if segment.bytes().all(|b| b.is_ascii_digit()) && segment.parse::<i64>().is_ok()
            {
                path.push('[');
                path.push_str(segment);
                path.push(']');
            } else {
                path.push('[');
                push_string_literal(&mut path, segment);
                path.push(']');
            }
        }
        let operator = match guard.operator {
            model::Operator::Eq => "==",
            model::Operator::Ne => "!=",
            model::Operator::Gt => ">",
            model::Operator::Lt => "<",
            model::Operator::Ge => ">=",
            model::Operator::Le => "<=",
        };
        let mut part = format!("{path} {operator} ");
        push_json_literal(&mut part, &guard.value);
        parts.push(part);
    }
    Ok(parts.join(" && "))
}

/// CEL words that cannot follow a dot as a field name.
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

fn is_plain_identifier(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(is_ident_char)
        && !RESERVED.contains(&segment)
}

/// Appends `text` as a double-quoted CEL string literal.
fn push_string_literal(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a JSON value as a CEL literal.
fn push_json_literal(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&format!("{u}u"));
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // `{:?}` always writes a decimal point or an exponent: a CEL double literal.
                out.push_str(&format!("{f:?}"));
            }
        }
        Value::String(s) => push_string_literal(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_json_literal(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_string_literal(out, key);
                out.push_str(": ");
                push_json_literal(out, item);
            }
            out.push('}');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AST rewriting and checks

const ROOTS: [&str; 4] = ["context", "payload", "event", "state"];

#[derive(Default)]
struct Rewriter {
    /// Comprehension variables in scope (innermost last), and whether each is an accumulator.
    scope: Vec<(String, bool)>,
    whole: WholeUse,
    /// The first unknown identifier, and the node naming it.
    unknown: Option<(String, u64)>,
}

impl Rewriter {
    fn bound(&self, name: &str) -> Option<bool> {
        self.scope
            .iter()
            .rev()
            .find(|(bound, _)| bound == name)
            .map(|(_, accumulator)| *accumulator)
    }

    /// An identifier used other than as the operand of a field selection or an index.
    fn whole_ident(&mut self, name: &str, id: u64) {
        if self.bound(name).is_some() {
            return;
        }
        match name {
            "context" => self.whole.context = true,
            "payload" => self.whole.payload = true,
            "event" => self.whole.event = true,
            "state" => {}
            _ => self.check_known(name, id),
        }
    }

    /// An identifier read through a field selection or an index (lazily, for the roots).
    fn selected_ident(&mut self, name: &str, id: u64) {
        if self.bound(name).is_none() && !ROOTS.contains(&name) {
            self.check_known(name, id);
        }
    }

    fn check_known(&mut self, name: &str, id: u64) {
        let name = name.strip_prefix('.').unwrap_or(name);
        let known = env().types().find_type(name).is_some() || name == "optional";
        if !known && self.unknown.is_none() {
            self.unknown = Some((name.to_owned(), id));
        }
    }

    fn walk(&mut self, expr: &mut IdedExpr) {
        let id = expr.id;
        match &mut expr.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => {
                let name = name.clone();
                self.whole_ident(&name, id);
            }
            Expr::Select(select) => match &select.operand.expr {
                Expr::Ident(name) => {
                    let name = name.clone();
                    self.selected_ident(&name, select.operand.id);
                }
                _ => self.walk(&mut select.operand),
            },
            Expr::Call(call) => {
                if call.target.is_none()
                    && call.args.len() == 2
                    && let Some(replacement) = arithmetic_replacement(&call.func_name)
                {
                    // `accumulator + [x]` is how `map`/`filter` build their result: the
                    // interpreter optimises it only under its own name.
                    let on_accumulator = matches!(
                        &call.args[0].expr,
                        Expr::Ident(name) if self.bound(name) == Some(true)
                    );
                    if !on_accumulator {
                        call.func_name = replacement.to_owned();
                    }
                }
                if let Some(target) = call.target.as_deref_mut() {
                    self.walk(target);
                }
                let indexes_root = call.target.is_none()
                    && call.func_name == operators::INDEX
                    && call.args.len() == 2;
                for (position, arg) in call.args.iter_mut().enumerate() {
                    match &arg.expr {
                        Expr::Ident(name) if indexes_root && position == 0 => {
                            let name = name.clone();
                            self.selected_ident(&name, arg.id);
                        }
                        _ => self.walk(arg),
                    }
                }
            }
            Expr::Comprehension(comprehension) => {
                self.walk(&mut comprehension.iter_range);
                self.walk(&mut comprehension.accu_init);
                let depth = self.scope.len();
                self.scope.push((comprehension.iter_var.clone(), false));
                if let Some(second) = &comprehension.iter_var2 {
                    self.scope.push((second.clone(), false));
                }
                self.scope.push((comprehension.accu_var.clone(), true));
                self.walk(&mut comprehension.loop_cond);
                self.walk(&mut comprehension.loop_step);
                self.walk(&mut comprehension.result);
                self.scope.truncate(depth);
            }
            Expr::List(list) => {
                for element in &mut list.elements {
                    self.walk(element);
                }
            }
            Expr::Map(map) => {
                for entry in &mut map.entries {
                    match &mut entry.expr {
                        EntryExpr::MapEntry(entry) => {
                            self.walk(&mut entry.key);
                            self.walk(&mut entry.value);
                        }
                        EntryExpr::StructField(field) => self.walk(&mut field.value),
                    }
                }
            }
            Expr::Struct(structure) => {
                for entry in &mut structure.entries {
                    match &mut entry.expr {
                        EntryExpr::MapEntry(entry) => {
                            self.walk(&mut entry.key);
                            self.walk(&mut entry.value);
                        }
                        EntryExpr::StructField(field) => self.walk(&mut field.value),
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Environment and arithmetic that mixes numbers

const ADD: &str = "xcomponent_add";
const SUB: &str = "xcomponent_sub";
const MUL: &str = "xcomponent_mul";
const DIV: &str = "xcomponent_div";
const REM: &str = "xcomponent_rem";

fn arithmetic_replacement(operator: &str) -> Option<&'static str> {
    match operator {
        operators::ADD => Some(ADD),
        operators::SUBSTRACT => Some(SUB),
        operators::MULTIPLY => Some(MUL),
        operators::DIVIDE => Some(DIV),
        operators::MODULO => Some(REM),
        _ => None,
    }
}

/// The operator a function name stands for, for error messages.
fn operator_symbol(function: &str) -> &str {
    match function {
        ADD | operators::ADD => "+",
        SUB | operators::SUBSTRACT => "-",
        MUL | operators::MULTIPLY => "*",
        DIV | operators::DIVIDE => "/",
        REM | operators::MODULO => "%",
        operators::IN => "in",
        operators::INDEX => "[]",
        operators::NEGATE => "unary -",
        operators::LOGICAL_NOT => "!",
        "_._" => ".",
        other => other
            .strip_prefix('_')
            .and_then(|rest| rest.strip_suffix('_'))
            .filter(|inner| !inner.is_empty())
            .unwrap_or(other),
    }
}

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    let operations: [(&str, cel::common::functions::Function); 5] =
        [(ADD, add), (SUB, sub), (MUL, mul), (DIV, div), (REM, rem)];
    for (name, operation) in operations {
        env.add_overload(name, name, vec![DYN_TYPE, DYN_TYPE], operation)
            .expect("the guard arithmetic functions have fresh names");
    }
    Arc::new(env)
});

fn env() -> &'static Arc<Env> {
    &ENV
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

fn add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Add, args)
}
fn sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Sub, args)
}
fn mul<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Mul, args)
}
fn div<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Div, args)
}
fn rem<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Rem, args)
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    UInt(u64),
    Double(f64),
}

impl Num {
    fn of(value: &dyn Val) -> Option<Num> {
        if let Some(i) = value.downcast_ref::<CelInt>() {
            Some(Num::Int(*i.inner()))
        } else if let Some(u) = value.downcast_ref::<CelUInt>() {
            Some(Num::UInt(*u.inner()))
        } else {
            value
                .downcast_ref::<CelDouble>()
                .map(|d| Num::Double(*d.inner()))
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::UInt(u) => u as f64,
            Num::Double(d) => d,
        }
    }

    fn as_i128(self) -> Option<i128> {
        match self {
            Num::Int(i) => Some(i128::from(i)),
            Num::UInt(u) => Some(i128::from(u)),
            Num::Double(_) => None,
        }
    }

    fn to_cel_value(self) -> CelValue {
        match self {
            Num::Int(i) => CelValue::Int(i),
            Num::UInt(u) => CelValue::UInt(u),
            Num::Double(d) => CelValue::Float(d),
        }
    }
}

fn arithmetic<'b, 'v>(
    op: Arith,
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [lhs, rhs]: [CowVal<'b, 'v>; 2] =
        args.try_into().map_err(|args: Vec<CowVal<'b, 'v>>| {
            ExecutionError::invalid_argument_count(2, args.len())
        })?;
    let numbers = Num::of(lhs.as_ref()).zip(Num::of(rhs.as_ref()));
    match numbers {
        // Same integer kind, other than `/`: CEL's own semantics (overflow and `% 0` errors).
        Some((Num::Int(_), Num::Int(_)) | (Num::UInt(_), Num::UInt(_))) if op != Arith::Div => {}
        Some((a, b)) => return numeric(op, a, b).map(CowVal::Owned),
        None => {}
    }
    let l: &(dyn Val + 'v) = lhs.as_ref();
    let r: &(dyn Val + 'v) = rhs.as_ref();
    let unsupported = || {
        let function = match op {
            Arith::Add => operators::ADD,
            Arith::Sub => operators::SUBSTRACT,
            Arith::Mul => operators::MULTIPLY,
            Arith::Div => operators::DIVIDE,
            Arith::Rem => operators::MODULO,
        };
        ExecutionError::no_such_overload(
            function,
            vec![
                l.get_type().name().to_owned(),
                r.get_type().name().to_owned(),
            ],
        )
    };
    let result = match op {
        Arith::Add => l.as_adder().ok_or_else(unsupported)?.add(r)?.into_owned(),
        Arith::Sub => l
            .as_subtractor()
            .ok_or_else(unsupported)?
            .sub(r)?
            .into_owned(),
        Arith::Mul => l
            .as_multiplier()
            .ok_or_else(unsupported)?
            .mul(r)?
            .into_owned(),
        Arith::Div => l.as_divider().ok_or_else(unsupported)?.div(r)?.into_owned(),
        Arith::Rem => l
            .as_modder()
            .ok_or_else(unsupported)?
            .modulo(r)?
            .into_owned(),
    };
    Ok(CowVal::Owned(result))
}

/// Arithmetic on two numbers of which at least one is a double or which mix int and uint, or a
/// division of integers.
fn numeric<'v>(op: Arith, a: Num, b: Num) -> Result<Box<dyn Val + 'v>, ExecutionError> {
    let is_zero = match b {
        Num::Int(i) => i == 0,
        Num::UInt(u) => u == 0,
        Num::Double(d) => d == 0.0,
    };
    if is_zero && op == Arith::Div {
        return Err(ExecutionError::DivisionByZero(a.to_cel_value()));
    }
    if is_zero && op == Arith::Rem {
        return Err(ExecutionError::RemainderByZero(a.to_cel_value()));
    }
    if let (Some(x), Some(y)) = (a.as_i128(), b.as_i128()) {
        let exact = match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
            Arith::Rem => x.checked_rem(y),
            Arith::Div => match x.checked_rem(y) {
                Some(0) => x.checked_div(y),
                // Not a whole quotient: the exact value, as a double.
                _ => return Ok(Box::new(CelDouble::from(a.as_f64() / b.as_f64()))),
            },
        };
        let overflow = || {
            let name = match op {
                Arith::Add => "+",
                Arith::Sub => "-",
                Arith::Mul => "*",
                Arith::Div => "/",
                Arith::Rem => "%",
            };
            ExecutionError::Overflow(name, a.to_cel_value(), b.to_cel_value())
        };
        let exact = exact.ok_or_else(overflow)?;
        // Keep the kind of the operands where it fits: int for int, uint for uint.
        let both_uint = matches!((a, b), (Num::UInt(_), Num::UInt(_)));
        return if both_uint {
            u64::try_from(exact).map(|u| Box::new(CelUInt::from(u)) as Box<dyn Val + 'v>)
        } else {
            i64::try_from(exact)
                .map(|i| Box::new(CelInt::from(i)) as Box<dyn Val + 'v>)
                .or_else(|_| {
                    u64::try_from(exact).map(|u| Box::new(CelUInt::from(u)) as Box<dyn Val + 'v>)
                })
        }
        .map_err(|_| overflow());
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    let result = match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
        Arith::Rem => x % y,
    };
    Ok(Box::new(CelDouble::from(result)))
}

// ---------------------------------------------------------------------------------------------
// Variables: lazy maps over the JSON input

/// `context`, `payload` or `event`, read field by field without converting the rest.
#[derive(Debug, Clone, Copy)]
enum LazyMap<'a> {
    Object(&'a Map<String, Value>),
    Event {
        event_type: &'a str,
        payload: &'a Map<String, Value>,
    },
}

impl Val for LazyMap<'_> {
    fn get_type(&self) -> &Type {
        &MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &MAP_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

impl Indexer for LazyMap<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let Some(key) = idx.downcast_ref::<CelString>() else {
            return Err(ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_owned(),
                want: "string".to_owned(),
            });
        };
        let key = key.inner();
        let found: Option<Box<dyn Val + 'v>> = match *self {
            LazyMap::Object(map) => map.get(key).map(json_to_val),
            LazyMap::Event {
                event_type,
                payload,
            } => match key {
                "type" => Some(Box::new(CelString::from(event_type))),
                "payload" => Some(Box::new(object_to_map(payload))),
                _ => None,
            },
        };
        found
            .map(CowVal::Owned)
            .ok_or_else(|| ExecutionError::no_such_key(key))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// Converts a JSON value (and everything under it) to a CEL value borrowing its strings.
fn json_to_val<'a>(value: &'a Value) -> Box<dyn Val + 'a> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => number_to_val(n),
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => Box::new(CelList::from(
            items.iter().map(json_to_val).collect::<Vec<_>>(),
        )),
        Value::Object(map) => Box::new(object_to_map(map)),
    }
}

fn number_to_val<'a>(n: &Number) -> Box<dyn Val + 'a> {
    if let Some(i) = n.as_i64() {
        Box::new(CelInt::from(i))
    } else if let Some(u) = n.as_u64() {
        Box::new(CelUInt::from(u))
    } else {
        Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
    }
}

fn object_to_map<'a>(map: &'a Map<String, Value>) -> CelMap<'a> {
    let entries: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = map
        .iter()
        .map(|(key, value)| (CelMapKey::from(key.as_str()), json_to_val(value)))
        .collect();
    CelMap::from(entries)
}

/// A map variable: lazy, or converted entirely when the guard uses it as a whole.
enum MapVariable<'a> {
    Lazy(LazyMap<'a>),
    Whole(CelMap<'a>),
}

impl<'a> MapVariable<'a> {
    fn as_val(&self) -> &(dyn Val + 'a) {
        match self {
            MapVariable::Lazy(lazy) => lazy,
            MapVariable::Whole(map) => map,
        }
    }
}

/// The four variables of a guard, for one evaluation.
struct Variables<'a> {
    context: MapVariable<'a>,
    payload: MapVariable<'a>,
    event: MapVariable<'a>,
    state: CelString<'a>,
}

impl<'a> Variables<'a> {
    fn new(input: &GuardInput<'a>, whole: WholeUse) -> Self {
        let object = |map: &'a Map<String, Value>, whole: bool| {
            if whole {
                MapVariable::Whole(object_to_map(map))
            } else {
                MapVariable::Lazy(LazyMap::Object(map))
            }
        };
        let event = if whole.event {
            let mut entries: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::with_capacity(2);
            entries.insert(
                CelMapKey::from("type"),
                Box::new(CelString::from(input.event_type)),
            );
            entries.insert(
                CelMapKey::from("payload"),
                Box::new(object_to_map(input.payload)),
            );
            MapVariable::Whole(CelMap::from(entries))
        } else {
            MapVariable::Lazy(LazyMap::Event {
                event_type: input.event_type,
                payload: input.payload,
            })
        };
        Variables {
            context: object(input.context, whole.context),
            payload: object(input.payload, whole.payload),
            event,
            state: CelString::from(input.state),
        }
    }
}

impl VariableResolver for Variables<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        match variable {
            "context" => Some(CowVal::Borrowed(self.context.as_val())),
            "payload" => Some(CowVal::Borrowed(self.payload.as_val())),
            "event" => Some(CowVal::Borrowed(self.event.as_val())),
            "state" => Some(CowVal::Borrowed(&self.state)),
            _ => None,
        }
    }
}

/// A business-readable description of an evaluation error.
fn describe(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::UndeclaredReference(name) => {
            format!("unknown variable or function `{name}`")
        }
        ExecutionError::NoSuchOverload(overload) => {
            let operator = operator_symbol(overload.function());
            let types = overload.argument_types().join(", ");
            if overload.is_member_function() {
                format!("no method `{operator}` for ({types})")
            } else if operator
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                format!("no function `{operator}` for ({types})")
            } else {
                format!("cannot apply `{operator}` to ({types})")
            }
        }
        ExecutionError::UnsupportedBinaryOperator(operation, lhs, rhs) => {
            let operator = match *operation {
                "add" => "+",
                "sub" => "-",
                "mul" => "*",
                "div" => "/",
                "rem" => "%",
                other => other,
            };
            format!(
                "cannot apply `{operator}` to ({}, {})",
                type_name(lhs),
                type_name(rhs)
            )
        }
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "remainder by zero".to_owned(),
        ExecutionError::Overflow(operator, lhs, rhs) => {
            format!("integer overflow in {lhs:?} {operator} {rhs:?}")
        }
        other => other.to_string(),
    }
}

/// The CEL name of the type of a value.
fn type_name(value: &CelValue) -> String {
    match value.type_of() {
        cel::objects::ValueType::Float => "double".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// Evaluates `text` against `context`, an empty payload, event `EV` in state `Pending`.
    fn eval(text: &str, context: Value) -> Result<bool, GuardError> {
        eval_with(text, context, json!({}))
    }

    fn eval_with(text: &str, context: Value, payload: Value) -> Result<bool, GuardError> {
        let guard = CompiledGuard::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let context = object(context);
        let payload = object(payload);
        guard.evaluate(&GuardInput {
            context: &context,
            payload: &payload,
            event_type: "EV",
            state: "Pending",
        })
    }

    fn holds(text: &str, context: Value) -> bool {
        eval(text, context).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn compiled_guard_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + fmt::Debug>() {}
        check::<CompiledGuard>();
    }

    #[test]
    fn every_guard_of_the_examples_compiles_and_means_what_it_says() {
        let examples = [
            "context.deliveryAttempts < 3",
            "context.amount > 5000",
            "context.amount <= 5000",
            "context.retryCount < 3",
            "context.availableStock > 0",
            "context.availableStock <= context.threshold && context.availableStock > 0",
            "context.availableStock === 0",
            "context.availableStock > context.threshold",
            "context.retryCount >= 3",
            "context.attempts < 3",
        ];
        for text in examples {
            CompiledGuard::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        assert!(holds(
            "context.deliveryAttempts < 3",
            json!({"deliveryAttempts": 2})
        ));
        assert!(!holds(
            "context.deliveryAttempts < 3",
            json!({"deliveryAttempts": 3})
        ));
        assert!(holds("context.amount > 5000", json!({"amount": 6000.5})));
        assert!(!holds("context.amount > 5000", json!({"amount": 5000})));
        assert!(holds("context.amount <= 5000", json!({"amount": 5000.0})));
        assert!(holds("context.retryCount >= 3", json!({"retryCount": 3})));
        let low = "context.availableStock <= context.threshold && context.availableStock > 0";
        assert!(holds(low, json!({"availableStock": 5, "threshold": 10})));
        assert!(!holds(low, json!({"availableStock": 0, "threshold": 10})));
        assert!(!holds(low, json!({"availableStock": 11, "threshold": 10})));
        assert!(holds(
            "context.availableStock === 0",
            json!({"availableStock": 0})
        ));
        assert!(holds(
            "context.availableStock === 0",
            json!({"availableStock": 0.0})
        ));
        assert!(!holds(
            "context.availableStock === 0",
            json!({"availableStock": 4})
        ));
        assert!(holds(
            "context.availableStock > context.threshold",
            json!({"availableStock": 11, "threshold": 10.5})
        ));
    }

    #[test]
    fn comparison_truth_tables_mix_integers_and_floats() {
        // (a, b, a<b, a<=b, a>b, a>=b, a==b, a!=b)
        let rows: [(Value, Value, [bool; 6]); 8] = [
            (json!(1), json!(2), [true, true, false, false, false, true]),
            (json!(2), json!(2), [false, true, false, true, true, false]),
            (json!(3), json!(2), [false, false, true, true, false, true]),
            (
                json!(5000),
                json!(5000.0),
                [false, true, false, true, true, false],
            ),
            (
                json!(6000.5),
                json!(5000),
                [false, false, true, true, false, true],
            ),
            (
                json!(-1),
                json!(u64::MAX),
                [true, true, false, false, false, true],
            ),
            (
                json!(u64::MAX),
                json!(1.5),
                [false, false, true, true, false, true],
            ),
            (
                json!("abc"),
                json!("abd"),
                [true, true, false, false, false, true],
            ),
        ];
        let ops = ["<", "<=", ">", ">=", "==", "!="];
        for (a, b, expected) in rows {
            for (op, want) in ops.iter().zip(expected) {
                let text = format!("context.a {op} context.b");
                let got = holds(&text, json!({"a": a, "b": b}));
                assert_eq!(got, want, "{a} {op} {b}");
            }
        }
        // literals on either side
        assert!(holds("6000.5 > context.limit", json!({"limit": 5000})));
        assert!(holds("context.limit == 5000.0", json!({"limit": 5000})));
        assert!(holds("context.limit === 5000", json!({"limit": 5000.0})));
        assert!(holds("context.limit !== 5000.5", json!({"limit": 5000})));
        assert!(holds(
            "context.big == 18446744073709551615u",
            json!({"big": u64::MAX})
        ));
    }

    #[test]
    fn arithmetic_mixes_numbers() {
        assert!(holds(
            "context.amount * 2 > 10000",
            json!({"amount": 5000.5})
        ));
        assert!(holds(
            "context.amount * 1.1 > 5500",
            json!({"amount": 5001})
        ));
        assert!(holds(
            "context.total - context.paid == 0.5",
            json!({"total": 100.5, "paid": 100})
        ));
        assert!(holds("context.count + 1 == 4", json!({"count": 3})));
        assert!(holds("7 / 2 == 3.5", json!({})));
        assert!(holds("6 / 3 == 2 && type(6 / 3) == int", json!({})));
        assert!(holds(
            "context.a / context.b == 2.5",
            json!({"a": 5, "b": 2})
        ));
        assert!(holds("7 % 4 == 3 && 7.5 % 2 == 1.5", json!({})));
        assert!(holds("context.u + 1 == 6", json!({"u": 5u64})));
        assert!(holds("'a' + 'b' == 'ab' && [1] + [2] == [1, 2]", json!({})));
        assert!(holds("-context.n < 0", json!({"n": 3})));
        let error = eval("context.n / 0 > 1", json!({"n": 3})).unwrap_err();
        assert!(error.to_string().contains("division by zero"), "{error}");
        let error = eval("context.n / 0.0 > 1", json!({"n": 3})).unwrap_err();
        assert!(error.to_string().contains("division by zero"), "{error}");
        let error = eval("context.n % 0 > 1", json!({"n": 3})).unwrap_err();
        assert!(error.to_string().contains("remainder by zero"), "{error}");
        let error = eval("context.n + 1 > 1", json!({"n": i64::MAX})).unwrap_err();
        assert!(error.to_string().contains("overflow"), "{error}");
        let error = eval("context.s + 1 > 1", json!({"s": "x"})).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot apply `+` to (string, int)"),
            "{error}"
        );
        // the map/filter macros keep working (their accumulator is not rewritten)
        assert!(holds("[1, 2, 3].map(x, x * 2) == [2, 4, 6]", json!({})));
        assert!(holds(
            "context.items.filter(i, i.qty > 1).size() == 1",
            json!({"items": [{"qty": 1}, {"qty": 2}]})
        ));
    }

    #[test]
    fn strict_operators_are_translated_outside_string_literals_only() {
        let payload = json!({"note": "a === b", "other": "x !== y"});
        assert!(eval_with(r#"payload.note == "a === b""#, json!({}), payload.clone()).unwrap());
        assert!(eval_with(r#"payload.note === "a === b""#, json!({}), payload.clone()).unwrap());
        assert!(eval_with(r#"payload.other === 'x !== y'"#, json!({}), payload.clone()).unwrap());
        assert!(eval_with(r#"payload.note !== "a == b""#, json!({}), payload.clone()).unwrap());
        assert!(
            eval_with(
                r#"payload.note !== r"a === b" == false"#,
                json!({}),
                payload.clone()
            )
            .unwrap()
        );
        assert!(
            eval_with(
                r#"payload.note === """a === b""""#,
                json!({}),
                payload.clone()
            )
            .unwrap()
        );
        let quoted = json!({"note": "say \"===\" now"});
        assert!(eval_with(r#"payload.note === "say \"===\" now""#, json!({}), quoted).unwrap());
        let backslash = json!({"note": "a\\"});
        assert!(eval_with(r#"payload.note === r"a\" && 1 === 1"#, json!({}), backslash).unwrap());
        assert_eq!(
            translate_js_operators("a === b // it's === here\n&& c !== d").text,
            "a == b // it's === here\n&& c != d"
        );
        assert_eq!(
            translate_js_operators(r#"a == "===" && b != '!=='"#).text,
            r#"a == "===" && b != '!=='"#
        );
    }

    #[test]
    fn logical_operators() {
        let data = json!({"t": true, "f": false});
        for (text, want) in [
            ("context.t && context.t", true),
            ("context.t && context.f", false),
            ("context.f && context.t", false),
            ("context.f && context.f", false),
            ("context.t || context.f", true),
            ("context.f || context.t", true),
            ("context.f || context.f", false),
            ("!context.f", true),
            ("!context.t", false),
            ("!(context.t && context.f) || context.f", true),
            ("context.t ? 1 == 1 : 1 == 2", true),
        ] {
            assert_eq!(holds(text, data.clone()), want, "{text}");
        }
    }

    #[test]
    fn missing_keys_are_evaluation_errors() {
        let error = eval("context.retryCount < 3", json!({})).unwrap_err();
        assert_eq!(
            error,
            GuardError::Evaluation {
                expression: "context.retryCount < 3".to_owned(),
                message: "no such key: retryCount".to_owned(),
            }
        );
        let error = eval("context.customer.tier == 'gold'", json!({"customer": {}})).unwrap_err();
        assert!(error.to_string().contains("no such key: tier"), "{error}");
        // presence tests and short-circuits
        assert!(!holds("has(context.retryCount)", json!({})));
        assert!(holds(
            "has(context.retryCount)",
            json!({"retryCount": null})
        ));
        assert!(holds(
            "!has(context.retryCount) || context.retryCount < 3",
            json!({})
        ));
        assert!(!holds(
            "has(context.retryCount) && context.retryCount < 3",
            json!({})
        ));
        assert!(!holds("context.missing > 1 && false", json!({})));
        assert!(holds(
            "has(context.customer.tier)",
            json!({"customer": {"tier": "gold"}})
        ));
        assert!(holds("has(event.type) && !has(event.other)", json!({})));
    }

    #[test]
    fn type_mismatches_and_non_booleans_are_errors() {
        let error = eval("context.amount > '5000'", json!({"amount": 6000})).unwrap_err();
        assert!(matches!(error, GuardError::Evaluation { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains("cannot apply `>` to (int, string)"),
            "{error}"
        );
        let error = eval("context.amount", json!({"amount": 6000})).unwrap_err();
        assert_eq!(
            error,
            GuardError::NotBoolean {
                expression: "context.amount".to_owned(),
                found: "int".to_owned()
            }
        );
        assert!(error.to_string().contains("not to a bool"));
        assert!(matches!(
            eval("context.n + 1", json!({"n": 1})),
            Err(GuardError::NotBoolean { .. })
        ));
        // equality across types is simply false
        assert!(!holds("context.amount == '6000'", json!({"amount": 6000})));
        assert!(holds("context.x == null", json!({"x": null})));
    }

    #[test]
    fn nested_paths_lists_and_functions() {
        let data = json!({
            "customer": {"tier": "gold", "address": {"city": "Paris"}},
            "tags": ["vip", "new"],
            "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 0}],
            "status": "open",
            "weird-key": 1,
        });
        for text in [
            "context.customer.tier == \"gold\"",
            "context.customer.address.city === 'Paris'",
            "context.customer == {'tier': 'gold', 'address': {'city': 'Paris'}}",
            "{'tier': 'gold', 'address': {'city': 'Paris'}} == context.customer",
            "'vip' in context.tags",
            "context.status in ['open', 'pending']",
            "'tier' in context.customer",
            "size(context.tags) == 2 && context.tags.size() == 2",
            "context.items[0].sku == 'A' && context.items[1].qty == 0",
            "context.items.exists(i, i.qty == 0)",
            "context.items.all(i, i.sku.size() == 1)",
            "context['weird-key'] == 1",
            "context.status.startsWith('op') && context.customer.tier.contains('ol')",
            "size(context) == 5",
            "'status' in context",
            "context.tags == ['vip', 'new']",
        ] {
            assert!(holds(text, data.clone()), "{text}");
        }
        assert!(!holds("'gone' in context.tags", data.clone()));
        assert!(!holds("context.customer.tier == 'silver'", data));
    }

    #[test]
    fn state_event_and_payload() {
        let context = json!({"limit": 10});
        let payload = json!({"amount": 12, "kind": "wire"});
        for text in [
            "state == \"Pending\"",
            "state === 'Pending' && state !== 'Done'",
            "event.type == 'EV'",
            "event.payload.amount > context.limit",
            "payload.amount > context.limit && payload.kind == 'wire'",
            "event == {'type': 'EV', 'payload': {'amount': 12, 'kind': 'wire'}}",
            "payload == event.payload",
            "size(payload) == 2",
        ] {
            assert!(
                eval_with(text, context.clone(), payload.clone()).unwrap(),
                "{text}"
            );
        }
        assert!(!eval_with("state == 'Done'", context, payload).unwrap());
    }

    #[test]
    fn unknown_variables_are_rejected_when_compiling() {
        let error = CompiledGuard::compile("context.a > 1 && ctx.amount > 5").unwrap_err();
        match &error {
            GuardError::Parse {
                message,
                line,
                column,
                ..
            } => {
                assert!(message.contains("unknown variable `ctx`"), "{message}");
                assert_eq!((*line, *column), (Some(1), Some(18)));
            }
            other => panic!("{other:?}"),
        }
        // comprehension variables and type names are known
        CompiledGuard::compile("context.items.exists(x, x.qty > 0)").unwrap();
        CompiledGuard::compile("type(context.a) == int || type(context.a) == double").unwrap();
        assert!(CompiledGuard::compile("context.items.exists(x, y > 0)").is_err());
    }

    #[test]
    fn parse_errors_carry_the_column_in_the_original_text() {
        let error = CompiledGuard::compile("context.amount >").unwrap_err();
        match &error {
            GuardError::Parse {
                line,
                column,
                message,
                expression,
            } => {
                assert_eq!(expression, "context.amount >");
                assert_eq!(*line, Some(1));
                assert_eq!(*column, Some(17), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            error
                .to_string()
                .starts_with("invalid guard `context.amount >` at column 17: "),
            "{error}"
        );

        // the `===` before the error shifts the translated text by one character
        let error = CompiledGuard::compile("context.a === 1 && ) ").unwrap_err();
        match &error {
            GuardError::Parse { column, .. } => assert_eq!(*column, Some(20), "{error}"),
            other => panic!("{other:?}"),
        }
        let error =
            CompiledGuard::compile("context.a === 1 &&\n  context.b !== 2 &&\n  ) ").unwrap_err();
        match &error {
            GuardError::Parse { line, column, .. } => {
                assert_eq!((*line, *column), (Some(3), Some(3)), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().contains("at line 3, column 3"), "{error}");
        let error = CompiledGuard::compile("   ").unwrap_err();
        assert!(
            matches!(
                error,
                GuardError::Parse {
                    line: None,
                    column: None,
                    ..
                }
            ),
            "{error}"
        );
        assert!(CompiledGuard::compile("context.a = 1").is_err());
        assert!(CompiledGuard::compile("'unterminated").is_err());
    }

    fn legacy(
        source: Option<&str>,
        property: &str,
        operator: model::Operator,
        value: Value,
    ) -> model::LegacyGuard {
        model::LegacyGuard {
            source: source.map(str::to_owned),
            property: property.to_owned(),
            operator,
            value,
        }
    }

    #[test]
    fn legacy_guards_are_anded() {
        use model::Operator::*;
        let guards = [
            legacy(Some("context"), "retryCount", Lt, json!(3)),
            legacy(None, "customer.tier", Eq, json!("gold")),
            legacy(Some("event"), "amount", Ge, json!(100.5)),
            legacy(Some("payload"), "kind", Ne, json!("cash")),
            legacy(None, "items.0.sku", Eq, json!("A")),
            legacy(None, "weird-key", Le, json!(1)),
        ];
        let guard = CompiledGuard::from_legacy(&guards).unwrap();
        assert_eq!(
            guard.source(),
            "context.retryCount < 3 && context.customer.tier == \"gold\" && payload.amount >= 100.5 \
             && payload.kind != \"cash\" && context.items[0].sku == \"A\" && context[\"weird-key\"] <= 1"
        );
        let context = object(json!({
            "retryCount": 2, "customer": {"tier": "gold"}, "items": [{"sku": "A"}], "weird-key": 1
        }));
        let payload = object(json!({"amount": 200, "kind": "wire"}));
        let mut input = GuardInput {
            context: &context,
            payload: &payload,
            event_type: "PAY",
            state: "S",
        };
        assert!(guard.evaluate(&input).unwrap());
        let cash = object(json!({"amount": 200, "kind": "cash"}));
        input.payload = &cash;
        assert!(!guard.evaluate(&input).unwrap());
        let missing = object(json!({"kind": "wire"}));
        input.payload = &missing;
        assert!(guard.evaluate(&input).is_err());

        // values of every JSON kind become literals
        let odd = [legacy(
            None,
            "v",
            Eq,
            json!({"a": [1, null, true, "q\"\\\n"], "b": 1e-7}),
        )];
        let guard = CompiledGuard::from_legacy(&odd).unwrap();
        let context = object(json!({"v": {"a": [1, null, true, "q\"\\\n"], "b": 1e-7}}));
        let input = GuardInput {
            context: &context,
            payload: &payload,
            event_type: "PAY",
            state: "S",
        };
        assert!(guard.evaluate(&input).unwrap(), "{}", guard.source());

        assert!(
            CompiledGuard::from_legacy(&[])
                .unwrap()
                .evaluate(&input)
                .unwrap()
        );
        let error =
            CompiledGuard::from_legacy(&[legacy(Some("state"), "x", Eq, json!(1))]).unwrap_err();
        assert!(
            matches!(error, GuardError::Legacy { index: 0, .. }),
            "{error}"
        );
        let error = CompiledGuard::from_legacy(&[legacy(None, "a..b", Eq, json!(1))]).unwrap_err();
        assert!(error.to_string().contains("empty segment"), "{error}");
    }

    #[test]
    fn guards_of_a_transition_combine() {
        let transition: model::Transition = serde_json::from_value(json!({
            "from": "A", "to": "B", "event": "GO",
            "guard": {"expression": "context.amount > 5000"},
            "guards": [{"type": "context", "property": "region", "operator": "===", "value": "EU"}]
        }))
        .unwrap();
        let guard = CompiledGuard::for_transition(&transition).unwrap().unwrap();
        let context = object(json!({"amount": 6000, "region": "EU"}));
        let payload = Map::new();
        let input = GuardInput {
            context: &context,
            payload: &payload,
            event_type: "GO",
            state: "A",
        };
        assert!(guard.evaluate(&input).unwrap());
        let plain: model::Transition =
            serde_json::from_value(json!({"from": "A", "to": "B", "event": "GO"})).unwrap();
        assert!(CompiledGuard::for_transition(&plain).unwrap().is_none());
        let bare: model::Transition = serde_json::from_value(
            json!({"from": "A", "to": "B", "event": "GO", "guard": "context.amount <"}),
        )
        .unwrap();
        assert!(matches!(
            CompiledGuard::for_transition(&bare),
            Err(GuardError::Parse { .. })
        ));
    }

    #[test]
    fn variables_are_read_lazily_unless_used_whole() {
        let lazy =
            CompiledGuard::compile("context.a > 1 && has(payload.b) && event.type == 'X'").unwrap();
        let whole = lazy.inner.whole;
        assert!(!whole.context && !whole.payload && !whole.event);
        let eager =
            CompiledGuard::compile("size(context) > 1 && payload == {} && event != null").unwrap();
        let whole = eager.inner.whole;
        assert!(whole.context && whole.payload && whole.event);
        // a comprehension variable named like a root does not count
        let shadowed = CompiledGuard::compile("[1].exists(context, context > 0)").unwrap();
        assert!(!shadowed.inner.whole.context);
    }

    /// A CEL string literal for `content`, quoted with `quote`.
    fn cel_literal(content: &str, quote: char) -> String {
        let mut out = String::new();
        out.push(quote);
        for c in content.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c if c == quote => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out.push(quote);
        out
    }

    proptest! {
        #[test]
        fn strict_operator_translation_never_changes_string_literals(
            content in "[=!\"' \\\\ab\n/]{0,24}",
            double_quoted in any::<bool>(),
        ) {
            let literal = cel_literal(&content, if double_quoted { '"' } else { '\'' });
            let text = format!("payload.note === {literal} && !(payload.note !== {literal})");
            let translated = translate_js_operators(&text).text;
            prop_assert_eq!(&translated, &format!("payload.note == {literal} && !(payload.note != {literal})"));
            let payload = object(json!({"note": content}));
            let context = Map::new();
            let guard = CompiledGuard::compile(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let input = GuardInput { context: &context, payload: &payload, event_type: "E", state: "S" };
            prop_assert_eq!(guard.evaluate(&input), Ok(true));
        }

        #[test]
        fn text_without_strict_operators_is_unchanged(text in "[a-z=!<>&|\"' .()0-9\\\\]{0,40}") {
            prop_assume!(!text.contains("===") && !text.contains("!=="));
            let translation = translate_js_operators(&text);
            prop_assert_eq!(translation.text, text);
            prop_assert!(translation.removed.is_empty());
        }
    }
}
