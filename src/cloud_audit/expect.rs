//! `--expect`: the identities meant to cross, and the events of any other.
//!
//! The intended identities come from what the user already has: a role's trust policy (its
//! principals and `sub`/`aud` conditions, evaluated with the same AWS condition semantics
//! `keyless doctor` and `lint` use), a workload identity provider's description (its
//! `attributeCondition`, in keyless's CEL), or keyless.toml (the roles and service accounts its
//! profiles ask for). A recorded event is fine when one expectation that speaks about it admits
//! it; otherwise it is flagged with each expectation's reason: the audit counterpart of `lint`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};

use crate::cloud_audit::pool_of;
use crate::cloud_audit::report::{Cloud, CloudEvent, Report};
use crate::policy::cel::{CelExpression, CelVariables};
use crate::policy::evaluate::{evaluate, ConditionContext, Request, RequestPrincipal};
use crate::policy::model::PolicyDocument;

/// One `--expect` file, read.
#[derive(Clone, Debug)]
pub enum Expectation {
    /// A role's trust policy; `role` when the file names it (`aws iam get-role` output).
    TrustPolicy {
        file: PathBuf,
        role: Option<String>,
        policy: PolicyDocument,
    },
    /// A workload identity provider: its name and attribute condition, when it has them.
    Provider {
        file: PathBuf,
        name: Option<String>,
        condition: Option<CelExpression>,
    },
    /// keyless.toml: what its profiles ask for.
    Config {
        file: PathBuf,
        roles: Vec<String>,
        service_accounts: Vec<String>,
        providers: Vec<String>,
    },
}

/// An `--expect` file keyless cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    #[error("could not read --expect file {}: {cause}", .file.display())]
    Unreadable { file: PathBuf, cause: String },
    #[error("--expect file {} is not a trust policy, a workload identity provider or keyless.toml: {reason}\n  \
             hint: pass a trust policy (or `aws iam get-role` output), `gcloud iam workload-identity-pools providers describe --format json` output, or keyless.toml", .file.display())]
    Unrecognised { file: PathBuf, reason: String },
}

impl crate::classify::Classify for ExpectError {
    fn class(&self) -> crate::classify::Class {
        crate::classify::Class::Usage
    }
}

impl Expectation {
    /// Reads `file`: `.toml` is keyless.toml; JSON is a trust policy (bare, or `get-role`'s
    /// `Role`) or a provider (it has `attributeCondition`, `oidc` or `aws`).
    pub fn load(file: &Path) -> Result<Self, ExpectError> {
        let text = std::fs::read_to_string(file).map_err(|e| ExpectError::Unreadable {
            file: file.to_path_buf(),
            cause: e.to_string(),
        })?;
        Self::parse(file, &text)
    }

