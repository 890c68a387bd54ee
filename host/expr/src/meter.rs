//! The evaluation budget.
//!
//! The `cel` interpreter has no step counter, and functions are plain `fn` pointers that see
//! only their arguments. An evaluation runs synchronously on one thread, so the meter is a
//! thread-local that [`Metered`] arms for the duration of one evaluation; the functions and
//! the hooks the parser inserts into comprehensions ([`crate::analyze`]) charge it.

use std::cell::Cell;

use crate::limits::EVAL_BUDGET;

thread_local! {
    /// Units left in the evaluation running on this thread; `None` outside an evaluation
    /// (parse-time constant folding, unit tests calling functions directly).
    static LEFT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Arms the meter for one evaluation; disarms it when dropped, even on an early return.
pub(crate) struct Metered {
    previous: Option<u64>,
}

impl Metered {
    pub(crate) fn start() -> Metered {
        Metered {
            previous: LEFT.with(|left| left.replace(Some(EVAL_BUDGET))),
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        LEFT.with(|left| left.set(self.previous));
    }
}

/// Charges `units`; an error once the budget is spent.
pub(crate) fn charge(units: u64) -> Result<(), String> {
    LEFT.with(|left| match left.get() {
        None => Ok(()),
        Some(have) if have >= units => {
            left.set(Some(have - units));
            Ok(())
        }
        Some(_) => {
            left.set(Some(0));
            Err(format!(
                "evaluation budget exceeded ({EVAL_BUDGET} units: comprehension iterations \
                 and data processed by functions); simplify the expression or pre-filter \
                 the data"
            ))
        }
    })
}

/// Units for processing `bytes` bytes of string or bytes data.
pub(crate) fn bytes_cost(bytes: usize) -> u64 {
    (bytes as u64) / 64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unarmed_meter_never_refuses() {
        assert!(charge(u64::MAX).is_ok());
    }

    #[test]
    fn armed_meter_refuses_past_the_budget_and_disarms_on_drop() {
        {
            let _m = Metered::start();
            assert!(charge(EVAL_BUDGET - 1).is_ok());
            assert!(charge(1).is_ok());
            assert!(charge(1).unwrap_err().contains("budget exceeded"));
        }
        assert!(charge(u64::MAX).is_ok());
    }
}
