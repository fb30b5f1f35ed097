//! Google's side: Cloud Audit Logs entries for token exchanges, read with Cloud Logging
//! `entries.list`.
//!
//! Google STS `ExchangeToken` and IAM Credentials `GenerateAccessToken` / `GenerateIdToken`
//! are *Data Access* audit logs: Google writes them only when the project's audit config turns
//! `DATA_READ` on for `sts.googleapis.com` and `iamcredentials.googleapis.com`. So an empty
//! answer is ambiguous; when nothing comes back we read the project's `auditConfigs` and say
//! which service to turn on rather than report "no events". Google returns no request id, so
//! entries carry the federated principal (`principal://…/subject/SUB`), the service account and
//! the time for [`crate::cloud_audit::correlate`] to match on.

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::cloud_audit::report::{Cloud, CloudEvent};
use crate::cloud_audit::{pool_of, TimeWindow};
use crate::exchange::retry::{count_attempts, RetryPolicy, TimedOut};
use crate::secret::Secret;
use crate::types::UpstreamUrl;
use crate::wire::{error_chain, google_error_message, truncate};

/// Cloud Logging's API, unless `--logging-url` says otherwise.
pub const DEFAULT_LOGGING_URL: &str = "https://logging.googleapis.com";
/// Resource Manager's API (the project's audit config), unless `--resource-manager-url`.
pub const DEFAULT_RESOURCE_MANAGER_URL: &str = "https://cloudresourcemanager.googleapis.com";
/// The services whose Data Access logs record federation.
pub const AUDITED_SERVICES: [&str; 2] = ["sts.googleapis.com", "iamcredentials.googleapis.com"];
/// The methods read, by their last name segment.
const METHODS: [&str; 3] = ["ExchangeToken", "GenerateAccessToken", "GenerateIdToken"];
/// Entries per `entries.list` page: an audit entry is one to two KiB, so a page stays well
/// under the cap on an answer's size (`wire::http::MAX_BODY_BYTES`).
const PAGE_SIZE: u32 = 200;
/// A bound on pages, so an endpoint that always answers a `nextPageToken` cannot keep us
/// paging forever.
const MAX_PAGES: usize = 1000;

