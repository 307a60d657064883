//! Prometheus metrics: one recorder per server (not the process-global one, so several servers
//! and tests can live in one process), fed by the runtime event stream, the HTTP middleware, the
//! store decorator (`TimedStore`), the WebSocket hub and the runtime's message counters (read at
//! each scrape); rendered at `GET /metrics` (`routes/prometheus.rs`).
//!
//! Labels are bounded: component, machine, state and event names come from the loaded
//! definitions (an ignored event's free-text type is never a label), routes are the matched
//! route templates, and no instance id ever appears.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;
use xcomponent_runtime::{Registry, RuntimeEvent};

/// Histogram buckets (seconds) for every latency: 50 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The metrics of one server (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Series registered for HTTP requests: registering one builds its labels and takes the
    /// registry's lock, so each is registered once and its handles kept here.
    http: RwLock<HashMap<Box<str>, Vec<HttpSeries>>>,
    /// `xcomponent_event_duration_seconds` by outcome, kept the same way.
    event_durations: RwLock<HashMap<Box<str>, Histogram>>,
}

/// The handles of one route template, method and status.
struct HttpSeries {
    method: &'static str,
    status: u16,
    duration: Histogram,
    requests: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh, empty set of metrics.
    pub fn new() -> Metrics {
        let builder = match PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS) {
            Ok(builder) => builder,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics {
            inner: Arc::new(Inner {
                recorder,
                handle,
                http: RwLock::default(),
                event_durations: RwLock::default(),
            }),
        };
        metrics.describe();
        metrics
    }

    fn describe(&self) {
        let recorder = &self.inner.recorder;
        for (name, help) in [
            ("xcomponent_transitions_total", "Transitions taken, by component, machine and event."),
            ("xcomponent_instances_created_total", "Instances created, by component and machine."),
            (
                "xcomponent_instances_finished_total",
                "Instances that reached a final or error state.",
            ),
            ("xcomponent_events_ignored_total", "Events that changed nothing, by component."),
            ("xcomponent_timeouts_fired_total", "Timeout and auto transitions fired by the clock."),
            (
                "xcomponent_hook_failures_total",
                "Business hooks that failed (the transition went on).",
            ),
            (
                "xcomponent_effect_failures_total",
                "Effects (cross-component, cascades...) that could not be delivered.",
            ),
            ("xcomponent_commit_failures_total", "Store commits that failed and were rolled back."),
            (
                "xcomponent_messages_duplicates_total",
                "Message deliveries dropped because the target had applied the message already.",
            ),
            ("xcomponent_messages_dead_lettered_total", "Messages put in the dead-letter list."),
            (
                "xcomponent_messages_redelivered_total",
                "Stored messages delivered again (found in the outbox at start, or replayed).",
            ),
            (
                "xcomponent_messages_retried_total",
                "Message deliveries retried after a failed commit.",
            ),
            (
                "xcomponent_messages_resent_total",
                "Messages to other processes sent again by the outbox sweep (no receipt in time).",
            ),
            ("xcomponent_http_requests_total", "HTTP requests, by method, route and status."),
            (
                "xcomponent_webhooks_total",
                "Webhooks received, by outcome (transitioned, ignored, accepted, replayed, or the error code).",
            ),
            ("xcomponent_store_commits_total", "Store commits, by backend and result."),
            (
                "xcomponent_bus_lagged_batches_total",
                "Runtime event batches the server missed because it fell behind.",
            ),
            (
                "xcomponent_ws_slow_clients_total",
                "WebSocket clients dropped because they could not keep up.",
            ),
            (
                "xcomponent_ws_coalesced_messages_total",
                "WebSocket state_change messages merged for clients under load.",
            ),
        ] {
            recorder.describe_counter(name.into(), None, help.into());
        }
        for (name, help) in [
            ("xcomponent_live_instances", "Live instances, by component, machine and state."),
            ("xcomponent_ws_clients", "Connected WebSocket clients."),
        ] {
            recorder.describe_gauge(name.into(), None, help.into());
        }
        for (name, help) in [
            (
                "xcomponent_http_request_duration_seconds",
                "HTTP request latency, by method and route.",
            ),
            (
                "xcomponent_event_duration_seconds",
                "Time for the runtime to apply and store an event sent over HTTP.",
            ),
            ("xcomponent_store_commit_duration_seconds", "Store commit latency, by backend."),
            (
                "xcomponent_bus_lag_seconds",
                "Delay between an event being stored and the server receiving it from the bus.",
            ),
        ] {
            recorder.describe_histogram(name.into(), None, help.into());
        }
    }

