//! The evaluation budget of a guard: a deterministic bound on the work one evaluation may do.
//!
//! The engine is pure and reads no clock, so the bound is counted in steps, not time. Only a
//! guard that iterates (a comprehension: `all`, `exists`, `exists_one`, `map`, `filter`) can do
//! more work than its text and its input are long; such a guard gets a budget of
//! [`MAX_GUARD_STEPS`] per evaluation, and each of these costs steps:
//!
//! * entering a comprehension: one step per element of the list or map it iterates (the range
//!   is wrapped in `xcomponent_charge(range, @budget)` when the guard is compiled);
//! * inside a comprehension, `x in list`: one step per element of the list;
//! * reading a field of `context`, `payload` or `event`: one step per JSON value converted
//!   (`payload.items` with 300 objects of 2 fields is 901 steps), since a loop reads it again
//!   on every iteration.
//!
//! When the budget runs out, the charge fails, every later charge fails at once (so an `||` or
//! an `exists` that absorbs the error winds down quickly), and the evaluation ends with
//! [`GuardError::Budget`](super::GuardError::Budget) whatever the expression produced: the same
//! input always gives the same verdict.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[allow(unused_imports)]
use super::*;

/// The most steps one evaluation of a guard with a comprehension may take (see the module
/// documentation for what a step is): about 10 ms of work on a slow core. One comprehension over
/// 4,000 two-field objects fits; a comprehension nested in another over a 300-item list (90,000
/// iterations) does not.
pub const MAX_GUARD_STEPS: u64 = 20_000;

/// The function the range of every comprehension is wrapped in.
pub(super) const CHARGE: &str = "xcomponent_charge";
/// The hidden variable holding the budget of the current evaluation. `@` cannot start an
/// identifier in CEL, so no guard can name it.
pub(super) const BUDGET_VARIABLE: &str = "@budget";

/// What is left of one evaluation's budget.
#[derive(Debug)]
pub(super) struct Budget {
    remaining: AtomicU64,
    exceeded: AtomicBool,
}

impl Budget {
    pub(super) fn new(steps: u64) -> Self {
        Budget { remaining: AtomicU64::new(steps), exceeded: AtomicBool::new(false) }
    }

    /// Takes `steps` from the budget; an error once it is spent (and ever after).
    pub(super) fn spend(&self, steps: u64) -> Result<(), ExecutionError> {
        let remaining = self.remaining.load(Ordering::Relaxed);
        if self.exceeded.load(Ordering::Relaxed) || steps > remaining {
            self.exceeded.store(true, Ordering::Relaxed);
            self.remaining.store(0, Ordering::Relaxed);
            return Err(ExecutionError::function_error(CHARGE, BUDGET_MESSAGE));
        }
        self.remaining.store(remaining - steps, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a charge failed during the evaluation.
    pub(super) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }
}

const BUDGET_MESSAGE: &str = "evaluation budget exceeded";

/// The budget as a CEL value, so that `xcomponent_charge` receives it as an argument.
#[derive(Debug, Clone)]
pub(super) struct BudgetHandle(pub(super) Arc<Budget>);

static BUDGET_TYPE: Type = Type::new_unspecified_type("xcomponent_budget");

impl Val for BudgetHandle {
    fn get_type(&self) -> &Type {
        &BUDGET_TYPE
    }

    fn cel_type() -> &'static Type {
        &BUDGET_TYPE
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl cel::common::value::StaticVal for BudgetHandle {}

/// `xcomponent_charge(value, @budget)`: spends one step per element of `value` (a list or a
/// map; anything else costs one step) and returns `value` unchanged.
pub(super) fn charge<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [value, budget]: [CowVal<'b, 'v>; 2] =
        args.try_into().map_err(|args: Vec<CowVal<'b, 'v>>| {
            ExecutionError::invalid_argument_count(2, args.len())
        })?;
    let Some(budget) = budget.downcast_ref::<BudgetHandle>() else {
        return Err(ExecutionError::function_error(CHARGE, "the budget argument is missing"));
    };
    budget.0.spend(element_count(value.as_ref()))?;
    Ok(value)
}

/// The number of elements of a list or map, 1 for any other value.
fn element_count(value: &dyn Val) -> u64 {
    let count = if let Some(list) = value.downcast_ref::<CelList>() {
        list.inner().len()
    } else if let Some(map) = value.downcast_ref::<CelMap>() {
        map.inner().len()
    } else {
        1
    };
    u64::try_from(count).unwrap_or(u64::MAX)
}

/// `xcomponent_charge(expr, @budget)`, with the ids of `expr` (the expression keeps its place
/// for error positions).
pub(super) fn charged(expr: IdedExpr) -> IdedExpr {
    let id = expr.id;
    IdedExpr {
        id,
        expr: Expr::Call(cel::common::ast::CallExpr {
            func_name: CHARGE.to_owned(),
            target: None,
            args: vec![expr, IdedExpr { id, expr: Expr::Ident(BUDGET_VARIABLE.to_owned()) }],
        }),
    }
}

/// The number of JSON values in `value`, itself included (the cost of converting it).
pub(super) fn json_size(value: &Value) -> u64 {
    match value {
        Value::Array(items) => 1 + items.iter().map(json_size).sum::<u64>(),
        Value::Object(map) => 1 + map.values().map(json_size).sum::<u64>(),
        _ => 1,
    }
}
