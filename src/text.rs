//! Text that came from outside (a target's answer, a directory value) made safe to print and
//! store: control characters escaped, secrets in use replaced, the length bounded.

/// At most this many characters of one piece of outside text are kept.
pub(crate) const MAX_CHARS: usize = 500;

/// `text` as it may reach a terminal, a log or the state: every secret in `secrets` replaced by
/// `[redacted]`, control characters (ESC, CR, LF, BEL, NUL, …) escaped as `\u{1b}`, and cut to
/// [`MAX_CHARS`] characters with `…`.
pub(crate) fn untrusted(text: &str, secrets: &[String]) -> String {
    let mut t = text.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if t.contains(s.as_str()) {
            t = t.replace(s.as_str(), "[redacted]");
        }
    }
    escape(&t)
}

/// `text` with control characters escaped and cut to [`MAX_CHARS`] characters.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CHARS * 2));
    for (n, c) in text.chars().enumerate() {
        if n == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_secrets_never_pass() {
        let secrets = vec!["s3cr3t-token".to_owned()];
        let got = untrusted("Bearer s3cr3t-token\u{1b}[2J\r\n\u{7}\0ok", &secrets);
        assert_eq!(got, r"Bearer [redacted]\u{1b}[2J\r\n\u{7}\u{0}ok");
        assert_eq!(escape(&"é".repeat(600)).chars().count(), MAX_CHARS + 1);
        assert_eq!(escape("plain"), "plain");
    }
}