    /// [`Expectation::load`] on text already read.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ExpectError> {
        let unrecognised = |reason: String| ExpectError::Unrecognised {
            file: file.to_path_buf(),
            reason,
        };
        if file.extension().is_some_and(|e| e == "toml") {
            let value = toml::de::DeTable::parse(text).map_err(|e| unrecognised(e.to_string()))?;
            return Ok(config_expectation(file, value.get_ref()));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| unrecognised(e.to_string()))?;
        let role = value.get("Role");
        let document = role
            .and_then(|r| r.get("AssumeRolePolicyDocument"))
            .or_else(|| value.get("AssumeRolePolicyDocument"))
            .or_else(|| value.get("Statement").map(|_| &value));
        if let Some(document) = document {
            let document = match document {
                // get-role through some tools leaves the document URL-encoded.
                Value::String(s) => {
                    let decoded = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
                    serde_json::from_str(&decoded).map_err(|e| unrecognised(e.to_string()))?
                }
                other => other.clone(),
            };
            let policy =
                PolicyDocument::from_value(&document).map_err(|e| unrecognised(e.to_string()))?;
            return Ok(Self::TrustPolicy {
                file: file.to_path_buf(),
                role: role
                    .and_then(|r| r.get("Arn"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                policy,
            });
        }
        if ["attributeCondition", "oidc", "aws", "attributeMapping"]
            .iter()
            .any(|k| value.get(k).is_some())
        {
            let condition = match value.get("attributeCondition").and_then(Value::as_str) {
                Some(c) => Some(
                    CelExpression::parse(c)
                        .map_err(|e| unrecognised(format!("its attributeCondition: {e}")))?,
                ),
                None => None,
            };
            return Ok(Self::Provider {
                file: file.to_path_buf(),
                name: value
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                condition,
            });
        }
        Err(unrecognised(
            "it has no Statement, AssumeRolePolicyDocument or attributeCondition".into(),
        ))
    }

    /// `None` when this expectation has nothing to say about `event`; else whether it admits it
    /// (`Ok`) or why not (`Err`).
    fn judge(&self, event: &CloudEvent) -> Option<Result<(), String>> {
        match (self, event.cloud) {
            (Self::TrustPolicy { role, policy, file }, Cloud::Aws) => {
                let event_role = event.role_arn.as_deref()?;
                if let Some(role) = role {
                    if role != event_role {
                        return Some(Err(format!(
                            "{event_role} is not the role of {}",
                            file.display()
                        )));
                    }
                }
                Some(judge_trust_policy(policy, event, event_role))
            }
            (
                Self::Provider {
                    name, condition, ..
                },
                Cloud::Gcp,
            ) => Some(judge_provider(name.as_deref(), condition.as_ref(), event)),
            (
                Self::Config {
                    file,
                    roles,
                    service_accounts,
                    providers,
                },
                cloud,
            ) => {
                let (what, value, allowed) = match cloud {
                    Cloud::Aws => ("role", event.role_arn.as_deref()?, roles),
                    Cloud::Gcp => match &event.service_account {
                        Some(sa) => ("service account", sa.as_str(), service_accounts),
                        None => ("provider", event.provider.as_deref()?, providers),
                    },
                };
                let known = allowed
                    .iter()
                    .any(|a| a == value || (what == "provider" && pool_of(a) == pool_of(value)));
                Some(if known {
                    Ok(())
                } else {
                    Err(format!(
                        "{what} {value} is in no profile of {}",
                        file.display()
                    ))
                })
            }
            _ => None,
        }
    }
}

/// Whether the trust policy lets the event's caller assume its role.
fn judge_trust_policy(
    policy: &PolicyDocument,
    event: &CloudEvent,
    role: &str,
) -> Result<(), String> {
    let (principals, action, context) = if event.action == "AssumeRoleWithWebIdentity" {
        let provider = event.identity_provider.as_deref().unwrap_or_default();
        let host = provider.rsplit("oidc-provider/").next().unwrap_or(provider);
        let account = role.split(':').nth(4).unwrap_or_default();
        let principal = crate::policy::issuer::Issuer::of(host).federated_principal(account);
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::String(format!("https://{host}")));
        if let Some(sub) = &event.subject {
            claims.insert("sub".into(), Value::String(sub.clone()));
        }
        if let Some(aud) = &event.audience {
            // CloudTrail records the key AWS compares: for Google, `azp` (`:aud`); `:oaud`
            // (the token's own `aud`) is not recorded, so a condition on it cannot be met here.
            let claim = if principal == "accounts.google.com" {
                "azp"
            } else {
                "aud"
            };
            claims.insert(claim.into(), Value::String(aud.clone()));
        }
        let context = crate::policy::issuer::condition_context(&claims);
        (
            vec![RequestPrincipal::Federated(principal)],
            "sts:AssumeRoleWithWebIdentity",
            context,
        )
    } else {
        let caller = event.principal.clone().unwrap_or_default();
        (
            aws_principal_spellings(&caller)
                .into_iter()
                .map(RequestPrincipal::Aws)
                .collect(),
            "sts:AssumeRole",
            ConditionContext::new("the caller"),
        )
    };
    let decisions: Vec<_> = principals
        .into_iter()
        .map(|principal| {
            evaluate(
                policy,
                &Request {
                    principal,
                    action,
                    context: &context,
                },
            )
        })
        .collect();
    match decisions.iter().find(|d| d.is_allowed()) {
        Some(_) => Ok(()),
        None => Err(format!(
            "the trust policy would not admit {}: {}",
            event.identity(),
            decisions.first().map(|d| d.explain()).unwrap_or_default()
        )),
    }
}

/// The ways a trust policy may name an `AssumeRole` caller: its ARN as CloudTrail records it
/// (a role session `arn:aws:sts::A:assumed-role/R/S`), the role itself
/// (`arn:aws:iam::A:role/R`), the account (`arn:aws:iam::A:root`, `A`).
fn aws_principal_spellings(caller: &str) -> Vec<String> {
    let mut spellings = vec![caller.to_string()];
    let account = caller.split(':').nth(4).unwrap_or_default();
    if let Some(rest) = caller.split_once(":assumed-role/").map(|(_, r)| r) {
        let role = rest.split('/').next().unwrap_or(rest);
        spellings.push(format!("arn:aws:iam::{account}:role/{role}"));
    }
    if !account.is_empty() {
        spellings.push(format!("arn:aws:iam::{account}:root"));
        spellings.push(account.to_string());
    }
    spellings
}

