//! `keyless setup … --audit`: what the clouds must keep so `keyless audit` has something to read.
//!
//! AWS keeps 90 days of management events in CloudTrail Event history without any trail (that
//! is what `keyless audit aws` reads); a trail keeps them for good, from every region. Google
//! records STS token exchanges and IAM Credentials calls only as Data Access logs, which are off
//! until the project's audit config turns them on. Both are built here once, like the trust
//! policies, and each format only arranges them.

use serde_json::{json, Value};

use super::oidc::{OidcSource, OidcToAws, OidcToGcp};
use super::{AwsToGcp, GcpToAws};

/// The trail's name (one per account; skipped by whoever already has a multi-region one).
pub const TRAIL_NAME: &str = "keyless-audit";

/// The Google services whose Data Access logs record federation: token exchanges, then the
/// service account tokens they buy.
pub const GOOGLE_SERVICES: [&str; 2] = ["sts.googleapis.com", "iamcredentials.googleapis.com"];

/// The log types turned on for each service: `DATA_READ` records `ExchangeToken` and
/// `GenerateAccessToken`/`GenerateIdToken`; `ADMIN_READ` the reads of their configuration.
pub const LOG_TYPES: [&str; 2] = ["ADMIN_READ", "DATA_READ"];

/// CloudTrail's event selector: every management event, read and write, so the STS calls are
/// kept whichever way CloudTrail classes them.
pub const READ_WRITE_TYPE: &str = "All";

/// What `keyless audit gcp` says when the logs it needs are off (`service` is one of
/// [`GOOGLE_SERVICES`]).
pub fn enable_data_read_hint(service: &str) -> String {
    format!("enable DATA_READ for {service}: see `keyless setup … --audit`")
}

/// What one setup pair needs for its audit: a trail on the AWS side, the audit config on the
/// Google side, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The AWS account's trail, when AWS is one side of the pair.
    pub trail: Option<Trail>,
    /// The Google project's Data Access logs, when Google records part of the exchange.
    pub google: Option<GoogleAuditConfig>,
}

/// Which side of the exchange an AWS account is, which decides what its trail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsSide {
    /// The role's account: `AssumeRoleWithWebIdentity` (and `AssumeRole` hops).
    Target,
    /// The caller's account of `aws-to-gcp`: the role's own sessions; the exchange is Google's.
    Caller,
    /// The caller's account of `aws-oidc-to-gcp`: each `GetWebIdentityToken` for Google.
    OutboundCaller,
}

/// A multi-region CloudTrail trail of management events, its S3 bucket (public access blocked)
/// and the bucket policy CloudTrail requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    /// The 12-digit account the trail and its bucket live in.
    pub account: String,
    /// What it records for this pair.
    pub side: AwsSide,
}

impl Trail {
    /// Every region, so no call escapes it.
    pub const MULTI_REGION: bool = true;
    /// STS's global endpoint logs to us-east-1 as a global service: without these events a
    /// trail in another region would miss them.
    pub const INCLUDE_GLOBAL_SERVICE_EVENTS: bool = true;
    /// Digest files, so a log altered or deleted afterwards shows.
    pub const LOG_FILE_VALIDATION: bool = true;

    /// `keyless-audit-ACCOUNT`: bucket names are global, the account id keeps this one unique.
    pub fn bucket(&self) -> String {
        format!("{TRAIL_NAME}-{}", self.account)
    }

    /// The trail's ARN in `region` (a literal, or what a format refers to the region by).
    pub fn arn_in(&self, region: &str) -> String {
        format!(
            "arn:aws:cloudtrail:{region}:{}:trail/{TRAIL_NAME}",
            self.account
        )
    }

