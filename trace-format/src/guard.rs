//! Panics of the Parquet, Arrow and ELF/DWARF parsers turned into errors.
//!
//! Those crates assert on malformed input instead of returning errors in a few places; a damaged
//! trace must give a one-line error, not abort a report or a recording. [`catch`] runs a closure
//! and returns the panic's first line as a [`Panicked`]. While one runs, [`is_active`] tells a
//! process-wide panic hook that the panic will be handled, so the hook can stay quiet then and
//! speak up for every other panic.

use std::{
    cell::Cell,
    panic::{self, AssertUnwindSafe},
};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// A panic caught by [`catch`]: the first line of its message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Panicked {
    pub message: String,
}

/// Runs `f`; a panic inside it becomes `Err(Panicked)`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("panic");
        Panicked {
            message: message.lines().next().unwrap_or_default().to_owned(),
        }
    })
}

/// Whether the current thread is inside [`catch`]: a panic now will be returned as an error.
pub fn is_active() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a panic becomes its first line, and that the guard is active only inside.
    #[test]
    fn panic_becomes_error() {
        let hook = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        let caught = catch(|| -> u32 {
            assert!(is_active());
            panic!("bad page header\nmore detail")
        });
        panic::set_hook(hook);
        assert_eq!(
            caught.map_err(|p| p.message),
            Err("bad page header".to_owned())
        );
        assert!(!is_active());
        assert_eq!(catch(|| 7), Ok(7));
    }
}
