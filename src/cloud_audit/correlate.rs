//! `--local`: which keyless exchange each cloud event was, and which exchanges the cloud has no
//! record of.
//!
//! keyless's audit log (`--audit-log`, one JSON object per exchange) lists every call it made
//! to the target. AWS answers each with an `x-amzn-RequestId`, which CloudTrail records as
//! `requestID`: an exact match. Google returns no request id, so a Google entry is matched by
//! service and method, the service account or federated subject, and time (within
//! [`GOOGLE_TIME_WINDOW`], the closest first). Each call is matched at most once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::cloud_audit::report::{
    Cloud, CloudEvent, Correlation, KeylessExchange, Report, UnrecordedExchange,
};
use crate::cloud_audit::{pool_of, TimeWindow};

/// How far apart a keyless call and a Google entry may be and still be the same call: clocks
/// differ, and Google timestamps the entry when it handled the request.
pub const GOOGLE_TIME_WINDOW: time::Duration = time::Duration::seconds(120);

/// One exchange from keyless's audit log (`--audit-log`, one JSON object per line).
pub type LocalExchange = crate::audit::AuditEvent;

/// One call keyless made to the target during an exchange.
type LocalCall = crate::audit::UpstreamCall;

/// keyless's audit log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocalLogError {
    #[error("could not read the keyless audit log {}: {cause}\n  hint: --local takes the file keyless writes with --audit-log", .path.display())]
    Unreadable { path: PathBuf, cause: String },
    #[error("{}:{line} is not a keyless audit event: {reason}\n  hint: --local takes the JSON-lines file keyless writes with --audit-log", .path.display())]
    NotAnAuditEvent {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl crate::classify::Classify for LocalLogError {
    fn class(&self) -> crate::classify::Class {
        crate::classify::Class::Usage
    }
}

/// Reads a JSON-lines audit log (blank lines are skipped).
pub fn read_local_log(path: &Path) -> Result<Vec<LocalExchange>, LocalLogError> {
    let text = std::fs::read_to_string(path).map_err(|e| LocalLogError::Unreadable {
        path: path.to_path_buf(),
        cause: e.to_string(),
    })?;
    parse_local_log(path, &text)
}

/// [`read_local_log`] on text already read.
pub fn parse_local_log(path: &Path, text: &str) -> Result<Vec<LocalExchange>, LocalLogError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| LocalLogError::NotAnAuditEvent {
                path: path.to_path_buf(),
                line: n + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Which local exchanges the lookup covers: the same window and filters as the cloud query,
/// so an exchange left out on purpose is not reported as unrecorded.
#[derive(Clone, Debug)]
pub struct Scope {
    pub cloud: Cloud,
    pub window: TimeWindow,
    pub role_arn: Option<String>,
    pub service_account: Option<String>,
    /// A workload identity provider (its pool is compared).
    pub provider: Option<String>,
}

impl Scope {
    fn covers(&self, exchange: &LocalExchange, call: &LocalCall) -> bool {
        let services: &[&str] = match self.cloud {
            Cloud::Aws => &["sts.amazonaws.com"],
            Cloud::Gcp => &["sts.googleapis.com", "iamcredentials.googleapis.com"],
        };
        let near = self.window.start.saturating_sub(GOOGLE_TIME_WINDOW) <= exchange.time
            && exchange.time <= self.window.end.saturating_add(GOOGLE_TIME_WINDOW);
        let role = self
            .role_arn
            .as_deref()
            .is_none_or(|role| call_roles(exchange, call).contains(&role));
        let account = self
            .service_account
            .as_deref()
            .is_none_or(|sa| exchange.target.service_account.as_deref() == Some(sa));
        let provider = match (&self.provider, &exchange.target.provider) {
            (Some(wanted), Some(used)) => pool_of(wanted) == pool_of(used),
            (Some(_), None) => false,
            (None, _) => true,
        };
        services.contains(&call.service.as_str()) && near && role && account && provider
    }
}

/// The roles a call may have asked for: the web identity's role, or (for `AssumeRole`, whose
/// retries make counting unreliable) any role of the chain.
fn call_roles<'a>(exchange: &'a LocalExchange, call: &LocalCall) -> Vec<&'a str> {
    match call.action.as_str() {
        "AssumeRole" => exchange.target.chain.iter().map(String::as_str).collect(),
        _ => exchange.target.role_arn.as_deref().into_iter().collect(),
    }
}

