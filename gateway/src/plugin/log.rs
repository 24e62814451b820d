//! The log of one plugin call: lines from the `log` interface and from the guest's stdout and
//! stderr, in the order they were written, under one set of caps.
//!
//! This module owns [`LogSink`]: it keeps at most `max_log_lines` lines of at most
//! `max_log_line_bytes` each, counts what it drops, and forwards each kept line to `tracing`;
//! and [`StdioCapture`], the WASI stdout and stderr streams that write into it. It never blocks
//! a writer and never grows past its caps, whatever a guest writes.

use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::output::truncate_line;
use super::{LogLevel, LogLine};

/// Which captured stdio stream a write came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stdio {
    /// Logged at info level.
    Stdout,
    /// Logged at error level (runtimes print uncaught exceptions there).
    Stderr,
}

impl Stdio {
    fn level(self) -> LogLevel {
        match self {
            Self::Stdout => LogLevel::Info,
            Self::Stderr => LogLevel::Error,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Stdout => 0,
            Self::Stderr => 1,
        }
    }
}

/// A call's log, shared by the store (the `log` interface) and the stdio streams WASI owns.
#[derive(Clone, Debug)]
pub(crate) struct LogSink(Arc<Mutex<Lines>>);

#[derive(Debug)]
struct Lines {
    plugin: Arc<str>,
    max_lines: usize,
    max_line_bytes: usize,
    lines: Vec<LogLine>,
    dropped: usize,
    /// The unfinished line of stdout and of stderr, at most `max_line_bytes` long.
    partial: [Vec<u8>; 2],
}

impl LogSink {
    pub(crate) fn new(plugin: Arc<str>, max_lines: usize, max_line_bytes: usize) -> Self {
        Self(Arc::new(Mutex::new(Lines {
            plugin,
            max_lines,
            max_line_bytes,
            lines: Vec::new(),
            dropped: 0,
            partial: [Vec::new(), Vec::new()],
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Lines> {
        // A panic while holding the lock leaves only whole lines behind: keep going.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One line from the `log` interface.
    pub(crate) fn log(&self, level: LogLevel, message: String) {
        self.lock().push(level, message);
    }

    /// Bytes a guest wrote to stdout or stderr: complete lines are logged, the rest waits for
    /// its newline (or the end of the call).
    pub(crate) fn write_stdio(&self, stream: Stdio, mut bytes: &[u8]) {
        let mut lines = self.lock();
        while let Some(end) = memchr(b'\n', bytes) {
            lines.extend_partial(stream, &bytes[..end]);
            lines.end_partial(stream);
            bytes = &bytes[end + 1..];
        }
        lines.extend_partial(stream, bytes);
    }

    /// Why a guest that trapped failed, from its last error lines: the last one, or, when a
    /// runtime written in Rust reported a panic on stderr after the interpreter's own message
    /// (componentize-py does so for an uncaught exception), the line before that report.
    pub(crate) fn last_error(&self) -> Option<String> {
        let mut lines = self.lock();
        lines.end_partial(Stdio::Stderr);
        let errors: Vec<&str> = lines
            .lines
            .iter()
            .rev()
            .take_while(|l| l.level == LogLevel::Error)
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let panic = errors
            .iter()
            .rposition(|l| l.starts_with("thread '") && l.contains("panicked at"));
        match panic {
            Some(at) if at > 0 => Some(errors[at - 1].to_owned()),
            _ => errors.last().map(|l| (*l).to_owned()),
        }
    }

    /// The lines kept and the number dropped, once the call is over.
    pub(crate) fn finish(&self) -> (Vec<LogLine>, usize) {
        let mut lines = self.lock();
        lines.end_partial(Stdio::Stdout);
        lines.end_partial(Stdio::Stderr);
        (std::mem::take(&mut lines.lines), lines.dropped)
    }
}

impl Lines {
    fn push(&mut self, level: LogLevel, message: String) {
        if self.lines.len() >= self.max_lines {
            self.dropped += 1;
            return;
        }
        let message = truncate_line(message, self.max_line_bytes);
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
        self.lines.push(LogLine { level, message });
    }

    /// Adds to the unfinished line, keeping no more than a line may hold.
    fn extend_partial(&mut self, stream: Stdio, bytes: &[u8]) {
        let room = self
            .max_line_bytes
            .saturating_sub(self.partial[stream.index()].len());
        self.partial[stream.index()].extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Logs the unfinished line of `stream`, if any.
    fn end_partial(&mut self, stream: Stdio) {
        let bytes = std::mem::take(&mut self.partial[stream.index()]);
        if bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text).to_owned();
        self.push(stream.level(), text);
    }
}

/// A captured stdio stream: what the guest writes goes into the call's log sink.
#[derive(Clone)]
pub(crate) struct StdioCapture {
    sink: LogSink,
    stream: Stdio,
}

impl StdioCapture {
    pub(crate) fn new(sink: &LogSink, stream: Stdio) -> Self {
        Self {
            sink: sink.clone(),
            stream,
        }
    }
}

impl IsTerminal for StdioCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for StdioCapture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.sink.write_stdio(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Writes never block: whatever is over the caps is dropped and counted by the sink.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StdioCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StdioCapture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.sink.write_stdio(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_is_split_into_capped_lines_in_order() {
        let sink = LogSink::new("p".into(), 4, 8);
        sink.log(LogLevel::Debug, "first".into());
        sink.write_stdio(Stdio::Stdout, b"hel");
        sink.write_stdio(Stdio::Stdout, b"lo\r\nwor");
        sink.write_stdio(Stdio::Stderr, b"a very long error line\n");
        sink.write_stdio(Stdio::Stdout, b"ld\nmore\nand more\n");
        let (lines, dropped) = sink.finish();
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (LogLevel::Debug, "first"),
                (LogLevel::Info, "hello"),
                (LogLevel::Error, "a very l"),
                (LogLevel::Info, "world"),
            ]
        );
        assert_eq!(dropped, 2);
    }

    #[test]
    fn the_error_before_a_runtime_panic_report_is_the_reason() {
        let sink = LogSink::new("p".into(), 10, 100);
        assert_eq!(sink.last_error(), None);
        sink.write_stdio(
            Stdio::Stderr,
            b"Traceback (most recent call last):\nValueError: bad\n",
        );
        sink.write_stdio(
            Stdio::Stderr,
            b"thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1:2:\n",
        );
        sink.write_stdio(
            Stdio::Stderr,
            b"Python function threw an unexpected exception\nnote: run with",
        );
        assert_eq!(sink.last_error().as_deref(), Some("ValueError: bad"));
        sink.log(LogLevel::Error, "panicked at src/lib.rs: oops".into());
        assert_eq!(sink.last_error().as_deref(), Some("ValueError: bad"));
        sink.log(LogLevel::Info, "later".into());
        assert_eq!(sink.last_error(), None, "only trailing error lines count");
    }

    #[test]
    fn an_endless_line_stays_within_its_cap() {
        let sink = LogSink::new("p".into(), 10, 16);
        for _ in 0..10_000 {
            sink.write_stdio(Stdio::Stdout, &[b'x'; 1024]);
        }
        assert_eq!(sink.lock().partial[0].len(), 16);
        let (lines, _) = sink.finish();
        assert_eq!(lines[0].message, "x".repeat(16));
    }
}
