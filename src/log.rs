//! One-line log records on stderr, in a form journald and `grep` both read well:
//! `LEVEL target: message`. Never pass a secret (password, token, cookie) to these
//! macros: the log is read by more people than the database.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns debug records on or off (`--log-level debug`).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

#[doc(hidden)]
pub fn write(level: &str, target: &str, args: std::fmt::Arguments<'_>) {
    let line = format!("{level} {target}: {args}\n");
    // One write per record so concurrent threads never interleave within a line.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write("INFO", module_path!(), format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write("WARN", module_path!(), format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write("ERROR", module_path!(), format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::write("DEBUG", module_path!(), format_args!($($arg)*))
        }
    };
}