/// Fills in which keyless exchange each row was, and lists the exchanges in `scope` whose
/// calls no row matched.
pub fn correlate(report: &mut Report, local: &[LocalExchange], scope: &Scope) {
    let calls: Vec<(usize, usize)> = local
        .iter()
        .enumerate()
        .flat_map(|(x, exchange)| {
            exchange
                .upstream
                .iter()
                .enumerate()
                .filter(|(_, call)| scope.covers(exchange, call))
                .map(move |(c, _)| (x, c))
        })
        .collect();
    let mut used: HashSet<(usize, usize)> = HashSet::new();
    for row in &mut report.events {
        let found = find_by_request_id(&row.event, local, &calls, &used)
            .map(|at| (at, "request-id"))
            .or_else(|| find_by_identity(&row.event, local, &calls, &used));
        row.keyless = match found {
            Some(((x, c), matched_by)) => {
                used.insert((x, c));
                let exchange = &local[x];
                Correlation::Exchange(KeylessExchange {
                    time: exchange.time,
                    host: exchange.host.clone(),
                    profile: exchange.profile.clone(),
                    channel: exchange.channel.clone(),
                    outcome: exchange.outcome.as_str().to_string(),
                    matched_by,
                })
            }
            None => Correlation::NoKeylessOnRecord,
        };
    }
    let unrecorded = calls
        .iter()
        .filter(|at| !used.contains(at))
        .map(|&(x, c)| {
            let exchange = &local[x];
            let call = &exchange.upstream[c];
            UnrecordedExchange {
                time: exchange.time,
                host: exchange.host.clone(),
                profile: exchange.profile.clone(),
                target: call_target(exchange, call),
                action: call.action.clone(),
                request_id: call.request_id.clone(),
                outcome: call
                    .error_code
                    .clone()
                    .unwrap_or_else(|| exchange.outcome.as_str().to_string()),
            }
        })
        .collect();
    report.keyless_without_cloud_record = Some(unrecorded);
}

