//! A bash script of `aws` and `gcloud` commands, for teams without infrastructure-as-code; every
//! value is single-quoted and the script stops at the first failure.

use std::fmt::Write;

use super::audit::{Audit, GoogleAuditConfig, Trail, READ_WRITE_TYPE, TRAIL_NAME};
use super::oidc::{OidcToAws, OidcToGcp, Outbound, OUTBOUND_POLICY_NAME};
use super::{shell_quote as sq, AwsToGcp, GcpToAws, ATTRIBUTE_MAPPING, WORKLOAD_IDENTITY_USER};

const PREAMBLE: &str = "#!/usr/bin/env bash\nset -euo pipefail\n";

/// The service account (created, or checked when its id is given), the role (trust policy from
/// a heredoc), its attachments.
pub fn gcp_to_aws(s: &GcpToAws, audit: Option<&Audit>) -> String {
    let mut out = String::from(PREAMBLE);
    let _ = writeln!(
        out,
        "# keyless setup gcp-to-aws: {sa} may assume {arn}.\n",
        sa = s.service_account,
        arn = s.role_arn()
    );
    let describe = format!(
        "service_account_id=\"$(gcloud iam service-accounts describe {} --project {} --format='value(uniqueId)')\"",
        sq(&s.service_account),
        sq(s.service_account_project())
    );
    let heredoc = match &s.service_account_id {
        // The id exists once the account does: read it back. The heredoc expands only that
        // variable: the policy's other values are validated to hold no `$`, `` ` `` or `\`.
        None => {
            let _ = writeln!(
                out,
                "gcloud iam service-accounts create {} --project {}\n{describe}\n",
                sq(s.service_account_name()),
                sq(s.service_account_project())
            );
            "EOF"
        }
        // The account exists: stop unless it still has the id this policy pins (a deleted and
        // re-created account with the same email is another identity to AWS).
        Some(id) => {
            let _ = writeln!(
                out,
                "# The service account exists; stop unless it has the numeric id pinned below.\n\
                 {describe}\n\
                 if [ \"$service_account_id\" != {id} ]; then\n  \
                   echo {message}\" $service_account_id\" >&2\n  \
                   exit 1\n\
                 fi\n",
                id = sq(id),
                message = sq(&format!(
                    "{} does not have the numeric id {id} (review the trust policy before changing --service-account-id); it has:",
                    s.service_account
                )),
            );
            "'EOF'"
        }
    };
    let _ = writeln!(
        out,
        "trust_policy=\"$(mktemp)\"\ntrap 'rm -f \"$trust_policy\"' EXIT\ncat >\"$trust_policy\" <<{heredoc}\n{}\nEOF\n",
        s.trust_policy_pretty("\"${service_account_id}\"")
    );
    let _ = writeln!(
        out,
        "aws iam create-role \\\n  --role-name {} \\\n  --max-session-duration {} \\\n  --assume-role-policy-document \"file://$trust_policy\"\n",
        sq(&s.role_name),
        sq(&s.max_session_duration.to_string())
    );
    for arn in &s.policy_arns {
        let _ = writeln!(
            out,
            "aws iam attach-role-policy --role-name {} --policy-arn {}",
            sq(&s.role_name),
            sq(arn)
        );
    }
    audit_section(&mut out, audit);
    let _ = writeln!(
        out,
        "\necho 'Then, on GCP:'\necho {}",
        sq(&format!("  {}", s.keyless_command()))
    );
    out
}

