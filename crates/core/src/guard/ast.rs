//! Rewriting and checking the parsed expression: arithmetic that mixes numbers, and the rule
//! that only `context`, `payload`, `event` and `state` are free variables.

#[allow(unused_imports)]
use super::*;

pub(super) const ROOTS: [&str; 4] = ["context", "payload", "event", "state"];

#[derive(Default)]
pub(super) struct Rewriter {
    /// Comprehension variables in scope (innermost last), and whether each is an accumulator.
    pub(super) scope: Vec<(String, bool)>,
    pub(super) whole: WholeUse,
    /// The first unknown identifier, and the node naming it.
    pub(super) unknown: Option<(String, u64)>,
    /// Whether the expression has a comprehension (its evaluation is then budgeted).
    pub(super) comprehensions: bool,
}

impl Rewriter {
    pub(super) fn bound(&self, name: &str) -> Option<bool> {
        self.scope
            .iter()
            .rev()
            .find(|(bound, _)| bound == name)
            .map(|(_, accumulator)| *accumulator)
    }

    /// An identifier used other than as the operand of a field selection or an index.
    pub(super) fn whole_ident(&mut self, name: &str, id: u64) {
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
    pub(super) fn selected_ident(&mut self, name: &str, id: u64) {
        if self.bound(name).is_none() && !ROOTS.contains(&name) {
            self.check_known(name, id);
        }
    }

    pub(super) fn check_known(&mut self, name: &str, id: u64) {
        let name = name.strip_prefix('.').unwrap_or(name);
        let known = env().types().find_type(name).is_some() || name == "optional";
        if !known && self.unknown.is_none() {
            self.unknown = Some((name.to_owned(), id));
        }
    }

    pub(super) fn walk(&mut self, expr: &mut IdedExpr) {
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
                // Inside a loop, `x in list` costs one step per element of the list.
                if !self.scope.is_empty()
                    && call.target.is_none()
                    && call.func_name == operators::IN
                    && call.args.len() == 2
                {
                    let list = std::mem::take(&mut call.args[1]);
                    call.args[1] = charged(list);
                }
            }
            Expr::Comprehension(comprehension) => {
                self.comprehensions = true;
                self.walk(&mut comprehension.iter_range);
                // Entering the loop costs one step per element it iterates.
                let range = std::mem::take(&mut comprehension.iter_range);
                comprehension.iter_range = charged(range);
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