    /// A counter with labels.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, String)]) -> Counter {
        self.inner.recorder.register_counter(&key(name, labels), &METADATA)
    }

    /// A gauge with labels.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, String)]) -> Gauge {
        self.inner.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// A histogram with labels.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, String)]) -> Histogram {
        self.inner.recorder.register_histogram(&key(name, labels), &METADATA)
    }

    /// The latency histogram and request counter of `route` (a route template, so the set is
    /// bounded), `method` and `status`.
    fn http_series(&self, route: &str, method: &'static str, status: u16) -> (Histogram, Counter) {
        let found = |routes: &HashMap<Box<str>, Vec<HttpSeries>>| {
            routes
                .get(route)?
                .iter()
                .find(|series| series.method == method && series.status == status)
                .map(|series| (series.duration.clone(), series.requests.clone()))
        };
        kept(&self.inner.http, found, |routes| {
            let duration = self.histogram(
                "xcomponent_http_request_duration_seconds",
                &[("method", method.to_owned()), ("route", route.to_owned())],
            );
            let requests = self.counter(
                "xcomponent_http_requests_total",
                &[
                    ("method", method.to_owned()),
                    ("route", route.to_owned()),
                    ("status", status.to_string()),
                ],
            );
            routes.entry(route.into()).or_default().push(HttpSeries {
                method,
                status,
                duration: duration.clone(),
                requests: requests.clone(),
            });
            (duration, requests)
        })
    }

    /// `xcomponent_event_duration_seconds` for `outcome` (one of the send outcomes' names).
    pub fn event_duration(&self, outcome: &str) -> Histogram {
        kept(
            &self.inner.event_durations,
            |durations| durations.get(outcome).cloned(),
            |durations| {
                let histogram = self.histogram(
                    "xcomponent_event_duration_seconds",
                    &[("outcome", outcome.to_owned())],
                );
                durations.insert(outcome.into(), histogram.clone());
                histogram
            },
        )
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Drains histogram buffers and forgets idle series (call periodically).
    pub fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    let labels: Vec<Label> =
        labels.iter().map(|(label, value)| Label::new(*label, value.clone())).collect();
    Key::from_parts(name, labels)
}

/// Updates metrics from the runtime stream (owned by the stream task; caches metric handles).
pub(crate) struct StreamMetrics {
    metrics: Metrics,
    transitions: HashMap<(u16, u16, u16), Counter>,
    per_component: HashMap<(&'static str, u16), Counter>,
    bus_lag: Histogram,
    lagged: Counter,
}

impl StreamMetrics {
    pub fn new(metrics: Metrics) -> StreamMetrics {
        let bus_lag =
            metrics.histogram("xcomponent_bus_lag_seconds", &[("bus", "memory".to_owned())]);
        let lagged = metrics.counter("xcomponent_bus_lagged_batches_total", &[]);
        StreamMetrics {
            metrics,
            transitions: HashMap::new(),
            per_component: HashMap::new(),
            bus_lag,
            lagged,
        }
    }

    /// Batches missed by the server.
    pub fn lagged(&self, missed: u64) {
        self.lagged.increment(missed);
    }

    fn component_counter(
        &mut self,
        name: &'static str,
        registry: &Registry,
        component: u16,
    ) -> &Counter {
        let metrics = &self.metrics;
        self.per_component.entry((name, component)).or_insert_with(|| {
            metrics.counter(name, &[("component", registry.definition(component).name.to_string())])
        })
    }

