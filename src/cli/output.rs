//! Where a command's output goes: the terminal, or a buffer sent back over the control socket.
//!
//! Commands print with `out!` and `err!`. A command the daemon runs for a client runs inside
//! [`capture`], so the client prints exactly what the command would have printed locally.

use std::cell::RefCell;
use std::io::Write as _;

/// A command's standard output and standard error, captured.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
}

tokio::task_local! {
    static CAPTURE: RefCell<Captured>;
}

/// Writes a line to standard output (or the capture). A closed pipe (`scimsync plan | head`)
/// is not an error worth a panic.
pub fn out_line(args: std::fmt::Arguments<'_>) {
    let captured = CAPTURE.try_with(|c| {
        let mut c = c.borrow_mut();
        let _ = std::fmt::Write::write_fmt(&mut c.stdout, args);
        c.stdout.push('\n');
    });
    if captured.is_err() {
        let _ = writeln!(std::io::stdout().lock(), "{args}");
    }
}

/// Writes a line to standard error (or the capture).
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let captured = CAPTURE.try_with(|c| {
        let mut c = c.borrow_mut();
        let _ = std::fmt::Write::write_fmt(&mut c.stderr, args);
        c.stderr.push('\n');
    });
    if captured.is_err() {
        let _ = writeln!(std::io::stderr().lock(), "{args}");
    }
}

/// Runs a command with its output captured instead of printed.
pub async fn capture<F: std::future::Future<Output = i32>>(f: F) -> (i32, Captured) {
    CAPTURE
        .scope(RefCell::new(Captured::default()), async move {
            let code = f.await;
            let out = CAPTURE.with(|c| c.take());
            (code, out)
        })
        .await
}

/// Prints text received from the daemon as it is, with no extra newline.
pub fn print_raw(c: &Captured) {
    let _ = std::io::stdout().lock().write_all(c.stdout.as_bytes());
    let _ = std::io::stderr().lock().write_all(c.stderr.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captured_output_keeps_both_streams_apart() {
        let (code, c) = capture(async {
            out_line(format_args!("one {}", 1));
            err_line(format_args!("two"));
            out_line(format_args!("three"));
            7
        })
        .await;
        assert_eq!(code, 7);
        assert_eq!(c.stdout, "one 1\nthree\n");
        assert_eq!(c.stderr, "two\n");
    }
}
