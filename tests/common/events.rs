//! The host's `tracing` events, recorded by a global subscriber so tests can assert
//! on what the host logged about a plugin (the client forwards plugin output from
//! tasks on any runtime thread, so a thread-local subscriber would miss some).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One event as the host's subscriber saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) level: Level,
    pub(crate) target: String,
    pub(crate) message: String,
    pub(crate) fields: BTreeMap<String, String>,
}

impl Seen {
    /// A field's value, or "" when the event has no such field.
    pub(crate) fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Fields<'a>(&'a mut Seen);
        impl Visit for Fields<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                let value = format!("{value:?}");
                if field.name() == "message" {
                    self.0.message = value;
                } else {
                    self.0.fields.insert(field.name().to_owned(), value);
                }
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0
                    .fields
                    .insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut seen = Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: String::new(),
            fields: BTreeMap::new(),
        };
        event.record(&mut Fields(&mut seen));
        self.0.lock().unwrap().push(seen);
    }
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder = Recorder::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(recorder.clone()),
        )
        .expect("no other global subscriber in this test binary");
        recorder
    })
}

/// Starts recording (idempotent); call before starting the plugin.
pub(crate) fn record() {
    recorder();
}

/// Every recorded event tagged with this plugin pid.
pub(crate) fn events_of(pid: u32) -> Vec<Seen> {
    let pid = pid.to_string();
    recorder()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.fields.get("pid") == Some(&pid))
        .cloned()
        .collect()
}

/// Every recorded event.
#[allow(dead_code)] // Not every test binary that records looks at all events.
pub(crate) fn all() -> Vec<Seen> {
    recorder().0.lock().unwrap().clone()
}
