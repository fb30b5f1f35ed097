//! `/healthz` and Prometheus text metrics, on their own address (`--metrics-listen`), so a
//! scraper or a probe never shares a port with the credential endpoints.
//!
//! Every kept-fresh credential registers a status function; the endpoint reads them on demand,
//! so the hot path (serving credentials) does no metrics work at all.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::refresh::RefreshStatus;

type StatusFn = Box<dyn Fn() -> RefreshStatus + Send + Sync>;

/// One metric family: name, type, help, and how to read it from a status.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RefreshStatus) -> Option<f64>,
);

/// The credentials whose state `/metrics` and `/healthz` report.
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    entries: Arc<RwLock<Vec<(String, StatusFn)>>>,
    /// Set while the owner's first deliveries are still being made: `/healthz` answers 503 so a
    /// startup probe does not let an app start before the files it reads exist.
    starting: Arc<AtomicBool>,
}

impl MetricsRegistry {
    /// A registry that reports "starting" (503) until [`MetricsRegistry::mark_started`]: for
    /// `keyless serve`, whose token and credentials files must exist before the app starts.
    pub fn starting() -> Self {
        let registry = Self::default();
        registry.starting.store(true, Ordering::Release);
        registry
    }

    /// The first deliveries are made: `/healthz` now reports the profiles.
    pub fn mark_started(&self) {
        self.starting.store(false, Ordering::Release);
    }

    /// Registers a profile; `status` is called on each scrape.
    pub fn register(
        &self,
        profile: impl Into<String>,
        status: impl Fn() -> RefreshStatus + Send + Sync + 'static,
    ) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((profile.into(), Box::new(status)));
    }

    /// Forgets a profile (the daemon's reload removed it).
    pub fn unregister(&self, profile: &str) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(name, _)| name != profile);
    }

    fn snapshot(&self) -> Vec<(String, RefreshStatus)> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, status)| (name.clone(), status()))
            .collect()
    }

    /// Healthy when every profile holds a credential that has not expired (or has never been
    /// asked for and has not failed).
    pub fn healthy(&self) -> (bool, String) {
        if self.starting.load(Ordering::Acquire) {
            return (
                false,
                "starting: the first deliveries are not made yet\n".into(),
            );
        }
        let mut report = String::new();
        let mut healthy = true;
        for (name, status) in self.snapshot() {
            let ok = match status.seconds_until_expiry {
                Some(left) => left > 0.0,
                None => status.last_error.is_none(),
            };
            healthy &= ok;
            let _ = writeln!(
                report,
                "{name}: {}{}",
                if ok { "ok" } else { "unhealthy" },
                status
                    .last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
        }
        (healthy, report)
    }

    /// The Prometheus text exposition of every profile.
    pub fn render(&self) -> String {
        let snapshot = self.snapshot();
        let mut out = String::new();
        let families: [Family; 4] = [
            (
                "keyless_refreshes_total",
                "counter",
                "Successful upstream exchanges.",
                |s| Some(s.refreshes as f64),
            ),
            (
                "keyless_refresh_failures_total",
                "counter",
                "Failed upstream exchanges.",
                |s| Some(s.failures as f64),
            ),
            (
                "keyless_upstream_latency_seconds",
                "gauge",
                "Duration of the last upstream exchange.",
                |s| s.last_latency_seconds,
            ),
            (
                "keyless_credential_expiry_seconds",
                "gauge",
                "Seconds until the held credential expires.",
                |s| s.seconds_until_expiry,
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (profile, status) in &snapshot {
                if let Some(v) = value(status) {
                    let _ = writeln!(out, "{name}{{profile=\"{}\"}} {v}", escape_label(profile));
                }
            }
        }
        out
    }

    /// The router for `/healthz` and `/metrics`.
    pub fn router(&self) -> Router {
        let health = self.clone();
        let metrics = self.clone();
        Router::new()
            .route(
                "/healthz",
                get(move || {
                    let registry = health.clone();
                    async move {
                        let (ok, report) = registry.healthy();
                        let status = if ok {
                            StatusCode::OK
                        } else {
                            StatusCode::SERVICE_UNAVAILABLE
                        };
                        (status, report)
                    }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let registry = metrics.clone();
                    async move {
                        (
                            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                            registry.render(),
                        )
                            .into_response()
                    }
                }),
            )
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_registry_is_unhealthy_until_marked_started() {
        let registry = MetricsRegistry::starting();
        let (ok, report) = registry.healthy();
        assert!(!ok);
        assert!(report.starts_with("starting"), "{report}");
        registry.mark_started();
        assert!(registry.healthy().0, "no profile has failed");
        assert!(MetricsRegistry::default().healthy().0);
    }

    #[test]
    fn renders_prometheus_text_per_profile() {
        let registry = MetricsRegistry::default();
        registry.register("deploy", || RefreshStatus {
            refreshes: 3,
            failures: 1,
            last_latency_seconds: Some(0.25),
            seconds_until_expiry: Some(1800.0),
            last_error: None,
        });
        let text = registry.render();
        assert!(text.contains("# TYPE keyless_refreshes_total counter"));
        assert!(text.contains("keyless_refreshes_total{profile=\"deploy\"} 3"));
        assert!(text.contains("keyless_refresh_failures_total{profile=\"deploy\"} 1"));
        assert!(text.contains("keyless_credential_expiry_seconds{profile=\"deploy\"} 1800"));
        assert!(registry.healthy().0);
    }

    #[test]
    fn an_expired_profile_is_unhealthy_and_says_why() {
        let registry = MetricsRegistry::default();
        registry.register("copycat", || RefreshStatus {
            seconds_until_expiry: Some(-5.0),
            last_error: Some("Google STS is unavailable".into()),
            ..RefreshStatus::default()
        });
        let (ok, report) = registry.healthy();
        assert!(!ok);
        assert!(report.contains("copycat: unhealthy (last error: Google STS is unavailable)"));
        registry.unregister("copycat");
        assert!(registry.healthy().0);
    }
}