/// What to read: the project's Data Access log in a window, optionally for one service account
/// or one workload identity provider.
#[derive(Clone, Debug)]
pub struct LoggingQuery {
    pub project: String,
    pub window: TimeWindow,
    pub service_account: Option<String>,
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`.
    pub provider: Option<String>,
}

/// What went wrong reading Cloud Audit Logs, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CloudLoggingError {
    /// Google refused the caller.
    #[error("{api} at {endpoint} refused the request (HTTP {status}): {message}\n  \
             hint: the caller needs roles/logging.privateLogViewer on the project (Data Access logs are private logs); \
             run `gcloud auth application-default login`, or pass --token-source with an identity that has it")]
    Refused {
        api: &'static str,
        endpoint: String,
        status: u16,
        message: String,
    },

    /// Google kept throttling, failing or timing out.
    #[error("{api} at {endpoint} did not answer after {}: {last}\n  hint: try again later, or narrow --since", count_attempts(.attempts))]
    Unavailable {
        api: &'static str,
        endpoint: String,
        last: String,
        attempts: u32,
    },

    /// Google answered with an error retrying will not fix.
    #[error("{api} at {endpoint} answered HTTP {status}: {message}\n  hint: check --project and --logging-url")]
    Failed {
        api: &'static str,
        endpoint: String,
        status: u16,
        message: String,
    },

    /// The answer was not what the API answers.
    #[error("{api} at {endpoint} answered something unreadable: {detail}\n  hint: check that --logging-url (or --resource-manager-url) names the Google API")]
    Unreadable {
        api: &'static str,
        endpoint: String,
        detail: String,
    },

    /// Data Access logs are off, so there is nothing to read.
    #[error("no Data Access audit logs in project {project}: enable DATA_READ for {}: see `keyless setup … --audit`\n  \
             hint: `keyless setup aws-to-gcp … --audit` (or gcp-to-aws) prints the project's auditConfigs; \
             Google records token exchanges only from then on", .services.join(" and "))]
    DataAccessOff {
        project: String,
        services: Vec<String>,
    },

    /// No project to read.
    #[error("no Google Cloud project to read the audit logs of\n  hint: pass --project ID (or set GOOGLE_CLOUD_PROJECT), or --provider with the provider's full name")]
    NoProject,
}

impl crate::classify::Classify for CloudLoggingError {
    fn class(&self) -> crate::classify::Class {
        use crate::classify::Class;
        match self {
            Self::Refused { .. } => Class::Refused,
            Self::Unavailable { .. } => Class::Unavailable,
            Self::Failed { status, .. } if *status >= 500 => Class::Unavailable,
            Self::DataAccessOff { .. } | Self::NoProject => Class::Usage,
            Self::Failed { .. } | Self::Unreadable { .. } => Class::Failure,
        }
    }
}

/// The project to read: `explicit`, else `GOOGLE_CLOUD_PROJECT` / `CLOUDSDK_CORE_PROJECT`, else
/// the project number in the provider's name.
pub fn project_of(
    explicit: Option<&str>,
    provider: Option<&str>,
) -> Result<String, CloudLoggingError> {
    let from_env = || {
        ["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|p| !p.trim().is_empty()))
    };
    let from_provider = || {
        let rest = provider?.split("projects/").nth(1)?;
        rest.split('/')
            .next()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    };
    explicit
        .map(str::to_string)
        .or_else(from_env)
        .or_else(from_provider)
        .ok_or(CloudLoggingError::NoProject)
}

/// The `entries.list` filter: the Data Access log, the two services, the window (the project
/// is the request's `resourceNames`: a log name holds the project *id*, and `--project` may be
/// a number). Methods, service accounts and providers are matched here on the entries, so the
/// filter stays in the subset every Cloud Logging implementation reads.
pub fn entries_filter(window: &TimeWindow) -> String {
    format!(
        "logName:\"/logs/cloudaudit.googleapis.com%2Fdata_access\" \
         AND (protoPayload.serviceName=\"{}\" OR protoPayload.serviceName=\"{}\") \
         AND timestamp>=\"{}\" AND timestamp<=\"{}\"",
        AUDITED_SERVICES[0],
        AUDITED_SERVICES[1],
        super::report::rfc3339(window.start),
        // Whole seconds, rounded outwards: an entry a fraction of a second before now counts.
        super::report::rfc3339(window.end.saturating_add(time::Duration::seconds(1))),
    )
}

#[derive(Deserialize)]
struct EntriesPage {
    #[serde(default)]
    entries: Vec<Value>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

/// What one attempt came to.
enum Attempt {
    Transient(String),
    Final(CloudLoggingError),
}

/// Every token exchange and impersonation the project's Data Access log has in the window,
/// narrowed to `query`'s service account and provider; when there are none at all, the
/// project's audit config says whether Google is recording them.
pub async fn fetch_federation_entries(
    http: &reqwest::Client,
    logging_url: &UpstreamUrl,
    resource_manager_url: &UpstreamUrl,
    token: &Secret,
    query: &LoggingQuery,
    retry: &RetryPolicy,
) -> Result<Vec<CloudEvent>, CloudLoggingError> {
    let url = format!("{}/v2/entries:list", logging_url.as_str());
    let filter = entries_filter(&query.window);
    let mut entries = Vec::new();
    let mut page_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut body = serde_json::json!({
            "resourceNames": [format!("projects/{}", query.project)],
            "filter": filter,
            "orderBy": "timestamp asc",
            "pageSize": PAGE_SIZE,
        });
        if let Some(t) = &page_token {
            body["pageToken"] = Value::String(t.clone());
        }
        let text = post_json(
            http,
            "Cloud Logging entries.list",
            &url,
            token,
            &body,
            retry,
        )
        .await?;
        let page: EntriesPage =
            serde_json::from_str(&text).map_err(|e| CloudLoggingError::Unreadable {
                api: "Cloud Logging entries.list",
                endpoint: url.clone(),
                detail: format!("{e}: {}", truncate(&text, 200)),
            })?;
        entries.extend(page.entries);
        page_token = page.next_page_token.filter(|t| !t.is_empty());
        if page_token.is_none() {
            break;
        }
    }
    let silent: Vec<&str> = AUDITED_SERVICES
        .into_iter()
        .filter(|service| {
            !entries.iter().any(|e| {
                e.pointer("/protoPayload/serviceName")
                    .and_then(Value::as_str)
                    == Some(*service)
            })
        })
        .collect();
    if !silent.is_empty() {
        check_data_access(
            http,
            resource_manager_url,
            token,
            &query.project,
            &silent,
            retry,
        )
        .await?;
    }
    let mut events = Vec::new();
    for entry in &entries {
        let event = parse_entry(entry).map_err(|detail| CloudLoggingError::Unreadable {
            api: "Cloud Logging entries.list",
            endpoint: url.clone(),
            detail: format!("an entry: {detail}"),
        })?;
        if METHODS.contains(&event.action.as_str()) {
            events.push(event);
        }
    }
    Ok(narrow(events, query))
}

/// Keeps the events of `query.provider`'s pool and, with a service account, its
/// impersonations and the token exchanges of the principals that impersonated it.
fn narrow(events: Vec<CloudEvent>, query: &LoggingQuery) -> Vec<CloudEvent> {
    let pool = query
        .provider
        .as_deref()
        .map(|p| format!("{}/", pool_of(p)));
    let events: Vec<CloudEvent> = events
        .into_iter()
        .filter(|e| match (&pool, &e.principal) {
            (Some(pool), Some(principal)) => principal.contains(pool.as_str()),
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    let Some(account) = &query.service_account else {
        return events;
    };
    let impersonators: Vec<Option<String>> = events
        .iter()
        .filter(|e| e.service_account.as_deref() == Some(account.as_str()))
        .map(|e| e.principal.clone())
        .collect();
    events
        .into_iter()
        .filter(|e| match &e.service_account {
            Some(sa) => sa == account,
            None => impersonators.contains(&e.principal),
        })
        .collect()
}

/// Reads the project's audit config for the `silent` services (no entry in the window);
/// fails with [`CloudLoggingError::DataAccessOff`] when `DATA_READ` is off for one of them, as
/// their calls would be missing without a word. A config keyless may not read is no reason to
/// fail: "no events" stands, with a warning.
async fn check_data_access(
    http: &reqwest::Client,
    resource_manager_url: &UpstreamUrl,
    token: &Secret,
    project: &str,
    silent: &[&str],
    retry: &RetryPolicy,
) -> Result<(), CloudLoggingError> {
    let url = format!(
        "{}/v1/projects/{project}:getIamPolicy",
        resource_manager_url.as_str()
    );
    let body = serde_json::json!({"options": {"requestedPolicyVersion": 3}});
    let policy = match post_json(
        http,
        "Resource Manager getIamPolicy",
        &url,
        token,
        &body,
        retry,
    )
    .await
    {
        Ok(text) => serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the project's audit config to check that Data Access logs are on");
            return Ok(());
        }
    };
    let services: Vec<&str> = services_without_data_read(&policy)
        .into_iter()
        .filter(|s| silent.contains(s))
        .collect();
    if services.is_empty() {
        return Ok(());
    }
    Err(CloudLoggingError::DataAccessOff {
        project: project.to_string(),
        services: services.into_iter().map(str::to_string).collect(),
    })
}

/// The federation services whose `DATA_READ` audit logs `policy`'s `auditConfigs` leave off
/// (a config for `allServices` covers every service).
pub fn services_without_data_read(policy: &Value) -> Vec<&'static str> {
    let configs = policy
        .get("auditConfigs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let reads = |service: &str| {
        configs.iter().any(|c| {
            let covers = matches!(c.get("service").and_then(Value::as_str), Some(s) if s == service || s == "allServices");
            covers
                && c.get("auditLogConfigs")
                    .and_then(Value::as_array)
                    .is_some_and(|logs| logs.iter().any(|l| l.get("logType").and_then(Value::as_str) == Some("DATA_READ")))
        })
    };
    AUDITED_SERVICES.into_iter().filter(|s| !reads(s)).collect()
}

/// POSTs `body` with the access token, retrying 429, `RESOURCE_EXHAUSTED`, 5xx and network
/// failures; returns the 200 answer's text.
async fn post_json(
    http: &reqwest::Client,
    api: &'static str,
    url: &str,
    token: &Secret,
    body: &Value,
    retry: &RetryPolicy,
) -> Result<String, CloudLoggingError> {
    let attempt = || async {
        let response = http
            .post(url)
            .bearer_auth(token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| Attempt::Transient(error_chain(&e)))?;
        let status = response.status().as_u16();
        let text = crate::wire::http::read_body(response).await.map_err(|e| {
            if e.is_transient() {
                Attempt::Transient(e.to_string())
            } else {
                Attempt::Final(CloudLoggingError::Unreadable {
                    api,
                    endpoint: url.to_string(),
                    detail: e.to_string(),
                })
            }
        })?;
        if status == 200 {
            return Ok(text);
        }
        let message = google_error_message(&text);
        let exhausted = text.contains("RESOURCE_EXHAUSTED");
        Err(match status {
            429 | 500.. => Attempt::Transient(format!("HTTP {status}: {message}")),
            _ if exhausted => Attempt::Transient(format!("HTTP {status}: {message}")),
            401 | 403 => Attempt::Final(CloudLoggingError::Refused {
                api,
                endpoint: url.to_string(),
                status,
                message,
            }),
            _ => Attempt::Final(CloudLoggingError::Failed {
                api,
                endpoint: url.to_string(),
                status,
                message,
            }),
        })
    };
    retry
        .run(
            attempt,
            |a| matches!(a, Attempt::Transient(_)),
            |t: TimedOut| Attempt::Transient(t.to_string()),
        )
        .await
        .map_err(|(attempt, attempts)| match attempt {
            Attempt::Final(e) => e,
            Attempt::Transient(last) => CloudLoggingError::Unavailable {
                api,
                endpoint: url.to_string(),
                last,
                attempts,
            },
        })
}

/// A Cloud Audit Logs entry as a row: the method, the caller (`principalSubject` of a
/// federated identity, or `principalEmail`), the service account, the caller's IP, the status.
pub fn parse_entry(entry: &Value) -> Result<CloudEvent, String> {
    let field = |path: &str| {
        entry
            .pointer(path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let time = field("/timestamp").ok_or("no timestamp")?;
    let time = OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("timestamp {time:?}: {e}"))?;
    let method = field("/protoPayload/methodName").ok_or("no protoPayload.methodName")?;
    let action = method.rsplit('.').next().unwrap_or(&method);
    let service = field("/protoPayload/serviceName").unwrap_or_default();
    let mut event = CloudEvent::new(Cloud::Gcp, time, &service, action);
    let subject = field("/protoPayload/authenticationInfo/principalSubject");
    let email = field("/protoPayload/authenticationInfo/principalEmail");
    event.subject = subject
        .as_deref()
        .and_then(|s| s.split_once("/subject/"))
        .map(|(_, sub)| sub.to_string())
        .or_else(|| email.clone());
    event.principal = subject.clone().or_else(|| email.clone());
    event.email = email;
    event.provider = field("/protoPayload/request/audience").or_else(|| {
        subject
            .as_deref()
            .filter(|s| s.contains("/subject/"))
            .map(|s| format!("//iam.googleapis.com/{}", pool_of(s)))
    });
    // The request names the account by email; `resourceName` by its unique id, as Google does.
    let resource =
        field("/protoPayload/request/name").or_else(|| field("/protoPayload/resourceName"));
    event.service_account = resource
        .as_deref()
        .and_then(|r| r.split("serviceAccounts/").nth(1))
        .map(str::to_string);
    event.source_ip = field("/protoPayload/requestMetadata/callerIp");
    event.event_id = field("/insertId");
    if let Some(code) = entry
        .pointer("/protoPayload/status/code")
        .and_then(Value::as_i64)
        .filter(|c| *c != 0)
    {
        event.error_code = Some(grpc_code_name(code).to_string());
        event.error_message = field("/protoPayload/status/message");
    }
    Ok(event)
}

/// The canonical name of a `google.rpc.Code`.
fn grpc_code_name(code: i64) -> &'static str {
    match code {
        1 => "CANCELLED",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entries() -> Vec<CloudEvent> {
        let path = format!(
            "{}/tests/data/audit/logging-entries.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let page: EntriesPage =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        page.entries
            .iter()
            .map(|e| parse_entry(e).unwrap())
            .collect()
    }

    fn query() -> LoggingQuery {
        LoggingQuery {
            project: "my-project".into(),
            window: TimeWindow {
                start: datetime!(2026-12-04 0:00 UTC),
                end: datetime!(2026-12-05 0:00 UTC),
            },
            service_account: None,
            provider: None,
        }
    }

    #[test]
    fn an_exchange_names_the_federated_principal_and_an_impersonation_its_service_account() {
        let events = entries();
        let sts = &events[0];
        assert_eq!(sts.action, "ExchangeToken");
        assert_eq!(sts.service, "sts.googleapis.com");
        assert_eq!(
            sts.subject.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/app/i-0abc")
        );
        assert_eq!(
            sts.provider.as_deref(),
            Some("//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/aws-pool/providers/aws")
        );
        assert_eq!(sts.source_ip.as_deref(), Some("203.0.113.9"));
        let iam = &events[1];
        assert_eq!(iam.action, "GenerateAccessToken");
        assert_eq!(
            iam.service_account.as_deref(),
            Some("deployer@my-project.iam.gserviceaccount.com")
        );
        assert_eq!(iam.outcome(), "ok");
        assert_eq!(events[2].error_code.as_deref(), Some("PERMISSION_DENIED"));
    }

    #[test]
    fn a_service_account_keeps_its_impersonations_and_their_exchanges() {
        let mut q = query();
        q.service_account = Some("other@my-project.iam.gserviceaccount.com".into());
        let kept = narrow(entries(), &q);
        let ids: Vec<_> = kept
            .iter()
            .map(|e| e.event_id.as_deref().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["a1", "a3"],
            "the exchange of the principal, then its impersonation"
        );
        q.service_account = Some("deployer@my-project.iam.gserviceaccount.com".into());
        let kept = narrow(entries(), &q);
        let ids: Vec<_> = kept
            .iter()
            .map(|e| e.event_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["a1", "a2"]);
        let mut q = query();
        q.provider = Some("//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/other/providers/x".into());
        assert!(narrow(entries(), &q).is_empty());
    }

    #[test]
    fn data_read_must_be_on_for_both_services() {
        let off = serde_json::json!({"auditConfigs": [{"service": "sts.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]}]});
        assert_eq!(
            services_without_data_read(&off),
            vec!["iamcredentials.googleapis.com"]
        );
        let all = serde_json::json!({"auditConfigs": [{"service": "allServices", "auditLogConfigs": [{"logType": "ADMIN_READ"}, {"logType": "DATA_READ"}]}]});
        assert!(services_without_data_read(&all).is_empty());
        let error = CloudLoggingError::DataAccessOff {
            project: "p".into(),
            services: vec!["iamcredentials.googleapis.com".into()],
        };
        assert!(
            error.to_string().contains(
                "enable DATA_READ for iamcredentials.googleapis.com: see `keyless setup … --audit`"
            ),
            "{error}"
        );
        use crate::classify::Classify;
        assert_eq!(error.class().exit_code(), 2);
    }

    #[test]
    fn the_project_comes_from_the_flag_or_the_provider() {
        assert_eq!(project_of(Some("p"), None).unwrap(), "p");
        if std::env::var_os("GOOGLE_CLOUD_PROJECT").is_none()
            && std::env::var_os("CLOUDSDK_CORE_PROJECT").is_none()
        {
            let provider = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/p/providers/x";
            assert_eq!(project_of(None, Some(provider)).unwrap(), "123456");
            assert!(matches!(
                project_of(None, None),
                Err(CloudLoggingError::NoProject)
            ));
        }
        let filter = entries_filter(&query().window);
        assert!(
            filter.contains("logName:\"/logs/cloudaudit.googleapis.com%2Fdata_access\""),
            "{filter}"
        );
        assert!(
            filter.contains("timestamp>=\"2026-12-04T00:00:00Z\""),
            "{filter}"
        );
    }
}
