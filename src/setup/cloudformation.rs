//! CloudFormation (YAML): the AWS half only, since CloudFormation cannot create Google
//! resources; the Google half is a comment with the gcloud command, so nothing is forgotten.
//! Without `--service-account-id` the account is created outside the stack, so its numeric id
//! is a stack parameter given at deploy time, never a literal guessed here.

use std::fmt::Write;

use super::audit::{Audit, GoogleAuditConfig, Trail, READ_WRITE_TYPE, TRAIL_NAME};
use super::oidc::{OidcToAws, OidcToGcp, Outbound, OUTBOUND_POLICY_NAME};
use super::{quoted, GcpToAws, PolicyValue};

/// The stack parameter that carries the id of a service account created outside the stack.
const ID_PARAMETER: &str = "ServiceAccountId";

fn q(value: &str) -> String {
    // A double-quoted YAML scalar accepts the same escapes as JSON for these characters.
    quoted(value, false)
}

/// The role with its trust policy, attachments and session limit; the ARN as an output.
pub fn gcp_to_aws(s: &GcpToAws, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let (mut google_side, parameters) = if s.creates_service_account() {
        (
            format!(
                "# The Google side (not expressible in CloudFormation): create the account, then\n\
                 # deploy with its numeric id as the {ID_PARAMETER} parameter:\n\
                 #   gcloud iam service-accounts create {name} --project {project}\n\
                 #   aws cloudformation deploy --template-file TEMPLATE --stack-name STACK \\\n\
                 #     --capabilities CAPABILITY_NAMED_IAM --parameter-overrides \\\n\
                 #     {ID_PARAMETER}=\"$(gcloud iam service-accounts describe {sa} --format='value(uniqueId)')\"\n",
                name = s.service_account_name(),
                project = s.service_account_project(),
                sa = s.service_account,
            ),
            format!(
                "Parameters:\n  {ID_PARAMETER}:\n    Type: String\n    AllowedPattern: \"^[0-9]+$\"\n    \
                 Description: {}\n",
                q(&format!(
                    "The numeric unique id of {} (gcloud iam service-accounts describe EMAIL --format='value(uniqueId)')",
                    s.service_account
                ))
            ),
        )
    } else {
        (
            "# The Google service account must exist with the numeric id pinned below.\n".into(),
            String::new(),
        )
    };
    if let Some(g) = audit.and_then(|a| a.google.as_ref()) {
        google_side.push_str(&google_audit_comment(g));
    }
    let _ = writeln!(
        out,
        "# keyless setup gcp-to-aws: {sa} may assume {arn}.\n\
         #\n\
         {google_side}\
         # Then, on GCP:\n\
         #   {cmd}\n\
         AWSTemplateFormatVersion: \"2010-09-09\"\n\
         Description: {desc}\n\
         {parameters}\
         Resources:\n  \
           KeylessRole:\n    \
             Type: AWS::IAM::Role\n    \
             Properties:\n      \
               RoleName: {role}\n      \
               MaxSessionDuration: {max}\n      \
               AssumeRolePolicyDocument:\n        \
                 Version: \"2012-10-17\"\n        \
                 Statement:\n          \
                   - Effect: Allow\n            \
                     Principal:\n              \
                       Federated: accounts.google.com\n            \
                     Action: sts:AssumeRoleWithWebIdentity\n            \
                     Condition:\n              \
                       StringEquals:",
        sa = s.service_account,
        arn = s.role_arn(),
        cmd = s.keyless_command(),
        desc = q(&format!(
            "keyless: the Google service account {} may assume this role",
            s.service_account
        )),
        role = q(&s.role_name),
        max = s.max_session_duration,
    );
    for (key, value) in s.conditions() {
        let value = match value {
            PolicyValue::Literal(v) => q(v),
            PolicyValue::CreatedServiceAccountId => format!("!Ref {ID_PARAMETER}"),
        };
        let _ = writeln!(out, "                {}: {value}", q(key));
    }
    if !s.policy_arns.is_empty() {
        out.push_str("      ManagedPolicyArns:\n");
        for arn in &s.policy_arns {
            let _ = writeln!(out, "        - {}", q(arn));
        }
    }
    if let Some(t) = audit.and_then(|a| a.trail.as_ref()) {
        trail(&mut out, t);
    }
    out.push_str(
        "Outputs:\n  RoleArn:\n    Description: The role keyless assumes (--role-arn)\n    Value: !GetAtt KeylessRole.Arn\n",
    );
    out
}