/// The pool, the AWS provider, the service account and its bindings.
pub fn aws_to_gcp(s: &AwsToGcp, audit: Option<&Audit>) -> String {
    let mut out = String::from(PREAMBLE);
    let _ = writeln!(
        out,
        "# keyless setup aws-to-gcp: sessions of the AWS role {role} may impersonate {sa}.\n",
        role = s.aws_role,
        sa = s.service_account
    );
    let mapping = ATTRIBUTE_MAPPING
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    // gcloud splits the mapping on commas unless told another delimiter (`^;^`).
    let mapping = if mapping.iter().any(|m| m.contains(',')) {
        format!("^;^{}", mapping.join(";"))
    } else {
        mapping.join(",")
    };
    let _ = writeln!(
        out,
        "gcloud iam workload-identity-pools create {pool} \\\n  --project {project} --location global\n\n\
         gcloud iam workload-identity-pools providers create-aws {provider} \\\n  --project {project} --location global \\\n  --workload-identity-pool {pool} \\\n  --account-id {account} \\\n  --attribute-mapping {mapping} \\\n  --attribute-condition {condition}\n\n\
         gcloud iam service-accounts create {name} --project {project}\n\n\
         gcloud iam service-accounts add-iam-policy-binding {sa} \\\n  --project {project} \\\n  --role {wiu} \\\n  --member {member}",
        pool = sq(&s.pool),
        project = sq(&s.project_id),
        provider = sq(&s.provider),
        account = sq(&s.aws_account),
        mapping = sq(&mapping),
        condition = sq(&s.attribute_condition()),
        name = sq(s.service_account_name()),
        sa = sq(&s.service_account),
        wiu = sq(WORKLOAD_IDENTITY_USER),
        member = sq(&s.principal_set()),
    );
    if let Some(role) = &s.role {
        let _ = writeln!(
            out,
            "\ngcloud projects add-iam-policy-binding {} \\\n  --member {} \\\n  --role {}",
            sq(&s.project_id),
            sq(&format!("serviceAccount:{}", s.service_account)),
            sq(role)
        );
    }
    audit_section(&mut out, audit);
    let _ = writeln!(
        out,
        "\necho 'Then, on AWS:'\necho {}",
        sq(&format!("  {}", s.keyless_command()))
    );
    out
}

/// gcloud splits the mapping on commas unless told another delimiter (`^;^`).
fn gcloud_mapping(pairs: &[(&str, &str)]) -> String {
    let mapping = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    if mapping.iter().any(|m| m.contains(',')) {
        format!("^;^{}", mapping.join(";"))
    } else {
        mapping.join(",")
    }
}

/// The caller's account: outbound federation on (or already on, with the expected issuer), and
/// the role's inline policy for the one audience. Documents go to `$work`.
fn outbound(out: &mut String, o: &Outbound) {
    let _ = writeln!(
        out,
        "# In the caller's account {account} (run with credentials for it): outbound identity\n\
         # federation, once per account, and a role that mints tokens for this audience only.\n\
         issuer=\"$(aws iam get-outbound-web-identity-federation-info --query IssuerIdentifier --output text 2>/dev/null)\" \\\n  \
           || issuer=\"$(aws iam enable-outbound-web-identity-federation --query IssuerIdentifier --output text)\"\n\
         if [ \"$issuer\" != {issuer} ]; then\n  \
           echo {message}\" $issuer\" >&2\n  \
           exit 1\n\
         fi\n\
         cat >\"$work/outbound-policy.json\" <<'EOF'\n{policy}\nEOF\n\
         aws iam put-role-policy \\\n  --role-name {role} \\\n  --policy-name {name} \\\n  --policy-document \"file://$work/outbound-policy.json\"\n",
        account = o.account,
        issuer = sq(&o.issuer),
        message = sq(&format!(
            "the account's outbound issuer is not {} (check --aws-issuer and --aws-account); it is:",
            o.issuer
        )),
        policy = o.policy_pretty(),
        role = sq(&o.role),
        name = sq(OUTBOUND_POLICY_NAME),
    );
}

const WORKDIR: &str = "work=\"$(mktemp -d)\"\ntrap 'rm -rf \"$work\"' EXIT\n";

