//! `/healthz` and Prometheus text metrics, on their own address (`--metrics-listen`), so a
//! scraper or a probe never shares a port with the credential endpoints.
//!
//! Every kept-fresh credential registers a status function; the endpoint reads them on demand,
//! so the hot path (serving credentials) does no metrics work at all.
//!
//! `/healthz` is 200 exactly when every registered credential is valid now ([`ProfileState`]
//! `ok` or `refreshing`): a credential not fetched yet (`starting`) is not ready, so an
//! orchestrator waiting for 200 never starts a workload before its credentials are held. A
//! registry with nothing registered is ready (there is nothing to wait for).
//!
//! `/healthz` reports each profile's *state* ([`ProfileState`]: a word, the seconds until its
//! credential expires, the failure count), never the upstream's error text: the Kubernetes
//! manifests expose it to the cluster network, and an upstream message can name roles, accounts,
//! pools and conditions. The text stays in keyless's log.

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
    /// (name, owner, status): the owner is the [`MetricsRegistry::for_owner`] view that
    /// registered it (0: none), so a stopped GCE-style endpoint's engines leave together.
    entries: Arc<RwLock<Vec<(String, u64, StatusFn)>>>,
    /// Who registers through this view (0: nobody in particular).
    owner: u64,
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
            .push((profile.into(), self.owner, Box::new(status)));
    }

    /// Forgets a profile (the daemon's reload removed it).
    pub fn unregister(&self, profile: &str) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(name, _, _)| name != profile);
    }

    /// The same registry, for one owner (a GCE-style endpoint that makes engines as requests
    /// ask for them): what it registers, [`MetricsRegistry::unregister_owned`] removes at once.
    pub fn for_owner(&self) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            owner: NEXT.fetch_add(1, Ordering::Relaxed),
            ..self.clone()
        }
    }

    /// Forgets everything registered through this view (its owner stopped); nothing for the
    /// registry itself.
    pub fn unregister_owned(&self) {
        if self.owner == 0 {
            return;
        }
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, owner, _)| *owner != self.owner);
    }

    fn snapshot(&self) -> Vec<(String, RefreshStatus)> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, _, status)| (name.clone(), status()))
            .collect()
    }

    /// Each registered credential's state, in registration order.
    pub fn states(&self) -> Vec<(String, ProfileState)> {
        self.snapshot()
            .into_iter()
            .map(|(name, status)| (name, ProfileState::of(&status)))
            .collect()
    }

    /// Ready when every registered credential is valid now ([`ProfileState::is_ready`]; one not
    /// fetched yet is not). The report has one line per profile,
    /// `NAME: STATE [expires_in=SECONDSs] [failures=N]`, and no error text.
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
            let state = ProfileState::of(&status);
            healthy &= state.is_ready();
            let _ = write!(report, "{name}: {}", state.word());
            if let Some(left) = status.seconds_until_expiry.filter(|left| *left > 0.0) {
                let _ = write!(report, " expires_in={}s", left.floor());
            }
            if status.failures > 0 {
                let _ = write!(report, " failures={}", status.failures);
            }
            if matches!(state, ProfileState::Failing | ProfileState::Expired) {
                report.push_str(" (why: see keyless's log)");
            }
            report.push('\n');
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
        render_exchanges(&mut out, &crate::audit::exchange_counts());
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

/// `keyless_exchanges_total{target, outcome, error_class}`: every exchange of this process, as
/// its audit events counted them ([`crate::audit`]); the labels take a fixed set of values, so
/// the series stay few however the upstreams misbehave.
fn render_exchanges(
    out: &mut String,
    counts: &[(
        crate::audit::TargetKind,
        crate::audit::Outcome,
        &'static str,
        u64,
    )],
) {
    let name = "keyless_exchanges_total";
    let _ = writeln!(
        out,
        "# HELP {name} Exchanges by target, outcome and error class (none when ok).\n# TYPE {name} counter"
    );
    for (target, outcome, class, n) in counts {
        let _ = writeln!(
            out,
            "{name}{{target=\"{}\",outcome=\"{}\",error_class=\"{class}\"}} {n}",
            target.as_str(),
            outcome.as_str()
        );
    }
}

/// What `/healthz` says of one profile: a state, never the upstream's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileState {
    /// No credential held yet, and nothing failed (not ready).
    Starting,
    /// A valid credential is held and the last attempt succeeded.
    Ok,
    /// A valid credential is held but the last refresh failed; retrying (still ready).
    Refreshing,
    /// No valid credential and the last attempt failed.
    Failing,
    /// The held credential expired and nothing has replaced it yet.
    Expired,
}

impl ProfileState {
    /// The state `status` describes.
    pub fn of(status: &RefreshStatus) -> Self {
        match (status.seconds_until_expiry, status.last_error.is_some()) {
            (Some(left), false) if left > 0.0 => Self::Ok,
            (Some(left), true) if left > 0.0 => Self::Refreshing,
            (_, true) => Self::Failing,
            (Some(_), false) => Self::Expired,
            (None, false) => Self::Starting,
        }
    }