/// Whether the provider's attribute condition admits the event's federated subject. Cloud
/// Audit Logs record the subject only, so the condition sees `google.subject` and, for an AWS
/// caller, what the AWS mapping makes of its ARN (`attribute.aws_role`, `assertion.arn`).
fn judge_provider(
    name: Option<&str>,
    condition: Option<&CelExpression>,
    event: &CloudEvent,
) -> Result<(), String> {
    if let (Some(name), Some(principal)) = (name, event.principal.as_deref()) {
        if principal.contains("workloadIdentityPools/") && pool_of(name) != pool_of(principal) {
            return Err(format!("{principal} is not of the pool of {name}"));
        }
    }
    let (Some(condition), Some(subject)) = (condition, event.subject.as_deref()) else {
        return Ok(());
    };
    let vars: CelVariables = if subject.starts_with("arn:aws:") {
        let account = subject.split(':').nth(4).unwrap_or_default();
        crate::policy::workload_identity::aws_default_mapping(subject, account)
            .cel_variables(account)
    } else {
        CelVariables::from([
            ("google.subject".to_string(), subject.to_string()),
            ("assertion.sub".to_string(), subject.to_string()),
        ])
    };
    match condition.evaluate(&vars) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("the attributeCondition `{}` does not admit {subject}", condition.source())),
        Err(e) => Err(format!(
            "the attributeCondition `{}` cannot be checked against {subject} from the audit log alone: {e}",
            condition.source()
        )),
    }
}