/// A JSON document as a YAML block at `indent` (JSON is YAML; pretty JSON keeps it readable).
fn block(value: &serde_json::Value, indent: &str) -> String {
    super::oidc::pretty(value)
        .lines()
        .map(|l| format!("{indent}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The caller's inline policy for `aws-oidc` (same stack: the caller's account), with the enable
/// call CloudFormation cannot make as a comment.
fn outbound(out: &mut String, o: &Outbound) {
    let _ = writeln!(
        out,
        "  # The caller's role may mint tokens for this audience only. Outbound identity federation\n  \
         # must be on, once per account (not a CloudFormation resource):\n  \
         #   aws iam enable-outbound-web-identity-federation   (issuer {issuer})\n  \
         KeylessGetWebIdentityToken:\n    \
           Type: AWS::IAM::RolePolicy\n    \
           Properties:\n      \
             RoleName: {role}\n      \
             PolicyName: {name}\n      \
             PolicyDocument:\n{policy}",
        issuer = o.issuer,
        role = q(&o.role),
        name = q(OUTBOUND_POLICY_NAME),
        policy = block(&o.policy(), "        "),
    );
}

/// SOURCE → AWS: the IAM OIDC provider and the role whose trust policy names it (`!Ref` of the
/// provider is its ARN), attachments.
pub fn oidc_to_aws(s: &OidcToAws, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# keyless setup {source}-to-aws: {who} may assume {arn}.\n\
         {notes}\
         # One IAM OIDC provider per issuer and account: if {provider} exists, remove\n\
         # KeylessOidcProvider and put its ARN in place of !Ref KeylessOidcProvider.\n\
         # Then, in the workload:\n\
         #   {cmd}\n\
         AWSTemplateFormatVersion: \"2010-09-09\"\n\
         Description: {desc}\n\
         Resources:",
        source = s.source.name(),
        who = s.source.describe(),
        arn = s.role_arn(),
        provider = s.provider_arn(),
        notes = s.source.workload_notes(&s.audience),
        cmd = s.keyless_command(),
        desc = q(&format!(
            "keyless: {} may assume this role",
            s.source.describe()
        )),
    );
    let _ = writeln!(
        out,
        "  KeylessOidcProvider:\n    \
           Type: AWS::IAM::OIDCProvider\n    \
           Properties:\n      \
             Url: {url}\n      \
             ClientIdList:\n        \
               - {aud}\n  \
         KeylessRole:\n    \
           Type: AWS::IAM::Role\n    \
           Properties:\n      \
             RoleName: {role}\n      \
             MaxSessionDuration: {max}\n      \
             AssumeRolePolicyDocument:\n        \
               Version: \"2012-10-17\"\n        \
               Statement:\n          \
                 - Effect: Allow\n            \
                   Principal:\n              \
                     Federated: !Ref KeylessOidcProvider\n            \
                   Action: sts:AssumeRoleWithWebIdentity\n            \
                   Condition:\n              \
                     StringEquals:",
        url = q(s.source.issuer()),
        aud = q(&s.audience),
        role = q(&s.role_name),
        max = s.max_session_duration,
    );
    for (key, value) in s.conditions() {
        let _ = writeln!(out, "                {}: {}", q(&key), q(&value));
    }
    if !s.policy_arns.is_empty() {
        out.push_str("      ManagedPolicyArns:\n");
        for arn in &s.policy_arns {
            let _ = writeln!(out, "        - {}", q(arn));
        }
    }
    if let Some(t) = audit.and_then(|a| a.trail.as_ref()) {
        trail(&mut out, t);
    }
    out.push_str(
        "Outputs:\n  RoleArn:\n    Description: The role keyless assumes (--role-arn)\n    Value: !GetAtt KeylessRole.Arn\n",
    );
    out
}

/// `aws-oidc` → Google: the AWS half only (the caller's policy); the Google half is the gcloud
/// script as a comment, since CloudFormation cannot create Google resources.
pub fn oidc_to_gcp(s: &OidcToGcp, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let mut google = commented(&super::shell::oidc_to_gcp_google_side(s));
    if let Some(g) = audit.and_then(|a| a.google.as_ref()) {
        google.push_str(&google_audit_comment(g));
    }
    let _ = writeln!(
        out,
        "# keyless setup {source}-to-gcp: {who} may impersonate {sa}.\n\
         {notes}\
         # The Google side (not expressible in CloudFormation):\n\
         {google}\
         # Then, in the workload:\n\
         #   {cmd}\n\
         AWSTemplateFormatVersion: \"2010-09-09\"\n\
         Description: {desc}\n\
         Resources:",
        source = s.source.name(),
        who = s.source.describe(),
        sa = s.service_account,
        notes = s.source.workload_notes(&s.token_audience()),
        cmd = s.keyless_command(),
        desc = q(&format!(
            "keyless: {} may mint tokens for Google",
            s.source.describe()
        )),
    );
    if let Some(o) = s.outbound() {
        outbound(&mut out, &o);
    }
    if let Some(t) = audit.and_then(|a| a.trail.as_ref()) {
        trail(&mut out, t);
    }
    out
}

/// Shell lines as an indented comment block (blank lines stay bare `#`).
fn commented(script: &str) -> String {
    script
        .lines()
        .map(|l| format!("#   {l}\n").replace("#   \n", "#\n"))
        .collect()
}

/// The project's audit config, which CloudFormation cannot set: the gcloud and jq steps.
fn google_audit_comment(g: &GoogleAuditConfig) -> String {
    format!(
        "#\n# --audit, the Google side (not expressible in CloudFormation):\n{}",
        commented(&super::shell::google_audit(g))
    )
}

/// `--audit`: the bucket (kept when the stack goes: it holds the audit trail), the policy
/// CloudTrail requires, then the trail, in the stack's region.
fn trail(out: &mut String, t: &Trail) {
    let arn = serde_json::json!({"Fn::Sub": t.arn_in("${AWS::Region}")});
    let notes: String = t.notes().iter().map(|l| format!("  # {l}\n")).collect();
    let _ = writeln!(
        out,
        "{notes}  \
         KeylessAuditBucket:\n    \
           Type: AWS::S3::Bucket\n    \
           DeletionPolicy: Retain\n    \
           UpdateReplacePolicy: Retain\n    \
           Properties:\n      \
             BucketName: {bucket}\n      \
             PublicAccessBlockConfiguration:\n        \
               BlockPublicAcls: true\n        \
               BlockPublicPolicy: true\n        \
               IgnorePublicAcls: true\n        \
               RestrictPublicBuckets: true\n  \
         KeylessAuditBucketPolicy:\n    \
           Type: AWS::S3::BucketPolicy\n    \
           Properties:\n      \
             Bucket: !Ref KeylessAuditBucket\n      \
             PolicyDocument:\n{policy}\n  \
         KeylessAuditTrail:\n    \
           Type: AWS::CloudTrail::Trail\n    \
           DependsOn: KeylessAuditBucketPolicy\n    \
           Properties:\n      \
             TrailName: {name}\n      \
             S3BucketName: !Ref KeylessAuditBucket\n      \
             IsLogging: true\n      \
             IsMultiRegionTrail: {multi}\n      \
             IncludeGlobalServiceEvents: {global}\n      \
             EnableLogFileValidation: {validation}\n      \
             EventSelectors:\n        \
               - ReadWriteType: {rw}\n          \
                 IncludeManagementEvents: true",
        bucket = q(&t.bucket()),
        policy = block(&t.bucket_policy_with(arn), "        "),
        name = q(TRAIL_NAME),
        multi = Trail::MULTI_REGION,
        global = Trail::INCLUDE_GLOBAL_SERVICE_EVENTS,
        validation = Trail::LOG_FILE_VALIDATION,
        rw = q(READ_WRITE_TYPE),
    );
}
