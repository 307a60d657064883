//! The evaluation environment and the arithmetic that mixes integers and doubles as a
//! JavaScript author expects.

#[allow(unused_imports)]
use super::*;

pub(super) const ADD: &str = "xcomponent_add";
pub(super) const SUB: &str = "xcomponent_sub";
pub(super) const MUL: &str = "xcomponent_mul";
pub(super) const DIV: &str = "xcomponent_div";
pub(super) const REM: &str = "xcomponent_rem";

pub(super) fn arithmetic_replacement(operator: &str) -> Option<&'static str> {
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
pub(super) fn operator_symbol(function: &str) -> &str {
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

pub(super) static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    let operations: [(&str, cel::common::functions::Function); 5] =
        [(ADD, add), (SUB, sub), (MUL, mul), (DIV, div), (REM, rem)];
    for (name, operation) in operations {
        env.add_overload(name, name, vec![DYN_TYPE, DYN_TYPE], operation)
            .expect("the guard arithmetic functions have fresh names");
    }
    env.add_overload(CHARGE, CHARGE, vec![DYN_TYPE, DYN_TYPE], charge)
        .expect("the guard budget function has a fresh name");
    Arc::new(env)
});

pub(super) fn env() -> &'static Arc<Env> {
    &ENV
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

pub(super) fn add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Add, args)
}
pub(super) fn sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Sub, args)
}
pub(super) fn mul<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Mul, args)
}
pub(super) fn div<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Div, args)
}
pub(super) fn rem<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(Arith::Rem, args)
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
    Int(i64),
    UInt(u64),
    Double(f64),
}

impl Num {
    pub(super) fn of(value: &dyn Val) -> Option<Num> {
        if let Some(i) = value.downcast_ref::<CelInt>() {
            Some(Num::Int(*i.inner()))
        } else if let Some(u) = value.downcast_ref::<CelUInt>() {
            Some(Num::UInt(*u.inner()))
        } else {
            value.downcast_ref::<CelDouble>().map(|d| Num::Double(*d.inner()))
        }
    }

    pub(super) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::UInt(u) => u as f64,
            Num::Double(d) => d,
        }
    }

    pub(super) fn as_i128(self) -> Option<i128> {
        match self {
            Num::Int(i) => Some(i128::from(i)),
            Num::UInt(u) => Some(i128::from(u)),
            Num::Double(_) => None,
        }
    }

    pub(super) fn to_cel_value(self) -> CelValue {
        match self {
            Num::Int(i) => CelValue::Int(i),
            Num::UInt(u) => CelValue::UInt(u),
            Num::Double(d) => CelValue::Float(d),
        }
    }
}

pub(super) fn arithmetic<'b, 'v>(
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
            vec![l.get_type().name().to_owned(), r.get_type().name().to_owned()],
        )
    };
    let result = match op {
        Arith::Add => l.as_adder().ok_or_else(unsupported)?.add(r)?.into_owned(),
        Arith::Sub => l.as_subtractor().ok_or_else(unsupported)?.sub(r)?.into_owned(),
        Arith::Mul => l.as_multiplier().ok_or_else(unsupported)?.mul(r)?.into_owned(),
        Arith::Div => l.as_divider().ok_or_else(unsupported)?.div(r)?.into_owned(),
        Arith::Rem => l.as_modder().ok_or_else(unsupported)?.modulo(r)?.into_owned(),
    };
    Ok(CowVal::Owned(result))
}

/// Arithmetic on two numbers of which at least one is a double or which mix int and uint, or a
/// division of integers.
pub(super) fn numeric<'v>(op: Arith, a: Num, b: Num) -> Result<Box<dyn Val + 'v>, ExecutionError> {
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
            i64::try_from(exact).map(|i| Box::new(CelInt::from(i)) as Box<dyn Val + 'v>).or_else(
                |_| u64::try_from(exact).map(|u| Box::new(CelUInt::from(u)) as Box<dyn Val + 'v>),
            )
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