    /// The word `/healthz` prints.
    pub fn word(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ok => "ok",
            Self::Refreshing => "refreshing",
            Self::Failing => "failing",
            Self::Expired => "expired",
        }
    }

    /// Whether a valid credential is held now: what `/healthz` 200 means for every profile.
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Ok | Self::Refreshing)
    }

    /// The less ready of two states (a profile with several credentials is as ready as its
    /// least ready one): expired, failing, starting, refreshing, ok.
    pub fn worst(self, other: Self) -> Self {
        let rank = |s: Self| match s {
            Self::Expired => 0,
            Self::Failing => 1,
            Self::Starting => 2,
            Self::Refreshing => 3,
            Self::Ok => 4,
        };
        if rank(other) < rank(self) {
            other
        } else {
            self
        }
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
        assert!(registry.healthy().0, "nothing to wait for");
        assert!(MetricsRegistry::default().healthy().0);
    }

    /// What an owner (a GCE-style endpoint) registered leaves with it, and only that: an engine
    /// of a stopped or restarted profile can never keep `/healthz` at 503 once it expires.
    #[test]
    fn an_owners_entries_leave_together_and_nothing_else_does() {
        let registry = MetricsRegistry::default();
        registry.register("deploy", RefreshStatus::default);
        let old = registry.for_owner();
        old.register("copycat/gce-metadata token", RefreshStatus::default);
        old.register(
            "copycat/gce-metadata id-token audience=a",
            RefreshStatus::default,
        );
        let new = registry.for_owner();
        new.register("copycat/gce-metadata token", RefreshStatus::default);
        old.unregister_owned();
        let names: Vec<String> = registry.states().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["deploy", "copycat/gce-metadata token"]);
        new.unregister_owned();
        registry.unregister_owned(); // the registry itself owns nothing
        assert_eq!(registry.states().len(), 1);
    }

    /// 200 means every credential is held: one not fetched yet keeps `/healthz` at 503.
    #[test]
    fn ready_only_once_every_credential_is_held() {
        let held = std::sync::Arc::new(AtomicBool::new(false));
        let registry = MetricsRegistry::default();
        registry.register("deploy", || RefreshStatus {
            seconds_until_expiry: Some(600.0),
            ..RefreshStatus::default()
        });
        let later = held.clone();
        registry.register("copycat", move || RefreshStatus {
            seconds_until_expiry: later.load(Ordering::SeqCst).then_some(60.0),
            ..RefreshStatus::default()
        });
        assert_eq!(
            registry.healthy(),
            (
                false,
                "deploy: ok expires_in=600s\ncopycat: starting\n".to_string()
            )
        );
        held.store(true, Ordering::SeqCst);
        assert_eq!(
            registry.healthy(),
            (
                true,
                "deploy: ok expires_in=600s\ncopycat: ok expires_in=60s\n".to_string()
            )
        );
        assert_eq!(
            registry.states(),
            [
                ("deploy".to_string(), ProfileState::Ok),
                ("copycat".to_string(), ProfileState::Ok)
            ]
        );
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

    /// `/healthz` says the state and points at the log; the upstream's words (which can name
    /// roles, accounts and conditions) never reach it.
    #[test]
    fn an_expired_profile_is_unhealthy_without_the_upstream_error_text() {
        const UPSTREAM: &str = "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity on arn:aws:iam::123456789012:role/secret-team";
        let registry = MetricsRegistry::default();
        registry.register("copycat", || RefreshStatus {
            failures: 3,
            seconds_until_expiry: Some(-5.0),
            last_error: Some(UPSTREAM.into()),
            ..RefreshStatus::default()
        });
        registry.register("deploy", || RefreshStatus {
            failures: 1,
            seconds_until_expiry: Some(1200.5),
            last_error: Some(UPSTREAM.into()),
            ..RefreshStatus::default()
        });
        let (ok, report) = registry.healthy();
        assert!(!ok);
        assert_eq!(
            report,
            "copycat: failing failures=3 (why: see keyless's log)\n\
             deploy: refreshing expires_in=1200s failures=1\n"
        );
        assert!(!report.contains("AccessDenied") && !report.contains("secret-team"));
        registry.unregister("copycat");
        assert!(
            registry.healthy().0,
            "refreshing still serves a valid credential"
        );
    }

    #[test]
    fn every_state_has_its_word() {
        let status = |left: Option<f64>, error: bool| RefreshStatus {
            seconds_until_expiry: left,
            last_error: error.then(|| "x".to_string()),
            ..RefreshStatus::default()
        };
        for (left, error, word, healthy) in [
            (None, false, "starting", false),
            (Some(60.0), false, "ok", true),
            (Some(60.0), true, "refreshing", true),
            (None, true, "failing", false),
            (Some(-1.0), true, "failing", false),
            (Some(-1.0), false, "expired", false),
        ] {
            let state = ProfileState::of(&status(left, error));
            assert_eq!(state.word(), word);
            assert_eq!(state.is_ready(), healthy, "{word}");
        }
    }
}
