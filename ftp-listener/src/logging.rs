//! The process's tracing subscriber: `RUST_LOG` filtering (suppaftp's password-bearing TRACE
//! kept off unless asked for by name) and the line format of `log.format`, text or JSON.
//!
//! JSON lines are one object each, with fixed keys first (`timestamp`, `level`, `target`,
//! `message`), then the fields of the spans the event is in, outermost first (`member`,
//! `group`, `term`, and `listener` where a span carries it), then the event's own fields
//! (`path`, `attempt`, `error`, ...). A name set twice keeps its innermost value, in the
//! place it first appeared, so every key appears once. Both formats write the same events
//! with the same fields: what is redacted in one is redacted in the other.

use std::fmt;
use std::io::IsTerminal;

use listener::LogFormat;
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber (stderr) in `format`, then logs the filter's warnings.
/// `fallback` is the filter when `RUST_LOG` is unset or empty.
pub(crate) fn init(format: LogFormat, fallback: &str) {
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| fallback.to_string());
    let (filter, warnings) = log_filter(Some(&rust_log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .init(),
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}

/// The log filter: `RUST_LOG` as written (default `info`), except that suppaftp's TRACE
/// output, which includes `PASS <password>`, stays off unless `RUST_LOG` names suppaftp
/// itself (then with a warning): a global `trace` gives suppaftp `debug`. Returns the
/// warnings to log once the subscriber is installed.
pub(crate) fn log_filter(rust_log: Option<&str>) -> (EnvFilter, Vec<String>) {
    let mut warnings = Vec::new();
    let written = rust_log.map(str::trim).filter(|s| !s.is_empty());
    let text = match written {
        Some(text) => match EnvFilter::try_new(text) {
            Ok(_) => text.to_string(),
            Err(e) => {
                warnings.push(format!(
                    "RUST_LOG `{text}` is not a valid filter ({e}); using `info`"
                ));
                "info".to_string()
            }
        },
        None => "info".to_string(),
    };
    let mut names_suppaftp = false;
    let mut global_trace = false;
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let target = directive.split(['[', '=']).next().unwrap_or_default();
        let level = directive
            .rsplit_once('=')
            .map(|(_, level)| level.parse::<LevelFilter>());
        if target.starts_with("suppaftp") {
            names_suppaftp = true;
            // A bare target enables every level.
            if matches!(level, None | Some(Ok(LevelFilter::TRACE))) {
                warnings.push(
                    "RUST_LOG enables suppaftp's TRACE output, which logs FTP passwords \
                     (`PASS ...`) in clear: use it only on a test server"
                        .to_string(),
                );
            }
        } else if !directive.contains('=') && !directive.contains('[') {
            global_trace |= matches!(directive.parse::<LevelFilter>(), Ok(LevelFilter::TRACE));
        }
    }
    let mut filter = EnvFilter::new(&text);
    if global_trace && !names_suppaftp {
        filter = filter.add_directive(
            "suppaftp=debug"
                .parse()
                .expect("a target and a level form a directive"),
        );
    }
    (filter, warnings)
}

/// One JSON object a line, span fields flattened (see the module doc).
#[derive(Debug, Clone, Copy)]
struct JsonLines;

/// The fields of one line in order, each name once.
#[derive(Debug, Default)]
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn set(&mut self, name: &str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_string(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here as Display wrapped in Debug: the text as written.
        self.set(field.name(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut fields = Fields::default();
        fields.set("timestamp", Value::from(timestamp));
        fields.set("level", Value::from(meta.level().as_str()));
        fields.set("target", Value::from(meta.target()));
        fields.set("message", Value::from(""));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // With `JsonFields` as the field formatter each span keeps its fields as a
                // JSON object (updated by `Span::record`).
                let Some(stored) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(stored.as_str()) {
                    for (name, value) in map {
                        fields.set(&name, value);
                    }
                }
            }
        }
        event.record(&mut fields);
        let mut line = String::with_capacity(256);
        line.push('{');
        for (i, (name, value)) in fields.0.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&Value::from(name.as_str()).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(rust_log: Option<&str>) -> (String, usize) {
        let (f, warnings) = log_filter(rust_log);
        (f.to_string(), warnings.len())
    }

    #[test]
    fn rust_log_is_obeyed_and_suppaftp_trace_needs_naming() {
        assert_eq!(filter(None), ("info".to_string(), 0));
        assert_eq!(filter(Some("warn")), ("warn".to_string(), 0));
        assert_eq!(filter(Some("debug")).0, "debug");
        let (trace, warned) = filter(Some("trace"));
        assert!(trace.contains("suppaftp=debug"), "{trace}");
        assert_eq!(warned, 0);
        let (asked, warned) = filter(Some("info,suppaftp=trace"));
        assert!(asked.contains("suppaftp=trace"), "{asked}");
        assert_eq!(warned, 1, "explicit suppaftp TRACE is warned about");
        assert_eq!(filter(Some("info,suppaftp")).1, 1);
        let (bad, warned) = filter(Some("=??=="));
        assert_eq!((bad.as_str(), warned), ("info", 1));
    }

    /// A writer that keeps what the subscriber wrote, for one test's scoped subscriber.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_flatten_span_fields_and_keep_each_name_once() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!(
                "election",
                member = "m-1",
                group = "g",
                term = tracing::field::Empty
            );
            let _o = outer.enter();
            outer.record("term", 7_u64);
            let inner = tracing::info_span!("leader", listener = "in", term = 8_u64);
            let _i = inner.enter();
            tracing::info!(path = %"/in/a \"b\".csv", attempt = 2_u32, "file received");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let value: Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert_eq!(value["message"], "file received", "{text}");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["member"], "m-1");
        assert_eq!(value["group"], "g");
        assert_eq!(value["listener"], "in");
        assert_eq!(value["term"], 8, "the innermost span's term wins: {text}");
        assert_eq!(value["path"], "/in/a \"b\".csv");
        assert_eq!(value["attempt"], 2);
        assert!(value["timestamp"].as_str().is_some_and(|t| t.len() > 10));
        assert!(
            lines[0].starts_with("{\"timestamp\":"),
            "fixed keys first: {text}"
        );
        assert_eq!(lines[0].matches("\"term\":").count(), 1, "{text}");
    }
}
