//! The guard's variables as lazy maps over the JSON input: fields are converted only when read.

#[allow(unused_imports)]
use super::*;

/// `context`, `payload` or `event`, read field by field without converting the rest.
#[derive(Debug, Clone, Copy)]
pub(super) struct LazyMap<'a> {
    fields: LazyFields<'a>,
    /// The evaluation's budget, charged one step per JSON value converted (guards that iterate).
    budget: Option<&'a Budget>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum LazyFields<'a> {
    Object(&'a Map<String, Value>),
    Event { event_type: &'a str, payload: &'a Map<String, Value> },
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
        let charge = |value: &Value| match self.budget {
            Some(budget) => budget.spend(json_size(value)),
            None => Ok(()),
        };
        let found: Option<Box<dyn Val + 'v>> = match self.fields {
            LazyFields::Object(map) => match map.get(key) {
                Some(value) => {
                    charge(value)?;
                    Some(json_to_val(value))
                }
                None => None,
            },
            LazyFields::Event { event_type, payload } => match key {
                "type" => Some(Box::new(CelString::from(event_type))),
                "payload" => {
                    if let Some(budget) = self.budget {
                        budget.spend(payload.values().map(json_size).sum::<u64>() + 1)?;
                    }
                    Some(Box::new(object_to_map(payload)))
                }
                _ => None,
            },
        };
        found.map(CowVal::Owned).ok_or_else(|| ExecutionError::no_such_key(key))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// Converts a JSON value (and everything under it) to a CEL value borrowing its strings.
pub(super) fn json_to_val<'a>(value: &'a Value) -> Box<dyn Val + 'a> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => number_to_val(n),
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            Box::new(CelList::from(items.iter().map(json_to_val).collect::<Vec<_>>()))
        }
        Value::Object(map) => Box::new(object_to_map(map)),
    }
}

pub(super) fn number_to_val<'a>(n: &Number) -> Box<dyn Val + 'a> {
    if let Some(i) = n.as_i64() {
        Box::new(CelInt::from(i))
    } else if let Some(u) = n.as_u64() {
        Box::new(CelUInt::from(u))
    } else {
        Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
    }
}

pub(super) fn object_to_map<'a>(map: &'a Map<String, Value>) -> CelMap<'a> {
    let entries: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = map
        .iter()
        .map(|(key, value)| (CelMapKey::from(key.as_str()), json_to_val(value)))
        .collect();
    CelMap::from(entries)
}

/// A map variable: lazy, or converted entirely when the guard uses it as a whole.
pub(super) enum MapVariable<'a> {
    Lazy(LazyMap<'a>),
    Whole(CelMap<'a>),
}

impl<'a> MapVariable<'a> {
    pub(super) fn as_val(&self) -> &(dyn Val + 'a) {
        match self {
            MapVariable::Lazy(lazy) => lazy,
            MapVariable::Whole(map) => map,
        }
    }
}

/// The four variables of a guard, for one evaluation.
pub(super) struct Variables<'a> {
    pub(super) context: MapVariable<'a>,
    pub(super) payload: MapVariable<'a>,
    pub(super) event: MapVariable<'a>,
    pub(super) state: CelString<'a>,
    /// The hidden `@budget` variable, for guards that iterate.
    pub(super) budget: Option<&'a BudgetHandle>,
}

impl<'a> Variables<'a> {
    pub(super) fn new(
        input: &GuardInput<'a>,
        whole: WholeUse,
        budget: Option<&'a BudgetHandle>,
    ) -> Self {
        let steps = budget.map(|handle| &*handle.0);
        let object = |map: &'a Map<String, Value>, whole: bool| {
            if whole {
                MapVariable::Whole(object_to_map(map))
            } else {
                MapVariable::Lazy(LazyMap { fields: LazyFields::Object(map), budget: steps })
            }
        };
        let event = if whole.event {
            let mut entries: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::with_capacity(2);
            entries.insert(CelMapKey::from("type"), Box::new(CelString::from(input.event_type)));
            entries.insert(CelMapKey::from("payload"), Box::new(object_to_map(input.payload)));
            MapVariable::Whole(CelMap::from(entries))
        } else {
            MapVariable::Lazy(LazyMap {
                fields: LazyFields::Event { event_type: input.event_type, payload: input.payload },
                budget: steps,
            })
        };
        Variables {
            context: object(input.context, whole.context),
            payload: object(input.payload, whole.payload),
            event,
            state: CelString::from(input.state),
            budget,
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
            BUDGET_VARIABLE => self.budget.map(|budget| CowVal::Borrowed(budget as &dyn Val)),
            _ => None,
        }
    }
}

/// A business-readable description of an evaluation error.
pub(super) fn describe(error: &ExecutionError) -> String {
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
            } else if operator.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
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
            format!("cannot apply `{operator}` to ({}, {})", type_name(lhs), type_name(rhs))
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
pub(super) fn type_name(value: &CelValue) -> String {
    match value.type_of() {
        cel::objects::ValueType::Float => "double".to_owned(),
        other => other.to_string(),
    }
}
