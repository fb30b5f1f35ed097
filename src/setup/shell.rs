//! A bash script of `aws` and `gcloud` commands, for teams without infrastructure-as-code; every
//! value is single-quoted and the script stops at the first failure.

use std::fmt::Write;

use super::oidc::{OidcToAws, OidcToGcp, Outbound, OUTBOUND_POLICY_NAME};
use super::{shell_quote as sq, AwsToGcp, GcpToAws, ATTRIBUTE_MAPPING, WORKLOAD_IDENTITY_USER};

const PREAMBLE: &str = "#!/usr/bin/env bash\nset -euo pipefail\n";

/// The service account (created, or checked when its id is given), the role (trust policy from
/// a heredoc), its attachments.
pub fn gcp_to_aws(s: &GcpToAws) -> String {
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
    let _ = writeln!(
        out,
        "\necho 'Then, on GCP:'\necho {}",
        sq(&format!("  {}", s.keyless_command()))
    );
    out
}

/// The pool, the AWS provider, the service account and its bindings.
pub fn aws_to_gcp(s: &AwsToGcp) -> String {
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
pub fn oidc_to_aws(s: &OidcToAws) -> String {
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
    let _ = writeln!(
        out,
        "\necho 'Then, in the workload:'\necho {}",
        sq(&format!("  {}", s.keyless_command()))
    );
    out
}

/// SOURCE → Google: the pool, the OIDC provider, the service account and its bindings (and,
/// for `aws-oidc`, the caller's side).
pub fn oidc_to_gcp(s: &OidcToGcp) -> String {
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
