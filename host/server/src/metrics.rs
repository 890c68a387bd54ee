//! `/metrics`: runs, steps, step durations, capability uses and denials,
//! queue depth, webhooks, in the Prometheus text format
//! (prometheus-client, the Prometheus project's own Rust client).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The server's counters.
pub struct Metrics {
    registry: Registry,
    runs_started: Counter,
    runs_finished: Family<Labels, Counter>,
    steps: Family<Labels, Counter>,
    step_seconds: Histogram,
    capability_uses: Family<Labels, Counter>,
    capability_denials: Family<Labels, Counter>,
    steps_running: Gauge,
    runs_live: Gauge,
    webhooks: Family<Labels, Counter>,
    updates_missed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("allama");
        let m = Self {
            runs_started: Counter::default(),
            runs_finished: Family::default(),
            steps: Family::default(),
            // 10 µs to ~80 s.
            step_seconds: Histogram::new(exponential_buckets(0.000_01, 4.0, 12)),
            capability_uses: Family::default(),
            capability_denials: Family::default(),
            steps_running: Gauge::default(),
            runs_live: Gauge::default(),
            webhooks: Family::default(),
            updates_missed: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "runs_started",
            "Runs started (including child runs)",
            m.runs_started.clone(),
        );
        registry.register(
            "runs_finished",
            "Runs finished, by status",
            m.runs_finished.clone(),
        );
        registry.register(
            "steps",
            "Step attempts finished, by outcome",
            m.steps.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "How long step attempts ran",
            m.step_seconds.clone(),
        );
        registry.register(
            "capability_uses",
            "Capability uses by steps, by capability",
            m.capability_uses.clone(),
        );
        registry.register(
            "capability_denials",
            "Capability uses refused by grants, by capability",
            m.capability_denials.clone(),
        );
        registry.register(
            "steps_running",
            "Step attempts started and not finished (the executor's queue depth)",
            m.steps_running.clone(),
        );
        registry.register(
            "runs_live",
            "Runs unfinished (including child runs)",
            m.runs_live.clone(),
        );
        registry.register(
            "webhooks",
            "Webhook deliveries, by result",
            m.webhooks.clone(),
        );
        registry.register(
            "updates_missed",
            "Engine updates the metrics missed (counts may lag)",
            m.updates_missed.clone(),
        );
        Self { registry, ..m }
    }

    /// A capability record of a step.
    pub fn capability(&self, action: &str, denied: bool) {
        let cap = action.strip_prefix("capability.").unwrap_or(action);
        let labels = vec![("capability", cap.to_string())];
        self.capability_uses.get_or_create(&labels).inc();
        if denied {
            self.capability_denials.get_or_create(&labels).inc();
        }
    }

    /// A webhook delivery's result (`accepted`, `duplicate`, `refused`, …).
    pub fn webhook(&self, result: &'static str) {
        self.webhooks
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// An update from the engine.
    pub fn update(&self, u: &allama_engine::driver::Update) {
        use allama_engine::driver::Update;
        match u {
            Update::RunStarted { .. } => {
                self.runs_started.inc();
                self.runs_live.inc();
            }
            Update::TaskStarted { .. } => {
                self.steps_running.inc();
            }
            Update::TaskFinished {
                result, duration, ..
            } => {
                self.steps_running.dec();
                let outcome = if result.is_ok() { "ok" } else { "error" };
                self.steps
                    .get_or_create(&vec![("outcome", outcome.to_string())])
                    .inc();
                self.step_seconds.observe(duration.as_secs_f64());
            }
            Update::RunFinished { status, .. } => {
                self.runs_live.dec();
                self.runs_finished
                    .get_or_create(&vec![("status", status.as_str().to_string())])
                    .inc();
            }
            Update::ApprovalRequested(_) => {}
        }
    }

    /// Runs unfinished in the store when the server starts (they resume).
    pub fn resumed(&self, runs: usize) {
        self.runs_live.set(runs as i64);
    }

    /// Updates the metrics missed.
    pub fn missed(&self, n: u64) {
        self.updates_missed.inc_by(n);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