fn call_target(exchange: &LocalExchange, call: &LocalCall) -> String {
    let t = &exchange.target;
    let chosen = match call.action.as_str() {
        "AssumeRole" => Some(t.chain.join(" → ")),
        "AssumeRoleWithWebIdentity" => t.role_arn.clone(),
        "ExchangeToken" => t.provider.clone(),
        _ => t.service_account.clone(),
    };
    chosen
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// AWS: CloudTrail's `requestID` is the `x-amzn-RequestId` keyless logged.
fn find_by_request_id(
    event: &CloudEvent,
    local: &[LocalExchange],
    calls: &[(usize, usize)],
    used: &HashSet<(usize, usize)>,
) -> Option<(usize, usize)> {
    let id = event.request_id.as_deref()?;
    calls.iter().copied().find(|&(x, c)| {
        !used.contains(&(x, c)) && local[x].upstream[c].request_id.as_deref() == Some(id)
    })
}

/// Without a request id: the same service and method, role and session (AWS) or service
/// account and subject (Google), closest in time within [`GOOGLE_TIME_WINDOW`].
fn find_by_identity(
    event: &CloudEvent,
    local: &[LocalExchange],
    calls: &[(usize, usize)],
    used: &HashSet<(usize, usize)>,
) -> Option<((usize, usize), &'static str)> {
    let agrees = |ours: Option<&str>, theirs: Option<&str>| match (ours, theirs) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let candidates = calls.iter().copied().filter(|&(x, c)| {
        let exchange = &local[x];
        let call = &exchange.upstream[c];
        if used.contains(&(x, c)) || call.service != event.service || call.action != event.action {
            return false;
        }
        if (exchange.time - event.time).abs() > GOOGLE_TIME_WINDOW {
            return false;
        }
        match event.cloud {
            Cloud::Aws => {
                // A call with a request id would have matched by it; CloudTrail has one for
                // every call, so only a call keyless logged without one can match here.
                call.request_id.is_none()
                    && event.session_name.is_some()
                    && exchange.session_name == event.session_name
                    && event
                        .role_arn
                        .as_deref()
                        .is_some_and(|r| call_roles(exchange, call).contains(&r))
            }
            Cloud::Gcp => {
                let subject = exchange
                    .source
                    .aws_arn
                    .as_deref()
                    .or(exchange.source.subject.as_deref());
                agrees(
                    exchange.target.service_account.as_deref(),
                    event.service_account.as_deref(),
                ) && agrees(subject, event.subject.as_deref())
                    && match (&exchange.target.provider, &event.provider) {
                        (Some(a), Some(b)) => pool_of(a) == pool_of(b),
                        _ => true,
                    }
            }
        }
    });
    let best = candidates.min_by_key(|&(x, _)| (local[x].time - event.time).abs())?;
    let how = match event.cloud {
        Cloud::Aws => "session-name",
        Cloud::Gcp => "principal-and-time",
    };
    Some((best, how))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud_audit::report::Cloud;
    use time::macros::datetime;

    fn local() -> Vec<LocalExchange> {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/audit/keyless-audit.jsonl"
        ));
        read_local_log(path).unwrap()
    }

    fn window() -> TimeWindow {
        TimeWindow {
            start: datetime!(2026-12-04 0:00 UTC),
            end: datetime!(2026-12-05 0:00 UTC),
        }
    }

    fn scope(cloud: Cloud) -> Scope {
        Scope {
            cloud,
            window: window(),
            role_arn: None,
            service_account: None,
            provider: None,
        }
    }

    fn aws_events() -> Vec<CloudEvent> {
        let page: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/audit/cloudtrail-lookup-events.json"
            ))
            .unwrap(),
        )
        .unwrap();
        page["Events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                crate::cloud_audit::cloudtrail::parse_record(e["CloudTrailEvent"].as_str().unwrap())
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn aws_events_are_matched_by_request_id_and_strangers_are_said_so() {
        let mut report = Report::new(aws_events());
        correlate(&mut report, &local(), &scope(Cloud::Aws));
        let by_id = |id: &str| {
            report
                .events
                .iter()
                .find(|r| r.event.request_id.as_deref() == Some(id))
                .unwrap()
                .keyless
                .clone()
        };
        let Correlation::Exchange(first) = by_id("c0ffee00-0000-4000-8000-000000000001") else {
            panic!("the web identity call is keyless's")
        };
        assert_eq!(
            (first.host.as_str(), first.profile.as_deref()),
            ("node-1", Some("ci-deploy"))
        );
        assert_eq!(first.matched_by, "request-id");
        assert!(matches!(
            by_id("c0ffee00-0000-4000-8000-000000000003"),
            Correlation::Exchange(_)
        ));
        assert_eq!(
            by_id("c0ffee00-0000-4000-8000-000000000002"),
            Correlation::NoKeylessOnRecord
        );
        let unrecorded = report.keyless_without_cloud_record.as_ref().unwrap();
        assert_eq!(unrecorded.len(), 1, "{unrecorded:#?}");
        assert_eq!(
            unrecorded[0].request_id.as_deref(),
            Some("c0ffee00-0000-4000-8000-0000000000ff")
        );
        let text = report.to_text();
        assert!(text.contains("no keyless on record"), "{text}");
        assert!(
            text.contains("keyless exchanges with no cloud record"),
            "{text}"
        );
    }

    #[test]
    fn google_entries_are_matched_by_principal_service_account_and_time() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/audit/logging-entries.json"
        );
        let page: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let events = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| crate::cloud_audit::cloud_logging::parse_entry(e).unwrap())
            .collect();
        let mut report = Report::new(events);
        correlate(&mut report, &local(), &scope(Cloud::Gcp));
        let matched: Vec<bool> = report
            .events
            .iter()
            .map(|r| matches!(r.keyless, Correlation::Exchange(_)))
            .collect();
        assert_eq!(matched, [true, true, false]);
        assert!(report.keyless_without_cloud_record.unwrap().is_empty());
    }

    #[test]
    fn a_line_that_is_not_an_event_is_named() {
        let error = parse_local_log(Path::new("audit.log"), "\n{\"time\": 1}\n").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("audit.log:2 is not a keyless audit event"),
            "{error}"
        );
    }
}
