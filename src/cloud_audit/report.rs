//! The rows `keyless audit` prints: one per event the cloud recorded, with which keyless
//! exchange it was and whether `--expect` flags it, then the keyless exchanges the cloud has no
//! record of. The same rows become a table (people) or JSON (scripts, SIEMs).

use serde::Serialize;
use time::OffsetDateTime;

/// Which cloud recorded the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Gcp,
}

/// One event as a cloud recorded it (a CloudTrail record, a Cloud Audit Logs entry), reduced
/// to who crossed which boundary. Identities only: neither cloud records a secret here, and
/// nothing that could be one is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CloudEvent {
    pub cloud: Cloud,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// `sts.amazonaws.com`, `sts.googleapis.com`, `iamcredentials.googleapis.com`.
    pub service: String,
    /// `AssumeRoleWithWebIdentity`, `AssumeRole`, `ExchangeToken`, `GenerateAccessToken`,
    /// `GenerateIdToken`.
    pub action: String,
    /// The web identity provider (`accounts.google.com`, an OIDC provider).
    pub identity_provider: Option<String>,
    /// Who called: CloudTrail's `principalId` or caller ARN; Google's `principalSubject`
    /// (`principal://…/subject/…`) or `principalEmail`.
    pub principal: Option<String>,
    /// The federated subject (a token's `sub`, an AWS caller ARN).
    pub subject: Option<String>,
    /// The token's audience (for Google tokens on AWS: the `azp`, a numeric client id).
    pub audience: Option<String>,
    /// An email, where the cloud recorded one.
    pub email: Option<String>,
    /// The role assumed (AWS).
    pub role_arn: Option<String>,
    /// The role session name (AWS).
    pub session_name: Option<String>,
    /// The workload identity pool or provider (Google), as far as the entry names it.
    pub provider: Option<String>,
    /// The service account impersonated (Google).
    pub service_account: Option<String>,
    pub source_ip: Option<String>,
    /// CloudTrail's `requestID` (= the `x-amzn-RequestId` STS answered); Google has none.
    pub request_id: Option<String>,
    /// CloudTrail's `eventID`, Cloud Logging's `insertId`.
    pub event_id: Option<String>,
    /// The cloud's error code when it refused (`AccessDenied`, `PERMISSION_DENIED`…).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl CloudEvent {
    /// An empty event of `cloud` at `time`, for parsers to fill in.
    pub fn new(cloud: Cloud, time: OffsetDateTime, service: &str, action: &str) -> Self {
        Self {
            cloud,
            time,
            service: service.to_string(),
            action: action.to_string(),
            identity_provider: None,
            principal: None,
            subject: None,
            audience: None,
            email: None,
            role_arn: None,
            session_name: None,
            provider: None,
            service_account: None,
            source_ip: None,
            request_id: None,
            event_id: None,
            error_code: None,
            error_message: None,
        }
    }

    /// `ok`, or the error code.
    pub fn outcome(&self) -> &str {
        self.error_code.as_deref().unwrap_or("ok")
    }

    /// Who crossed, in one phrase: the federated subject (with its provider), else the caller.
    pub fn identity(&self) -> String {
        match (&self.subject, &self.identity_provider, &self.principal) {
            (Some(sub), Some(idp), _) => format!("{idp}:{sub}"),
            (Some(sub), None, _) => sub.clone(),
            (None, _, Some(principal)) => principal.clone(),
            (None, _, None) => "-".into(),
        }
    }

    /// What it became: the role (and session), or the service account, or the provider.
    pub fn target(&self) -> String {
        match (&self.role_arn, &self.service_account, &self.provider) {
            (Some(role), _, _) => role.clone(),
            (None, Some(sa), _) => sa.clone(),
            (None, None, Some(provider)) => provider.clone(),
            (None, None, None) => "-".into(),
        }
    }
}

/// The keyless exchange a cloud event was, from keyless's own audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeylessExchange {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub host: String,
    pub profile: Option<String>,
    pub channel: Option<String>,
    pub outcome: String,
    /// How the two were matched: `request-id`, `session-name`, `principal-and-time`.
    pub matched_by: &'static str,
}

impl KeylessExchange {
    fn describe(&self) -> String {
        format!(
            "{} {} {}",
            self.host,
            self.profile.as_deref().unwrap_or("-"),
            rfc3339(self.time)
        )
    }
}

/// One printed row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub event: CloudEvent,
    /// `--local`: the keyless exchange this was; `None` with `--local`: no keyless on record.
    #[serde(skip_serializing_if = "Correlation::is_not_asked")]
    pub keyless: Correlation,
    /// `--expect`: why this identity was not among the intended ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flagged: Option<String>,
}

/// Whether and how a row was correlated with keyless's own log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Correlation {
    /// No `--local` given.
    NotAsked,
    /// `--local` has no exchange for this event (serialised as `null`).
    NoKeylessOnRecord,
    /// The exchange it was.
    Exchange(KeylessExchange),
}

impl Correlation {
    fn is_not_asked(&self) -> bool {
        matches!(self, Self::NotAsked)
    }
}

/// A keyless exchange that reached this cloud, with no cloud record of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnrecordedExchange {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub host: String,
    pub profile: Option<String>,
    /// The role or service account it asked for.
    pub target: String,
    pub action: String,
    pub request_id: Option<String>,
    pub outcome: String,
}

/// Everything `keyless audit` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub events: Vec<Row>,
    /// `--local`: keyless exchanges (in the window) with no cloud event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyless_without_cloud_record: Option<Vec<UnrecordedExchange>>,
    /// How many events `--expect` flagged.
    pub flagged: usize,
}