    /// Accounts for one runtime event received at `now_ms`.
    pub fn observe(&mut self, registry: &Registry, event: &RuntimeEvent, now_ms: i64) {
        match event {
            RuntimeEvent::StateChanged { component, machine, transition, at, .. } => {
                let metrics = &self.metrics;
                self.transitions
                    .entry((*component, *machine, *transition))
                    .or_insert_with(|| {
                        let definition = registry.definition(*component);
                        let machine_def = definition.machine(*machine);
                        let labels = [
                            ("component", definition.name.to_string()),
                            ("machine", machine_def.name.to_string()),
                            ("event", machine_def.transition(*transition).event_name.to_string()),
                        ];
                        metrics.counter("xcomponent_transitions_total", &labels)
                    })
                    .increment(1);
                self.bus_lag.record(lag_seconds(*at, now_ms));
            }
            RuntimeEvent::InstanceCreated { component, machine, at, .. } => {
                let definition = registry.definition(*component);
                let labels = [
                    ("component", definition.name.to_string()),
                    ("machine", definition.machine(*machine).name.to_string()),
                ];
                self.metrics.counter("xcomponent_instances_created_total", &labels).increment(1);
                self.bus_lag.record(lag_seconds(*at, now_ms));
            }
            RuntimeEvent::InstanceDisposed { component, machine, status, .. } => {
                let definition = registry.definition(*component);
                let labels = [
                    ("component", definition.name.to_string()),
                    ("machine", definition.machine(*machine).name.to_string()),
                    ("status", status.as_str().to_owned()),
                ];
                self.metrics.counter("xcomponent_instances_finished_total", &labels).increment(1);
            }
            RuntimeEvent::EventIgnored { component, .. } => {
                self.component_counter("xcomponent_events_ignored_total", registry, *component)
                    .increment(1);
            }
            RuntimeEvent::TimeoutFired { component, .. } => {
                self.component_counter("xcomponent_timeouts_fired_total", registry, *component)
                    .increment(1);
            }
            RuntimeEvent::HookFailed { component, .. } => {
                self.component_counter("xcomponent_hook_failures_total", registry, *component)
                    .increment(1);
            }
            RuntimeEvent::EffectFailed { component, .. } => {
                self.component_counter("xcomponent_effect_failures_total", registry, *component)
                    .increment(1);
            }
            RuntimeEvent::CommitFailed { .. } => {
                self.metrics.counter("xcomponent_commit_failures_total", &[]).increment(1);
            }
        }
    }
}

fn lag_seconds(at_ms: i64, now_ms: i64) -> f64 {
    (now_ms.saturating_sub(at_ms)).max(0) as f64 / 1000.0
}

/// A metric handle kept in `handles`: found under the read lock, else registered (`register`
/// stores it) under the write lock, once even when several requests ask at the same time.
fn kept<M, V>(
    handles: &RwLock<M>,
    find: impl Fn(&M) -> Option<V>,
    register: impl FnOnce(&mut M) -> V,
) -> V {
    if let Some(found) = find(&handles.read().unwrap_or_else(PoisonError::into_inner)) {
        return found;
    }
    let mut handles = handles.write().unwrap_or_else(PoisonError::into_inner);
    match find(&handles) {
        Some(found) => found,
        None => register(&mut handles),
    }
}

/// What the HTTP metrics keep of a request while it is served.
pub(crate) struct HttpTimer {
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
}

impl HttpTimer {
    /// Starts timing `request` (after routing, so its route template is known).
    pub(crate) fn start(request: &Request) -> HttpTimer {
        HttpTimer {
            started: Instant::now(),
            method: method_label(request.method()),
            route: request.extensions().get::<MatchedPath>().cloned(),
        }
    }

    /// Counts the request and records its latency by method, route template and status.
    pub(crate) fn finish(self, metrics: &Metrics, response: &Response) {
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let (duration, requests) =
            metrics.http_series(route, self.method, response.status().as_u16());
        duration.record(self.started.elapsed().as_secs_f64());
        requests.increment(1);
    }
}

/// The method as a label: the standard methods by name, any other as `OTHER` (a client may send
/// any token as a method; labels stay bounded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}
