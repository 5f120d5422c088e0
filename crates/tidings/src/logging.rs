//! Where `serve`'s logs go: stderr, as text or JSON lines, filtered by `TIDINGS_LOG`, and
//! every line passed through [`tidings_core::redact::text`] first, so tokens, signing
//! secrets, Request URL passwords and secret query values never reach the log at any
//! level — ours or a library's (the HTTP trace layer logs whole request URIs at debug,
//! `?token=` and `/link/?ticket=` included).

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber.
pub fn init(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TIDINGS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, not in files and log collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(RedactedStderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Makes one [`RedactedLine`] per event: the formatter writes a whole event to one writer.
struct RedactedStderr;

impl<'a> MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;

    fn make_writer(&'a self) -> RedactedLine {
        RedactedLine(Vec::with_capacity(256))
    }
}

/// Collects one formatted event; on drop, writes it redacted to stderr in one write.
struct RedactedLine(Vec<u8>);

impl Write for RedactedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.0);
        let clean = tidings_core::redact::text(&line);
        // Nowhere to report a failed log write.
        let _ = std::io::stderr().lock().write_all(clean.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_collected_whole_before_it_is_redacted() {
        let mut w = RedactedLine(Vec::new());
        w.write_all(b"uri=/api/x?tok").unwrap();
        w.write_all(b"en=xoxb-secret\n").unwrap();
        let line = String::from_utf8_lossy(&w.0).into_owned();
        assert_eq!(
            tidings_core::redact::text(&line),
            "uri=/api/x?token=xoxb-[redacted]\n"
        );
        w.0.clear();
    }
}