impl Report {
    /// Rows for `events`, oldest first, not yet correlated nor checked.
    pub fn new(mut events: Vec<CloudEvent>) -> Self {
        // Stable: events of the same instant stay in the order the cloud gave them.
        events.sort_by_key(|e| e.time);
        Self {
            events: events
                .into_iter()
                .map(|event| Row {
                    event,
                    keyless: Correlation::NotAsked,
                    flagged: None,
                })
                .collect(),
            keyless_without_cloud_record: None,
            flagged: 0,
        }
    }

    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises") + "\n"
    }

    /// The report as an aligned table, then the keyless exchanges without a cloud record.
    pub fn to_text(&self) -> String {
        let correlated = self.keyless_without_cloud_record.is_some();
        let expected = self.events.iter().any(|r| r.flagged.is_some()) || self.flagged > 0;
        // AWS rows have an audience, a session and a request id; Google's have none of them.
        let aws = self
            .events
            .first()
            .is_none_or(|r| r.event.cloud == Cloud::Aws);
        let mut header = match aws {
            true => vec![
                "TIME",
                "EVENT",
                "IDENTITY",
                "AUDIENCE",
                "TARGET",
                "SESSION",
                "SOURCE IP",
                "REQUEST ID",
                "RESULT",
            ],
            false => vec!["TIME", "METHOD", "SUBJECT", "TARGET", "CALLER IP", "RESULT"],
        };
        if correlated {
            header.push("KEYLESS");
        }
        if expected {
            header.push("FLAG");
        }
        let mut table: Vec<Vec<String>> = vec![header.into_iter().map(String::from).collect()];
        for row in &self.events {
            let e = &row.event;
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let mut cells = match aws {
                true => vec![
                    rfc3339(e.time),
                    e.action.clone(),
                    e.identity(),
                    dash(&e.audience),
                    e.target(),
                    dash(&e.session_name),
                    dash(&e.source_ip),
                    dash(&e.request_id),
                    e.outcome().to_string(),
                ],
                false => vec![
                    rfc3339(e.time),
                    e.action.clone(),
                    e.identity(),
                    e.target(),
                    dash(&e.source_ip),
                    e.outcome().to_string(),
                ],
            };
            if correlated {
                cells.push(match &row.keyless {
                    Correlation::Exchange(x) => x.describe(),
                    _ => "no keyless on record".into(),
                });
            }
            if expected {
                cells.push(row.flagged.clone().unwrap_or_else(|| "-".into()));
            }
            table.push(cells);
        }
        let mut out = if self.events.is_empty() {
            "no events in the window\n".to_string()
        } else {
            aligned(&table)
        };
        if let Some(unrecorded) = &self.keyless_without_cloud_record {
            if unrecorded.is_empty() {
                out.push_str("\nevery keyless exchange in the window has a cloud record\n");
            } else {
                out.push_str("\nkeyless exchanges with no cloud record:\n");
                let mut table = vec![[
                    "TIME",
                    "HOST",
                    "PROFILE",
                    "EVENT",
                    "TARGET",
                    "REQUEST ID",
                    "OUTCOME",
                ]
                .map(String::from)
                .to_vec()];
                for x in unrecorded {
                    table.push(vec![
                        rfc3339(x.time),
                        x.host.clone(),
                        x.profile.clone().unwrap_or_else(|| "-".into()),
                        x.action.clone(),
                        x.target.clone(),
                        x.request_id.clone().unwrap_or_else(|| "-".into()),
                        x.outcome.clone(),
                    ]);
                }
                out.push_str(&aligned(&table));
            }
        }
        if self.flagged > 0 {
            out.push_str(&format!(
                "\n{} event(s) by identities not among the expected ones\n",
                self.flagged
            ));
        }
        out
    }
}

/// Columns padded to their widest cell; the last column is not padded.
fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `2026-12-04T23:40:01Z`: seconds are enough to read a table by.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn event() -> CloudEvent {
        let mut e = CloudEvent::new(
            Cloud::Aws,
            datetime!(2026-12-04 23:40:01.5 UTC),
            "sts.amazonaws.com",
            "AssumeRoleWithWebIdentity",
        );
        e.identity_provider = Some("accounts.google.com".into());
        e.subject = Some("1234567890".into());
        e.role_arn = Some("arn:aws:iam::123456789012:role/deploy".into());
        e
    }

    #[test]
    fn the_table_names_identity_target_and_result() {
        let mut denied = event();
        denied.error_code = Some("AccessDenied".into());
        let text = Report::new(vec![event(), denied]).to_text();
        assert!(text.starts_with("TIME"), "{text}");
        assert!(
            text.contains(
                "2026-12-04T23:40:01Z  AssumeRoleWithWebIdentity  accounts.google.com:1234567890"
            ),
            "{text}"
        );
        assert!(text.contains("AccessDenied"), "{text}");
        assert!(!text.contains("KEYLESS"), "{text}");
    }

    #[test]
    fn json_says_no_keyless_on_record_as_null_and_omits_what_was_not_asked() {
        let mut report = Report::new(vec![event(), event()]);
        report.events[0].keyless = Correlation::NoKeylessOnRecord;
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert!(value["events"][0]["keyless"].is_null());
        assert!(value["events"][0]
            .as_object()
            .unwrap()
            .contains_key("keyless"));
        assert!(!value["events"][1]
            .as_object()
            .unwrap()
            .contains_key("keyless"));
        assert_eq!(
            value["events"][0]["role_arn"],
            "arn:aws:iam::123456789012:role/deploy"
        );
        assert_eq!(value["flagged"], 0);
    }
}