/// SOURCE → AWS: the IAM OIDC provider (created, or given the audience when it exists), the
/// role with its trust policy, its attachments.
pub fn oidc_to_aws(s: &OidcToAws, audit: Option<&Audit>) -> String {
    let mut out = String::from(PREAMBLE);
    let _ = writeln!(
        out,
        "# keyless setup {}-to-aws: {} may assume {}.\n{}\n{WORKDIR}",
        s.source.name(),
        s.source.describe(),
        s.role_arn(),
        s.source.workload_notes(&s.audience),
    );
    let _ = writeln!(
        out,
        "# The issuer's IAM OIDC provider (one per issuer and account): create it, or make sure the\n\
         # existing one accepts the audience.\n\
         provider_arn={arn}\n\
         if aws iam get-open-id-connect-provider --open-id-connect-provider-arn \"$provider_arn\" >/dev/null 2>&1; then\n  \
           aws iam add-client-id-to-open-id-connect-provider \\\n    --open-id-connect-provider-arn \"$provider_arn\" --client-id {aud}\n\
         else\n  \
           aws iam create-open-id-connect-provider --url {url} --client-id-list {aud}\n\
         fi\n\n\
         cat >\"$work/trust-policy.json\" <<'EOF'\n{policy}\nEOF\n\n\
         aws iam create-role \\\n  --role-name {role} \\\n  --max-session-duration {max} \\\n  --assume-role-policy-document \"file://$work/trust-policy.json\"\n",
        arn = sq(&s.provider_arn()),
        aud = sq(&s.audience),
        url = sq(s.source.issuer()),
        policy = s.trust_policy_pretty(),
        role = sq(&s.role_name),
        max = sq(&s.max_session_duration.to_string()),
    );
    for arn in &s.policy_arns {
        let _ = writeln!(
            out,
            "aws iam attach-role-policy --role-name {} --policy-arn {}",
            sq(&s.role_name),
            sq(arn)
        );
    }
    audit_section(&mut out, audit);
    let _ = writeln!(
        out,
        "\necho 'Then, in the workload:'\necho {}",
        sq(&format!("  {}", s.keyless_command()))
    );
    out
}

/// SOURCE → Google: the pool, the OIDC provider, the service account and its bindings (and,
/// for `aws-oidc`, the caller's side).
pub fn oidc_to_gcp(s: &OidcToGcp, audit: Option<&Audit>) -> String {
    let mut out = String::from(PREAMBLE);
    let _ = writeln!(
        out,
        "# keyless setup {}-to-gcp: {} may impersonate {}.\n{}",
        s.source.name(),
        s.source.describe(),
        s.service_account,
        s.source.workload_notes(&s.token_audience()),
    );
    if let Some(o) = s.outbound() {
        out.push_str(WORKDIR);
        outbound(&mut out, &o);
        out.push('\n');
    }
    out.push_str(&oidc_to_gcp_google_side(s));
    audit_section(&mut out, audit);
    let _ = writeln!(
        out,
        "\necho 'Then, in the workload:'\necho {}",
        sq(&format!("  {}", s.keyless_command()))
    );
    out
}

/// The gcloud commands of SOURCE → Google (also shown by CloudFormation, which cannot run them).
pub(crate) fn oidc_to_gcp_google_side(s: &OidcToGcp) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gcloud iam workload-identity-pools create {pool} \\\n  --project {project} --location global\n\n\
         gcloud iam workload-identity-pools providers create-oidc {provider} \\\n  --project {project} --location global \\\n  --workload-identity-pool {pool} \\\n  --issuer-uri {issuer} \\\n  --allowed-audiences {audience} \\\n  --attribute-mapping {mapping} \\\n  --attribute-condition {condition}\n\n\
         gcloud iam service-accounts create {name} --project {project}\n\n\
         gcloud iam service-accounts add-iam-policy-binding {sa} \\\n  --project {project} \\\n  --role {wiu} \\\n  --member {member}",
        pool = sq(&s.pool),
        project = sq(&s.project_id),
        provider = sq(&s.provider),
        issuer = sq(s.source.issuer()),
        audience = sq(&s.token_audience()),
        mapping = sq(&gcloud_mapping(&s.source.attribute_mapping())),
        condition = sq(&s.source.attribute_condition()),
        name = sq(s.service_account_name()),
        sa = sq(&s.service_account),
        wiu = sq(WORKLOAD_IDENTITY_USER),
        member = sq(&s.principal()),
    );
    if let Some(role) = &s.role {
        let _ = writeln!(
            out,
            "\ngcloud projects add-iam-policy-binding {} \\\n  --member {} \\\n  --role {}",
            sq(&s.project_id),
            sq(&format!("serviceAccount:{}", s.service_account)),
            sq(role)
        );
    }
    out
}

/// `--audit`, before the closing hint: the trail, then the project's audit config.
fn audit_section(out: &mut String, audit: Option<&Audit>) {
    let Some(audit) = audit else {
        return;
    };
    if let Some(t) = &audit.trail {
        out.push('\n');
        out.push_str(&trail(t));
    }
    if let Some(g) = &audit.google {
        out.push('\n');
        out.push_str(&google_audit(g));
    }
}