    /// The bucket policy CloudTrail requires, for this trail only (`aws:SourceArn`); `trail_arn`
    /// stands for [`Trail::arn_in`] as the format writes it (a string, or CloudFormation's
    /// `Fn::Sub`).
    pub fn bucket_policy_with(&self, trail_arn: Value) -> Value {
        let bucket = format!("arn:aws:s3:::{}", self.bucket());
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AWSCloudTrailAclCheck",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudtrail.amazonaws.com"},
                    "Action": "s3:GetBucketAcl",
                    "Resource": bucket,
                    "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}
                },
                {
                    "Sid": "AWSCloudTrailWrite",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudtrail.amazonaws.com"},
                    "Action": "s3:PutObject",
                    "Resource": format!("{bucket}/AWSLogs/{}/*", self.account),
                    "Condition": {"StringEquals": {
                        "aws:SourceArn": trail_arn,
                        "s3:x-amz-acl": "bucket-owner-full-control"
                    }}
                }
            ]
        })
    }

    /// The bucket policy as pretty JSON, with the trail's ARN in `region`.
    pub fn bucket_policy_pretty(&self, region: &str) -> String {
        super::oidc::pretty(&self.bucket_policy_with(Value::String(self.arn_in(region))))
    }

    /// Why the trail is there, as comment lines (without the comment marker).
    pub fn notes(&self) -> Vec<String> {
        let records = match self.side {
            AwsSide::Target => format!(
                "It records each AssumeRoleWithWebIdentity (and AssumeRole hop) into {}, with the \
                 requestID keyless's own audit log holds.",
                self.account
            ),
            AwsSide::Caller => format!(
                "{} is the caller's side: the exchange itself is Google's record (Cloud Audit Logs); \
                 the trail keeps the sessions of the role keyless runs as.",
                self.account
            ),
            AwsSide::OutboundCaller => format!(
                "{} is the caller's side: the trail records each GetWebIdentityToken the role calls \
                 for Google's audience.",
                self.account
            ),
        };
        let text = format!(
            "Audit, AWS side: a CloudTrail trail of management events in account {account}. \
             CloudTrail Event history keeps 90 days of management events without any trail, and \
             `keyless audit aws` reads Event history (LookupEvents); this trail keeps them in S3 \
             ({bucket}), from every region (STS's global endpoint logs to us-east-1), with log \
             file validation. Skip it if the account or its organization already has such a \
             trail. {records}",
            account = self.account,
            bucket = self.bucket(),
        );
        wrap(&text)
    }
}

/// The project's audit config: Data Access logs on for the services that record federation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleAuditConfig {
    /// The project whose services record the calls.
    pub project_id: String,
    /// Which of [`GOOGLE_SERVICES`] this pair needs.
    pub services: Vec<&'static str>,
}

impl GoogleAuditConfig {
    /// The `auditConfigs` entries, as the project's IAM policy holds them.
    pub fn audit_configs(&self) -> Value {
        Value::Array(
            self.services
                .iter()
                .map(|service| {
                    json!({
                        "service": service,
                        "auditLogConfigs": LOG_TYPES.iter().map(|t| json!({"logType": t})).collect::<Vec<_>>()
                    })
                })
                .collect(),
        )
    }

    /// A jq program adding `$wanted` (as [`GoogleAuditConfig::audit_configs`]) to a project IAM
    /// policy without dropping anything: other services' configs, other log types and their
    /// exempted members stay as they are.
    pub const JQ_MERGE: &'static str = ".auditConfigs = reduce $wanted[] as $w (.auditConfigs // []; if any(.[]; .service == $w.service) then map(if .service == $w.service then .auditLogConfigs = ((.auditLogConfigs // []) as $have | $have + [$w.auditLogConfigs[] | select(.logType as $t | $have | all(.logType != $t))]) else . end) else . + [$w] end)";

    /// Why the config is there, as comment lines (without the comment marker).
    pub fn notes(&self) -> Vec<String> {
        let mut text = format!(
            "Audit, Google side: Data Access logs ({types}) for {services} in project {project}. \
             They are off by default, and without them `keyless audit gcp` finds nothing (Cloud \
             Logging bills them as ingested logs). The config is added to the project's others.",
            types = LOG_TYPES.join(", "),
            services = self.services.join(" and "),
            project = self.project_id,
        );
        if self.services == [GOOGLE_SERVICES[1]] {
            text.push_str(
                " Only IAM Credentials: it records generateIdToken when the workload impersonates \
                 the service account (--token-source impersonate:…); metadata server tokens are not \
                 audited by Google.",
            );
        }
        wrap(&text)
    }
}

