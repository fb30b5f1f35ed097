//! Fault injection: make the next N matching requests to one emulated service fail or stall.
//!
//! Retry, backoff and "serve the cached credentials while upstream is down" can only be tested
//! if upstream can be made to fail on demand, deterministically (a queue, not a probability).
//! The same faults can be queued over HTTP (`POST /_lab/faults` on the STS listener) so the
//! out-of-process `keyless lab` is driven exactly like the in-process one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which emulated service a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabService {
    /// The AWS STS listener.
    AwsSts,
    /// The GCE metadata server.
    Metadata,
    /// IAM Credentials, OAuth token endpoint, JWKS.
    GoogleApis,
    /// CloudTrail `LookupEvents` on the AWS STS listener (`only` matches the operation name).
    Cloudtrail,
    /// Cloud Logging `entries.list` and Resource Manager `getIamPolicy` on the Google APIs
    /// listener (`only` matches a path fragment).
    CloudLogging,
}

/// What happens to a faulted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// An AWS error document with this code and status (e.g. `IDPCommunicationError`, 400).
    StsError {
        /// The AWS error code.
        code: String,
        /// The HTTP status.
        status: u16,
        /// The message; a generic one when absent.
        #[serde(default)]
        message: Option<String>,
    },
    /// An arbitrary response.
    Http {
        /// The HTTP status.
        status: u16,
        /// The body, sent as is.
        #[serde(default)]
        body: String,
    },
    /// Wait this long, then answer normally (tests timeouts and single-flight).
    DelayMs(u64),
    /// The service's own throttling answer: AWS `Throttling` (400, "Rate exceeded"), Google
    /// `RESOURCE_EXHAUSTED` (429). JSON: `{"service": "aws_sts", "throttled": {}, "times": 5}`.
    Throttled {},
}

/// A queued fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The service it applies to.
    pub service: LabService,
    /// What to do.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many matching requests it applies to.
    #[serde(default = "one")]
    pub times: u32,
    /// Only requests for this STS `Action`, or whose path contains this text (Google services);
    /// every request of the service when absent.
    #[serde(default)]
    pub only: Option<String>,
}

fn one() -> u32 {
    1
}

/// The fault queue shared by the three listeners.
#[derive(Debug, Default)]
pub struct Faults {
    queue: Mutex<VecDeque<Fault>>,
}

impl Faults {
    /// Queues a fault (applied in the order queued, each to its next `times` matching requests).
    pub fn push(&self, fault: Fault) {
        if fault.times > 0 {
            self.lock().push_back(fault);
        }
    }

    /// Makes the next `times` STS requests answer with this AWS error.
    pub fn sts_error(&self, code: &str, status: u16, times: u32) {
        self.push(Fault {
            service: LabService::AwsSts,
            kind: FaultKind::StsError {
                code: code.to_string(),
                status,
                message: None,
            },
            times,
            only: None,
        });
    }

    /// Makes the next `times` requests to `service` answer `status` with `body`.
    pub fn http_error(&self, service: LabService, status: u16, body: &str, times: u32) {
        self.push(Fault {
            service,
            kind: FaultKind::Http {
                status,
                body: body.to_string(),
            },
            times,
            only: None,
        });
    }

    /// Makes the next `times` requests to `service` answer with its throttling error.
    pub fn throttle(&self, service: LabService, times: u32) {
        self.push(Fault {
            service,
            kind: FaultKind::Throttled {},
            times,
            only: None,
        });
    }

    /// Delays the next `times` requests to `service` by `delay`.
    pub fn delay(&self, service: LabService, delay: Duration, times: u32) {
        self.push(Fault {
            service,
            kind: FaultKind::DelayMs(delay.as_millis().try_into().unwrap_or(u64::MAX)),
            times,
            only: None,
        });
    }

    /// Drops every queued fault.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Faults still queued (for `GET /_lab/faults` and assertions).
    pub fn pending(&self) -> Vec<Fault> {
        self.lock().iter().cloned().collect()
    }

    /// Takes one application of the first fault matching this request, if any.
    pub(crate) fn take(&self, service: LabService, target: &str) -> Option<FaultKind> {
        let mut queue = self.lock();
        // An STS action is matched exactly (`AssumeRole` is not `AssumeRoleWithWebIdentity`).
        let exact = matches!(service, LabService::AwsSts | LabService::Cloudtrail);
        let index = queue.iter().position(|f| {
            f.service == service
                && f.only
                    .as_deref()
                    .is_none_or(|only| target == only || (!exact && target.contains(only)))
        })?;
        let fault = &mut queue[index];
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            queue.remove(index);
        }
        Some(kind)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Fault>> {
        // A panic while holding this lock cannot leave the queue inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Applies the next matching fault, if any: sleeps for a delay (and lets the request proceed),
/// or returns the response that replaces the real answer.
pub(crate) async fn apply(
    faults: &Faults,
    service: LabService,
    target: &str,
) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    match faults.take(service, target)? {
        FaultKind::DelayMs(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        FaultKind::Throttled {} => Some(super::upstream_load::throttled_response(service)),
        FaultKind::Http { status, body } => {
            let status = axum::http::StatusCode::from_u16(status)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            Some((status, body).into_response())
        }
        FaultKind::StsError {
            code,
            status,
            message,
        } => {
            let message =
                message.unwrap_or_else(|| format!("{code} (injected by the keyless lab)"));
            Some(super::sts_xml::error_response(
                status,
                &code,
                &message,
                &super::ids::request_id(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_n_times_per_service_and_filter() {
        let faults = Faults::default();
        faults.sts_error("Throttling", 400, 2);
        faults.push(Fault {
            service: LabService::Metadata,
            kind: FaultKind::Http {
                status: 503,
                body: String::new(),
            },
            times: 1,
            only: Some("/identity".into()),
        });
        assert_eq!(faults.take(LabService::GoogleApis, "/token"), None);
        assert_eq!(
            faults.take(
                LabService::Metadata,
                "/computeMetadata/v1/project/project-id"
            ),
            None
        );
        assert!(matches!(
            faults.take(
                LabService::Metadata,
                "/computeMetadata/v1/instance/service-accounts/default/identity"
            ),
            Some(FaultKind::Http { status: 503, .. })
        ));
        assert!(matches!(
            faults.take(LabService::AwsSts, "GetCallerIdentity"),
            Some(FaultKind::StsError { .. })
        ));
        assert!(faults
            .take(LabService::AwsSts, "AssumeRoleWithWebIdentity")
            .is_some());
        assert_eq!(
            faults.take(LabService::AwsSts, "AssumeRoleWithWebIdentity"),
            None
        );
        assert!(faults.pending().is_empty());
    }

    #[test]
    fn json_shape_for_the_admin_endpoint() {
        let f: Fault = serde_json::from_str(
            r#"{"service":"aws_sts","sts_error":{"code":"IDPCommunicationError","status":400},"times":3,"only":"AssumeRoleWithWebIdentity"}"#,
        )
        .unwrap();
        assert_eq!(f.times, 3);
        assert!(
            matches!(f.kind, FaultKind::StsError { ref code, status: 400, .. } if code == "IDPCommunicationError")
        );
        let f: Fault = serde_json::from_str(r#"{"service":"metadata","delay_ms":250}"#).unwrap();
        assert_eq!((f.kind, f.times), (FaultKind::DelayMs(250), 1));
        let f: Fault =
            serde_json::from_str(r#"{"service":"google_apis","throttled":{},"times":5}"#).unwrap();
        assert_eq!((f.kind, f.times), (FaultKind::Throttled {}, 5));
    }
}
