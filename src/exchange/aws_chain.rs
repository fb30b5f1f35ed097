//! AWS role chaining: after the first exchange, `--chain-role ARN` (repeatable) assumes further
//! roles in order with STS `AssumeRole`, each call SigV4-signed with the previous session's
//! credentials. The usual reason is the cross-account pattern: the web identity lands in a role
//! of one account, whose session may assume a role in another account (often a third party's,
//! which then requires an `ExternalId`).
//!
//! AWS caps a chained session at one hour, so a longer `--duration` with a chain is refused
//! here, before anything goes on the wire. Which hop gets what: every hop gets `ExternalId` and
//! the non-transitive tags; the first hop also gets `SourceIdentity`, the transitive tags and
//! `TransitiveTagKeys`, which AWS carries to the later sessions itself (sending an inherited tag
//! again fails, and a source identity cannot change once set).

use std::time::SystemTime;

use serde::Deserialize;

use crate::credentials::AwsCredentials;
use crate::exchange::aws_sts::{
    audit_call, parse_fault, parse_timestamp, send_and_read, sign_request, AssumedRole,
    AssumedRoleUser, Attempt, ExchangeError, Reaction, RoleArn, SessionName, StsEndpoint, StsFault,
    XmlCredentials,
};
use crate::exchange::clock_skew;
use crate::exchange::retry::{RetryPolicy, TimedOut};
use crate::exchange::throttle;
use crate::types::{ExternalId, SessionTag, SourceIdentity, SpecError, TagKey};
use crate::wire::truncate;

/// AWS's limit on a session obtained by role chaining, in seconds.
pub const CHAINED_SESSION_MAX_SECONDS: u32 = 3600;
/// STS's limit on session tags (and on transitive tag keys) per request.
const MAX_TAGS: usize = 50;

/// The roles to assume after the first exchange, in order, and what to send with them.
/// Built only through [`RoleChain::new`], which checks AWS's rules once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleChain {
    roles: Vec<RoleArn>,
    external_id: Option<ExternalId>,
    source_identity: Option<SourceIdentity>,
    tags: Vec<SessionTag>,
    transitive_tag_keys: Vec<TagKey>,
    duration_seconds: Option<u32>,
}