/// Notes fit a comment line: words wrapped at 90 columns.
fn wrap(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= 90 => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

fn google_target(project_id: &str) -> GoogleAuditConfig {
    GoogleAuditConfig {
        project_id: project_id.to_string(),
        services: GOOGLE_SERVICES.to_vec(),
    }
}

impl GcpToAws {
    /// The role's account keeps the exchanges; the service account's project records the
    /// `generateIdToken` of a workload that impersonates it.
    pub fn audit(&self) -> Audit {
        Audit {
            trail: Some(Trail {
                account: self.aws_account.clone(),
                side: AwsSide::Target,
            }),
            google: Some(GoogleAuditConfig {
                project_id: self.service_account_project().to_string(),
                services: vec![GOOGLE_SERVICES[1]],
            }),
        }
    }
}

impl AwsToGcp {
    /// Google records the exchange; the caller's account keeps its role's side.
    pub fn audit(&self) -> Audit {
        Audit {
            trail: Some(Trail {
                account: self.aws_account.clone(),
                side: AwsSide::Caller,
            }),
            google: Some(google_target(&self.project_id)),
        }
    }
}

impl OidcToAws {
    /// The role's account keeps the exchanges.
    pub fn audit(&self) -> Audit {
        Audit {
            trail: Some(Trail {
                account: self.aws_account.clone(),
                side: AwsSide::Target,
            }),
            google: None,
        }
    }
}

impl OidcToGcp {
    /// Google records the exchange; for `aws-oidc`, the caller's account keeps the tokens it
    /// minted.
    pub fn audit(&self) -> Audit {
        let trail = match &self.source {
            OidcSource::AwsOutbound { account, .. } => Some(Trail {
                account: account.clone(),
                side: AwsSide::OutboundCaller,
            }),
            OidcSource::Github { .. } | OidcSource::Kubernetes { .. } => None,
        };
        Audit {
            trail,
            google: Some(google_target(&self.project_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail() -> Trail {
        Trail {
            account: "123456789012".into(),
            side: AwsSide::Target,
        }
    }

    /// The policy is AWS's documented one, limited to this trail and this account's prefix.
    #[test]
    fn bucket_policy_is_cloudtrails_for_this_trail_only() {
        let policy: Value =
            serde_json::from_str(&trail().bucket_policy_pretty("eu-west-1")).unwrap();
        let arn = "arn:aws:cloudtrail:eu-west-1:123456789012:trail/keyless-audit";
        assert_eq!(
            policy["Statement"][1]["Resource"],
            "arn:aws:s3:::keyless-audit-123456789012/AWSLogs/123456789012/*"
        );
        assert_eq!(
            policy["Statement"][1]["Condition"]["StringEquals"],
            json!({"aws:SourceArn": arn, "s3:x-amz-acl": "bucket-owner-full-control"})
        );
        assert_eq!(
            policy["Statement"][0]["Condition"]["StringEquals"]["aws:SourceArn"],
            arn
        );
    }

    /// Each service gets both log types; the hint names the service and the flag.
    #[test]
    fn audit_configs_list_both_log_types_per_service() {
        let config = google_target("p");
        assert_eq!(
            config.audit_configs()[1],
            json!({"service": "iamcredentials.googleapis.com",
                   "auditLogConfigs": [{"logType": "ADMIN_READ"}, {"logType": "DATA_READ"}]})
        );
        assert!(enable_data_read_hint(GOOGLE_SERVICES[1])
            .starts_with("enable DATA_READ for iamcredentials.googleapis.com: see `keyless setup"));
    }

    #[test]
    fn notes_are_short_lines() {
        for side in [AwsSide::Target, AwsSide::Caller, AwsSide::OutboundCaller] {
            let t = Trail { side, ..trail() };
            assert!(t.notes().iter().all(|l| l.len() <= 96), "{:?}", t.notes());
        }
        let mut g = google_target("my-project");
        assert!(g.notes().iter().all(|l| l.len() <= 96), "{:?}", g.notes());
        g.services = vec![GOOGLE_SERVICES[1]];
        assert!(g.notes().iter().all(|l| l.len() <= 96), "{:?}", g.notes());
    }
}
