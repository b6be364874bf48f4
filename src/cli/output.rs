//! Where a command's output goes: standard output and standard error, line by line. A closed
//! pipe (`scimsync plan | head`) is not an error worth a panic.

use std::io::Write as _;

/// Writes a line to standard output.
pub fn out_line(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{args}");
}

/// Writes a line to standard error.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}