impl RoleChain {
    /// Checks the chain against AWS's rules: options need a role to apply to, at most 50 tags
    /// with distinct keys (case-insensitively), transitive keys among the tags, and a
    /// `duration_seconds` (the whole profile's `--duration`) of at most one hour when chaining.
    pub fn new(
        roles: Vec<RoleArn>,
        external_id: Option<ExternalId>,
        source_identity: Option<SourceIdentity>,
        tags: Vec<SessionTag>,
        transitive_tag_keys: Vec<TagKey>,
        duration_seconds: Option<u32>,
    ) -> Result<Self, SpecError> {
        let invalid = |problem: String, hint| Err(SpecError::InvalidRoleChain { problem, hint });
        if roles.is_empty() {
            let given = [
                ("--external-id", external_id.is_some()),
                ("--source-identity", source_identity.is_some()),
                ("--tag", !tags.is_empty()),
                ("--transitive-tag-key", !transitive_tag_keys.is_empty()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                return invalid(
                    format!("{flag} applies to the roles of --chain-role, but no --chain-role is given"),
                    "add --chain-role ARN (chain_roles in keyless.toml) for the role that needs it, or remove the option",
                );
            }
            return Ok(Self::default());
        }
        if let Some(d) = duration_seconds.filter(|d| *d > CHAINED_SESSION_MAX_SECONDS) {
            return invalid(
                format!(
                    "--duration {d}s cannot be used with --chain-role: AWS limits a session \
                     obtained by role chaining to 1 hour (STS answers \"The requested \
                     DurationSeconds exceeds the 1 hour session limit for roles assumed by role \
                     chaining\")"
                ),
                "use --duration 1h or less (the default is 1h), or assume the final role directly with --role-arn if its trust policy can name the web identity",
            );
        }
        if tags.len() > MAX_TAGS || transitive_tag_keys.len() > MAX_TAGS {
            return invalid(
                format!(
                    "STS accepts at most {MAX_TAGS} session tags and {MAX_TAGS} transitive tag keys, got {} and {}",
                    tags.len(),
                    transitive_tag_keys.len()
                ),
                "pass fewer --tag / --transitive-tag-key values",
            );
        }
        for (i, tag) in tags.iter().enumerate() {
            if let Some(other) = tags[..i].iter().find(|t| t.key.same_as(&tag.key)) {
                return invalid(
                    format!(
                        "--tag {tag} and --tag {other} set the same key: STS compares tag keys without regard to case"
                    ),
                    "give each session tag once",
                );
            }
        }
        if let Some(key) = transitive_tag_keys
            .iter()
            .find(|k| !tags.iter().any(|t| t.key.same_as(k)))
        {
            return invalid(
                format!("--transitive-tag-key {key} names no --tag"),
                "a transitive key marks one of the session tags: add --tag KEY=VALUE for it",
            );
        }
        Ok(Self {
            roles,
            external_id,
            source_identity,
            tags,
            transitive_tag_keys,
            duration_seconds,
        })
    }

    /// No role to chain: the first exchange's credentials are the answer.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// The roles, in the order they are assumed.
    pub fn roles(&self) -> &[RoleArn] {
        &self.roles
    }

    /// What identifies the chain in a cache key (the external ID only as a digest; nothing when
    /// the chain is empty, so the keys of profiles without a chain do not change).
    pub fn cache_parts(&self) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        use sha2::{Digest, Sha256};
        let join = |items: Vec<String>| items.join(",");
        vec![
            "chain".into(),
            join(self.roles.iter().map(ToString::to_string).collect()),
            self.external_id
                .as_ref()
                .map(|id| hex::encode(Sha256::digest(id.as_str().as_bytes())))
                .unwrap_or_default(),
            self.source_identity
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            join(self.tags.iter().map(ToString::to_string).collect()),
            join(
                self.transitive_tag_keys
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        ]
    }

    fn is_transitive(&self, tag: &SessionTag) -> bool {
        self.transitive_tag_keys.iter().any(|k| k.same_as(&tag.key))
    }

    /// The `AssumeRole` parameters of hop `index` (0: the first chained role), as botocore
    /// serialises them (query protocol: `Tags.member.N.Key`, `TransitiveTagKeys.member.N`).
    pub(crate) fn parameters(
        &self,
        index: usize,
        session: &SessionName,
        policy: Option<&str>,
        policy_arns: &[String],
    ) -> Vec<(String, String)> {
        let mut form: Vec<(String, String)> = vec![
            ("Action".into(), "AssumeRole".into()),
            ("Version".into(), "2011-06-15".into()),
            ("RoleArn".into(), self.roles[index].to_string()),
            ("RoleSessionName".into(), session.as_str().into()),
        ];
        if let Some(d) = self.duration_seconds {
            form.push(("DurationSeconds".into(), d.to_string()));
        }
        if let Some(id) = &self.external_id {
            form.push(("ExternalId".into(), id.as_str().into()));
        }
        let first = index == 0;
        if first {
            if let Some(s) = &self.source_identity {
                form.push(("SourceIdentity".into(), s.as_str().into()));
            }
        }
        let tags = self.tags.iter().filter(|t| first || !self.is_transitive(t));
        for (n, tag) in tags.enumerate() {
            form.push((format!("Tags.member.{}.Key", n + 1), tag.key.to_string()));
            form.push((format!("Tags.member.{}.Value", n + 1), tag.value().into()));
        }
        if first {
            for (n, key) in self.transitive_tag_keys.iter().enumerate() {
                form.push((
                    format!("TransitiveTagKeys.member.{}", n + 1),
                    key.to_string(),
                ));
            }
        }
        if let Some(p) = policy {
            form.push(("Policy".into(), p.into()));
        }
        for (n, arn) in policy_arns.iter().enumerate() {
            form.push((format!("PolicyArns.member.{}.arn", n + 1), arn.clone()));
        }
        form
    }

    /// What hop `index` asks of the trust policy, for a refusal's message (no values).
    fn sent(&self, index: usize) -> String {
        let first = index == 0;
        let mut sent = vec![match &self.external_id {
            Some(_) => "sts:ExternalId set (--external-id)".to_string(),
            None => "no sts:ExternalId (no --external-id)".to_string(),
        }];
        if first {
            if let Some(s) = &self.source_identity {
                sent.push(format!(
                    "sts:SourceIdentity={} (needs sts:SetSourceIdentity)",
                    s.as_str()
                ));
            }
        }
        let keys: Vec<&str> = self
            .tags
            .iter()
            .filter(|t| first || !self.is_transitive(t))
            .map(|t| t.key.as_str())
            .collect();
        if !keys.is_empty() {
            sent.push(format!(
                "aws:TagKeys=[{}] (needs sts:TagSession)",
                keys.join(", ")
            ));
        }
        sent.join("; ")
    }
}

/// Assumes every role of `chain` in turn, starting from `first` (the web identity session), and
/// returns the last session. Each hop is retried like the first exchange (throttling, 5xx,
/// network) within `retry`'s deadline; a refusal fails at once. `session` is the first
/// exchange's session name, reused for every hop; `policy` and `policy_arns` narrow the final
/// role only.
#[allow(clippy::too_many_arguments)]
pub async fn assume_chain(
    http: &reqwest::Client,
    endpoint: &StsEndpoint,
    chain: &RoleChain,
    first: AssumedRole,
    session: &SessionName,
    policy: Option<&str>,
    policy_arns: &[String],
    retry: &RetryPolicy,
) -> Result<AssumedRole, ExchangeError> {
    let mut current = first;
    let last = chain.roles.len().saturating_sub(1);
    for (index, role) in chain.roles.iter().enumerate() {
        let (policy, policy_arns) = match index == last {
            true => (policy, policy_arns),
            false => (None, &[][..]),
        };
        let form = chain.parameters(index, session, policy, policy_arns);
        tracing::debug!(endpoint = %endpoint.url, %role, caller = %current.assumed_role_arn,
            session = session.as_str(), hop = index + 1, "AWS STS: sending AssumeRole");
        let caller = current.credentials.clone();
        let (form, caller) = (&form, &caller);
        let outcome = retry
            .run(
                || async move {
                    // Throttling is shared by every exchange of the process (see `throttle`).
                    throttle::wait(&endpoint.url, throttle::MOST_BACKOFF * 2).await;
                    let answer = call_assume_role(http, endpoint, form, caller).await;
                    match &answer {
                        Err(Attempt::Fault(f)) if f.is_throttling() => {
                            throttle::throttled(&endpoint.url)
                        }
                        Ok(_) | Err(Attempt::Fault(_)) => throttle::answered(&endpoint.url),
                        Err(_) => {}
                    }
                    answer
                },
                |a: &Attempt| match a {
                    Attempt::Fault(f) => f.reaction() == Reaction::Retry,
                    Attempt::Network(_) => true,
                    _ => false,
                },
                |t: TimedOut| Attempt::Network(t.to_string()),
            )
            .await;
        let next = match outcome {
            Ok(answer) => answer,
            Err((failure, attempts)) => {
                return Err(classify(
                    failure, attempts, endpoint, chain, index, &current,
                ))
            }
        };
        current = next;
    }
    Ok(current)
}

/// The final error for hop `index` after `attempts`.
fn classify(
    failure: Attempt,
    attempts: u32,
    endpoint: &StsEndpoint,
    chain: &RoleChain,
    index: usize,
    caller: &AssumedRole,
) -> ExchangeError {
    let role = &chain.roles[index];
    match failure {
        Attempt::Fault(f) if f.reaction() == Reaction::Retry => ExchangeError::Unavailable {
            endpoint: endpoint.url.clone(),
            attempts,
            last: format!("{} ({})", f.code, f.message),
        },
        Attempt::Fault(StsFault { code, message, .. }) if code == "AccessDenied" => {
            let caller_role = caller_role_arn(&caller.assumed_role_arn);
            let hint = format!(
                "the trust policy of {role} must allow sts:AssumeRole for the AWS principal \
                 {caller_role} (or its account), and every condition must hold: a role that \
                 requires sts:ExternalId needs --external-id with the value its owner gave you; \
                 session tags need sts:TagSession and a source identity sts:SetSourceIdentity \
                 in that policy"
            );
            ExchangeError::ChainRefused {
                role: role.clone(),
                caller: caller.assumed_role_arn.as_str().into(),
                code: code.into(),
                message,
                sent: chain.sent(index).into(),
                hint: hint.into(),
            }
        }
        Attempt::Fault(StsFault { code, message, .. }) => ExchangeError::InvalidRequest {
            role: role.to_string(),
            code,
            message,
        },
        Attempt::Network(last) => ExchangeError::Unavailable {
            endpoint: endpoint.url.clone(),
            attempts,
            last,
        },
        Attempt::Unreadable {
            status,
            content_type,
            detail,
        } => ExchangeError::UnexpectedAnswer {
            endpoint: endpoint.url.clone(),
            status,
            content_type,
            detail,
        },
        Attempt::Source(e) => ExchangeError::Source(e),
    }
}

/// `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION` → `arn:aws:iam::ACCOUNT:role/NAME`, the
/// principal a trust policy names (the session ARN itself when it is not an assumed role).
fn caller_role_arn(assumed: &str) -> String {
    let parts: Vec<&str> = assumed.splitn(6, ':').collect();
    match (
        parts.as_slice(),
        parts.get(5).and_then(|r| r.strip_prefix("assumed-role/")),
    ) {
        ([_, partition, _, _, account, _], Some(rest)) => {
            let name = rest.split('/').next().unwrap_or(rest);
            format!("arn:{partition}:iam::{account}:role/{name}")
        }
        _ => assumed.to_string(),
    }
}

/// One signed `AssumeRole` call; the caller bounds it with the retry policy's timeouts.
async fn call_assume_role(
    http: &reqwest::Client,
    endpoint: &StsEndpoint,
    form: &[(String, String)],
    caller: &AwsCredentials,
) -> Result<AssumedRole, Attempt> {
    let body = serde_urlencoded::to_string(form).map_err(|e| Attempt::Unreadable {
        status: 0,
        content_type: String::new(),
        detail: format!("could not encode the request: {e}"),
    })?;
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let headers = sign_request(
        "POST",
        &endpoint.url,
        &[("content-type", content_type)],
        body.as_bytes(),
        caller,
        &endpoint.signing_region,
        "sts",
        SystemTime::now(),
    )
    .map_err(|e| Attempt::Unreadable {
        status: 0,
        content_type: String::new(),
        detail: e.to_string(),
    })?;
    let mut builder = http
        .post(&endpoint.url)
        .header("content-type", content_type);
    for (name, value) in &headers {
        builder = builder.header(name.as_str(), value.expose());
    }
    let reply = send_and_read(builder.body(body)).await;
    audit_call("AssumeRole", &reply);
    let reply = reply?;
    let status = reply.status;
    if status != 200 {
        return Err(parse_fault(&reply));
    }
    let mut role = parse_assume_role_answer(&reply.body).map_err(|detail| Attempt::Unreadable {
        status,
        content_type: reply.content_type.clone(),
        detail: truncate(&detail, 300),
    })?;
    role.credentials.expiration = role.credentials.expiration.map(|expires_at| {
        clock_skew::local_expiry(expires_at, reply.date, reply.sent_at, "AWS STS")
    });
    Ok(role)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    assume_role_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    assumed_role_user: AssumedRoleUser,
    credentials: XmlCredentials,
    packed_policy_size: Option<u32>,
}

/// Reads STS's `AssumeRole` XML answer.
pub(crate) fn parse_assume_role_answer(body: &str) -> Result<AssumedRole, String> {
    let parsed: AssumeRoleResponse =
        quick_xml::de::from_str(body).map_err(|e| format!("not an AssumeRole answer: {e}"))?;
    let r = parsed.assume_role_result;
    Ok(AssumedRole {
        credentials: AwsCredentials {
            access_key_id: r.credentials.access_key_id,
            secret_access_key: r.credentials.secret_access_key,
            session_token: Some(r.credentials.session_token),
            expiration: Some(parse_timestamp(&r.credentials.expiration)?),
        },
        assumed_role_arn: r.assumed_role_user.arn,
        assumed_role_id: r.assumed_role_user.assumed_role_id,
        subject_from_web_identity_token: None,
        audience: None,
        provider: None,
        packed_policy_size: r.packed_policy_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(name: &str, account: &str) -> RoleArn {
        RoleArn::parse(&format!("arn:aws:iam::{account}:role/{name}")).unwrap()
    }

    fn chain(tags: &[&str], transitive: &[&str]) -> RoleChain {
        RoleChain::new(
            vec![arn("entry-b", "210987654321"), arn("final", "333333333333")],
            Some(ExternalId::parse("payments-prod").unwrap()),
            Some(SourceIdentity::parse("alice").unwrap()),
            tags.iter().map(|t| SessionTag::parse(t).unwrap()).collect(),
            transitive
                .iter()
                .map(|k| TagKey::parse(k).unwrap())
                .collect(),
            Some(3600),
        )
        .unwrap()
    }

    /// The query matches botocore's serialisation of `AssumeRoleRequest` (query protocol,
    /// non-flattened lists: `Tags.member.N.Key`, `TransitiveTagKeys.member.N`).
    #[test]
    fn tags_and_transitive_keys_go_on_the_wire_as_botocore_sends_them() {
        let c = chain(&["team=payments", "Cost Center=42"], &["team"]);
        let session = SessionName::parse("deployer@build").unwrap();
        let first = c.parameters(0, &session, None, &[]);
        let get = |form: &[(String, String)], k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(&first, "Action").as_deref(), Some("AssumeRole"));
        assert_eq!(
            get(&first, "RoleArn").as_deref(),
            Some("arn:aws:iam::210987654321:role/entry-b")
        );
        assert_eq!(
            get(&first, "RoleSessionName").as_deref(),
            Some("deployer@build")
        );
        assert_eq!(get(&first, "DurationSeconds").as_deref(), Some("3600"));
        assert_eq!(get(&first, "ExternalId").as_deref(), Some("payments-prod"));
        assert_eq!(get(&first, "SourceIdentity").as_deref(), Some("alice"));
        assert_eq!(get(&first, "Tags.member.1.Key").as_deref(), Some("team"));
        assert_eq!(
            get(&first, "Tags.member.1.Value").as_deref(),
            Some("payments")
        );
        assert_eq!(
            get(&first, "Tags.member.2.Key").as_deref(),
            Some("Cost Center")
        );
        assert_eq!(get(&first, "Tags.member.2.Value").as_deref(), Some("42"));
        assert_eq!(
            get(&first, "TransitiveTagKeys.member.1").as_deref(),
            Some("team")
        );
        // The second hop inherits the transitive tag and the source identity from AWS.
        let second = c.parameters(
            1,
            &session,
            Some("{}"),
            &["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
        );
        assert_eq!(get(&second, "ExternalId").as_deref(), Some("payments-prod"));
        assert_eq!(get(&second, "SourceIdentity"), None);
        assert_eq!(
            get(&second, "Tags.member.1.Key").as_deref(),
            Some("Cost Center")
        );
        assert_eq!(get(&second, "Tags.member.2.Key"), None);
        assert_eq!(get(&second, "TransitiveTagKeys.member.1"), None);
        assert_eq!(get(&second, "Policy").as_deref(), Some("{}"));
        assert_eq!(
            get(&second, "PolicyArns.member.1.arn").as_deref(),
            Some("arn:aws:iam::aws:policy/ReadOnlyAccess")
        );
        // Form-encoded, a space in a key survives the round trip.
        let body = serde_urlencoded::to_string(&first).unwrap();
        assert!(body.contains("Tags.member.2.Key=Cost+Center"), "{body}");
    }

    #[test]
    fn the_chain_enforces_awss_rules_before_anything_is_sent() {
        let role = || vec![arn("b", "210987654321")];
        let err = RoleChain::new(role(), None, None, vec![], vec![], Some(7200)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("1 hour session limit"), "{text}");
        assert!(text.contains("--duration 7200s"), "{text}");
        assert!(RoleChain::new(role(), None, None, vec![], vec![], Some(3600)).is_ok());
        let err = RoleChain::new(
            vec![],
            Some(ExternalId::parse("xx").unwrap()),
            None,
            vec![],
            vec![],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("--external-id applies"), "{err}");
        assert!(
            RoleChain::new(vec![], None, None, vec![], vec![], Some(43200))
                .unwrap()
                .is_empty()
        );
        let tag = |t: &str| SessionTag::parse(t).unwrap();
        let err = RoleChain::new(
            role(),
            None,
            None,
            vec![tag("Dept=a"), tag("dept=b")],
            vec![],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("same key"), "{err}");
        let err = RoleChain::new(
            role(),
            None,
            None,
            vec![tag("a=b")],
            vec![TagKey::parse("c").unwrap()],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("names no --tag"), "{err}");
        let many: Vec<SessionTag> = (0..51).map(|i| tag(&format!("k{i}=v"))).collect();
        assert!(RoleChain::new(role(), None, None, many, vec![], None).is_err());
    }

    #[test]
    fn the_cache_key_names_the_chain_but_not_the_external_id() {
        assert!(RoleChain::default().cache_parts().is_empty());
        let parts = chain(&["team=payments"], &[]).cache_parts().join("|");
        assert!(
            parts.contains("arn:aws:iam::210987654321:role/entry-b"),
            "{parts}"
        );
        assert!(!parts.contains("payments-prod"), "{parts}");
        assert_ne!(
            chain(&["team=payments"], &[]).cache_parts(),
            chain(&["team=other"], &[]).cache_parts()
        );
    }

    #[test]
    fn the_caller_principal_is_its_role() {
        assert_eq!(
            caller_role_arn("arn:aws:sts::123456789012:assumed-role/gcp-entry/deployer@h"),
            "arn:aws:iam::123456789012:role/gcp-entry"
        );
        assert_eq!(
            caller_role_arn("arn:aws:iam::123456789012:user/ci"),
            "arn:aws:iam::123456789012:user/ci"
        );
    }

    #[test]
    fn parses_the_aws_documented_assume_role_answer() {
        let xml = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
  <SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764</SessionToken>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
    </Credentials>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;
        let role = parse_assume_role_answer(xml).unwrap();
        assert_eq!(
            role.assumed_role_arn,
            "arn:aws:sts::123456789012:assumed-role/demo/TestAR"
        );
        assert_eq!(role.credentials.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(role.packed_policy_size, Some(6));
        assert!(parse_assume_role_answer("<html/>").is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::secret::Secret;
    use proptest::prelude::*;

    fn xml_escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    proptest! {
        /// Any values in an AssumeRole answer read back exactly; any expiration or extra
        /// element is read or refused without showing the secret key or session token.
        #[test]
        fn any_assume_role_answer_reads_back_or_fails_without_its_secrets(
            key_id in "[A-Z0-9]{16,20}",
            secret in "[A-Za-z0-9/+]{40}",
            session in "[A-Za-z0-9/+=]{20,200}",
            arn in "arn:aws:sts::[0-9]{12}:assumed-role/[a-z]{1,10}/[a-z@.=-]{2,20}",
            expiration in prop_oneof![Just("2030-01-01T00:00:00Z".to_string()), "[0-9T:Z.-]{0,24}", any::<String>()],
            extra in prop_oneof![Just(String::new()), any::<String>().prop_map(|s| xml_escape(&s)), "<[A-Za-z]{1,8}>[0-9a-z]{0,6}</[A-Za-z]{1,8}>"],
        ) {
            let answer = format!(
                "<AssumeRoleResponse><AssumeRoleResult>{extra}<AssumedRoleUser><Arn>{arn}</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{session}</SessionToken><Expiration>{}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
                xml_escape(&expiration)
            );
            match parse_assume_role_answer(&answer) {
                Ok(role) => {
                    prop_assert_eq!(role.credentials.access_key_id.as_str(), key_id.as_str());
                    prop_assert_eq!(role.credentials.secret_access_key.expose(), secret.as_str());
                    prop_assert_eq!(role.credentials.session_token.as_ref().map(Secret::expose), Some(session.as_str()));
                    prop_assert_eq!(role.assumed_role_arn.as_str(), arn.as_str());
                    prop_assert!(role.credentials.expiration.is_some());
                    let debug = format!("{role:?}");
                    prop_assert!(!debug.contains(&secret) && !debug.contains(&session));
                }
                Err(detail) => {
                    prop_assert!(!detail.contains(&secret) && !detail.contains(&session), "{}", detail);
                    prop_assert!(expiration != "2030-01-01T00:00:00Z" || !extra.is_empty(), "{}", detail);
                }
            }
        }
    }
}