/// The roles, service accounts and providers keyless.toml's `[defaults]` and profiles name.
fn config_expectation(file: &Path, table: &DeTable<'_>) -> Expectation {
    fn sub_table<'a, 'b>(table: &'a DeTable<'b>, key: &str) -> Option<&'a DeTable<'b>> {
        table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .and_then(|(_, v)| match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            })
    }
    let mut sections: Vec<&DeTable<'_>> = sub_table(table, "defaults").into_iter().collect();
    if let Some(profiles) = sub_table(table, "profile") {
        sections.extend(profiles.values().filter_map(|v| match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        }));
    }
    let (mut roles, mut service_accounts, mut providers) = (Vec::new(), Vec::new(), Vec::new());
    for section in sections {
        let strings = |key: &str| -> Vec<String> {
            let value = section
                .iter()
                .find(|(k, _)| k.get_ref() == key)
                .map(|(_, v)| v.get_ref());
            match value {
                Some(DeValue::String(s)) => vec![s.to_string()],
                Some(DeValue::Array(items)) => items
                    .iter()
                    .filter_map(|v| match v.get_ref() {
                        DeValue::String(s) => Some(s.to_string()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        roles.extend(strings("role_arn"));
        roles.extend(strings("chain_role"));
        roles.extend(strings("chain_roles"));
        service_accounts.extend(strings("service_account"));
        providers.extend(
            strings("audience")
                .into_iter()
                .filter(|a| a.starts_with("//iam.googleapis.com/")),
        );
    }
    Expectation::Config {
        file: file.to_path_buf(),
        roles,
        service_accounts,
        providers,
    }
}

/// Flags every row no expectation admits; returns how many were flagged.
pub fn flag_unexpected(report: &mut Report, expectations: &[Expectation]) -> usize {
    let mut flagged = 0;
    for row in &mut report.events {
        let verdicts: Vec<Result<(), String>> = expectations
            .iter()
            .filter_map(|x| x.judge(&row.event))
            .collect();
        if verdicts.iter().any(Result::is_ok) {
            continue;
        }
        let reasons: Vec<String> = verdicts.into_iter().filter_map(Result::err).collect();
        row.flagged = Some(if reasons.is_empty() {
            format!(
                "no --expect file speaks about {} {}",
                row.event.service, row.event.action
            )
        } else {
            reasons.join("; ")
        });
        flagged += 1;
    }
    report.flagged = flagged;
    flagged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud_audit::report::Cloud;
    use time::macros::datetime;

    fn web_identity(sub: &str, aud: &str) -> CloudEvent {
        let mut e = CloudEvent::new(
            Cloud::Aws,
            datetime!(2026-12-04 23:40 UTC),
            "sts.amazonaws.com",
            "AssumeRoleWithWebIdentity",
        );
        e.identity_provider = Some("accounts.google.com".into());
        e.subject = Some(sub.into());
        e.audience = Some(aud.into());
        e.role_arn = Some("arn:aws:iam::123456789012:role/gcp-deploy".into());
        e
    }

    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
        "Principal":{"Federated":"accounts.google.com"},"Action":"sts:AssumeRoleWithWebIdentity",
        "Condition":{"StringEquals":{"accounts.google.com:aud":"110000000000000000009",
                                     "accounts.google.com:sub":"110000000000000000001"}}}]}"#;

    #[test]
    fn a_trust_policy_admits_its_subject_and_flags_another() {
        let expect = Expectation::parse(Path::new("trust.json"), TRUST).unwrap();
        let mut report = Report::new(vec![
            web_identity("110000000000000000001", "110000000000000000009"),
            web_identity("110000000000000000666", "110000000000000000009"),
        ]);
        assert_eq!(flag_unexpected(&mut report, &[expect]), 1);
        assert!(report.events[0].flagged.is_none());
        let reason = report.events[1].flagged.as_deref().unwrap();
        assert!(reason.contains("accounts.google.com:sub"), "{reason}");
    }

    #[test]
    fn get_role_output_names_the_role() {
        let text = format!(
            r#"{{"Role":{{"Arn":"arn:aws:iam::123456789012:role/other","AssumeRolePolicyDocument":{TRUST}}}}}"#
        );
        let expect = Expectation::parse(Path::new("role.json"), &text).unwrap();
        let mut report = Report::new(vec![web_identity(
            "110000000000000000001",
            "110000000000000000009",
        )]);
        assert_eq!(flag_unexpected(&mut report, &[expect]), 1);
        assert!(report.events[0]
            .flagged
            .as_deref()
            .unwrap()
            .contains("is not the role of role.json"));
    }

    #[test]
    fn a_provider_condition_is_evaluated_on_the_aws_caller() {
        let provider = r#"{"name":"projects/123456/locations/global/workloadIdentityPools/aws-pool/providers/aws",
            "aws":{"accountId":"123456789012"},
            "attributeCondition":"attribute.aws_role == 'arn:aws:sts::123456789012:assumed-role/app'"}"#;
        let expect = Expectation::parse(Path::new("provider.json"), provider).unwrap();
        let event = |arn: &str| {
            let mut e = CloudEvent::new(
                Cloud::Gcp,
                datetime!(2026-12-04 23:40 UTC),
                "sts.googleapis.com",
                "ExchangeToken",
            );
            e.principal = Some(format!("principal://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/aws-pool/subject/{arn}"));
            e.subject = Some(arn.into());
            e
        };
        let mut report = Report::new(vec![
            event("arn:aws:sts::123456789012:assumed-role/app/i-0abc"),
            event("arn:aws:sts::123456789012:assumed-role/intruder/x"),
        ]);
        assert_eq!(flag_unexpected(&mut report, &[expect]), 1);
        assert!(report.events[1]
            .flagged
            .as_deref()
            .unwrap()
            .contains("does not admit"));
    }

    #[test]
    fn keyless_toml_names_the_roles_and_service_accounts_meant() {
        let toml = r#"
            [profile.deploy]
            role_arn = "arn:aws:iam::123456789012:role/gcp-deploy"
            [profile.to-gcp]
            audience = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/aws-pool/providers/aws"
            service_account = "deployer@my-project.iam.gserviceaccount.com"
        "#;
        let expect = Expectation::parse(Path::new("keyless.toml"), toml).unwrap();
        let mut other_role = web_identity("1", "2");
        other_role.role_arn = Some("arn:aws:iam::123456789012:role/admin".into());
        let mut sa = CloudEvent::new(
            Cloud::Gcp,
            datetime!(2026-12-04 23:40 UTC),
            "iamcredentials.googleapis.com",
            "GenerateAccessToken",
        );
        sa.service_account = Some("other@my-project.iam.gserviceaccount.com".into());
        let mut report = Report::new(vec![web_identity("1", "2"), other_role, sa]);
        assert_eq!(flag_unexpected(&mut report, &[expect]), 2);
        assert!(report.events[0].flagged.is_none());
        assert!(
            report.events[2]
                .flagged
                .as_deref()
                .unwrap()
                .contains("service account other@"),
            "{:?}",
            report.events[2].flagged
        );
    }

    #[test]
    fn an_assume_role_caller_is_admitted_by_its_role_or_account() {
        let policy = r#"{"Statement":[{"Effect":"Allow","Action":"sts:AssumeRole",
            "Principal":{"AWS":"arn:aws:iam::123456789012:role/gcp-deploy"}}]}"#;
        let expect = Expectation::parse(Path::new("partner.json"), policy).unwrap();
        let hop = |caller: &str| {
            let mut e = CloudEvent::new(
                Cloud::Aws,
                datetime!(2026-12-04 23:40 UTC),
                "sts.amazonaws.com",
                "AssumeRole",
            );
            e.principal = Some(caller.into());
            e.role_arn = Some("arn:aws:iam::210987654321:role/partner-readonly".into());
            e
        };
        let mut report = Report::new(vec![
            hop("arn:aws:sts::123456789012:assumed-role/gcp-deploy/keyless-node-1"),
            hop("arn:aws:sts::123456789012:assumed-role/admin/x"),
        ]);
        assert_eq!(flag_unexpected(&mut report, &[expect]), 1);
        assert!(report.events[0].flagged.is_none());
    }

    #[test]
    fn an_unknown_file_is_a_usage_error() {
        let error = Expectation::parse(Path::new("x.json"), r#"{"hello": 1}"#).unwrap_err();
        use crate::classify::Classify;
        assert_eq!(error.class().exit_code(), 2);
    }
}