fn comments(lines: &[String]) -> String {
    lines.iter().map(|l| format!("# {l}\n")).collect()
}

/// The trail in the region the AWS CLI uses (its home region), its bucket first: CloudTrail
/// checks the bucket policy when the trail is created, and `create-trail` does not start it.
fn trail(t: &Trail) -> String {
    let bucket = sq(&t.bucket());
    let name = sq(TRAIL_NAME);
    let flag = |on: bool, flag: &str| {
        if on {
            format!("--{flag}")
        } else {
            format!("--no-{flag}")
        }
    };
    format!(
        "{notes}# Run with credentials for account {account}.\n\
         trail_region=\"${{AWS_REGION:-${{AWS_DEFAULT_REGION:-$(aws configure get region || true)}}}}\"\n\
         if [ -z \"$trail_region\" ]; then\n  \
           echo 'the trail needs a home region: set AWS_REGION' >&2\n  \
           exit 1\n\
         fi\n\
         if [ \"$trail_region\" = us-east-1 ]; then\n  \
           aws s3api create-bucket --bucket {bucket} --region \"$trail_region\"\n\
         else\n  \
           aws s3api create-bucket --bucket {bucket} --region \"$trail_region\" \\\n    \
             --create-bucket-configuration \"LocationConstraint=$trail_region\"\n\
         fi\n\
         aws s3api put-public-access-block --bucket {bucket} \\\n  \
           --public-access-block-configuration {block}\n\
         (\n  \
           audit_work=\"$(mktemp -d)\"\n  \
           trap 'rm -rf \"$audit_work\"' EXIT\n  \
           cat >\"$audit_work/bucket-policy.json\" <<EOF\n{policy}\nEOF\n  \
           aws s3api put-bucket-policy --bucket {bucket} \\\n    \
             --policy \"file://$audit_work/bucket-policy.json\"\n\
         )\n\
         aws cloudtrail create-trail --name {name} --s3-bucket-name {bucket} \\\n  \
           {multi} {global} {validation} \\\n  \
           --region \"$trail_region\"\n\
         aws cloudtrail put-event-selectors --trail-name {name} --region \"$trail_region\" \\\n  \
           --event-selectors {selectors}\n\
         aws cloudtrail start-logging --name {name} --region \"$trail_region\"\n",
        notes = comments(&t.notes()),
        account = t.account,
        block = sq("BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true"),
        policy = t.bucket_policy_pretty("${trail_region}"),
        multi = flag(Trail::MULTI_REGION, "is-multi-region-trail"),
        global = flag(Trail::INCLUDE_GLOBAL_SERVICE_EVENTS, "include-global-service-events"),
        validation = flag(Trail::LOG_FILE_VALIDATION, "enable-log-file-validation"),
        selectors = sq(&serde_json::json!([{"ReadWriteType": READ_WRITE_TYPE, "IncludeManagementEvents": true}]).to_string()),
    )
}

/// The project's IAM policy read, the audit configs merged in with jq (nothing else changes;
/// the etag makes a concurrent change fail rather than be lost), written back. Also shown by
/// CloudFormation, which cannot run it.
pub(crate) fn google_audit(g: &GoogleAuditConfig) -> String {
    format!(
        "{notes}(\n  \
           command -v jq >/dev/null || {{ echo 'merging the audit config needs jq' >&2; exit 1; }}\n  \
           audit_work=\"$(mktemp -d)\"\n  \
           trap 'rm -rf \"$audit_work\"' EXIT\n  \
           gcloud projects get-iam-policy {project} --format json >\"$audit_work/policy.json\"\n  \
           jq --argjson wanted {wanted} \\\n    \
             {merge} \\\n    \
             \"$audit_work/policy.json\" >\"$audit_work/audited.json\"\n  \
           gcloud projects set-iam-policy {project} \"$audit_work/audited.json\"\n\
         )\n",
        notes = comments(&g.notes()),
        project = sq(&g.project_id),
        wanted = sq(&g.audit_configs().to_string()),
        merge = sq(GoogleAuditConfig::JQ_MERGE),
    )
}
