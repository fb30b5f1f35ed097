//! Terraform (HCL): the trust policy as an `aws_iam_policy_document`, so `terraform plan` shows
//! each condition on its own line and reviewers see what is pinned.

use std::fmt::Write;

use super::{quoted, AwsToGcp, GcpToAws, PolicyValue, ATTRIBUTE_MAPPING, WORKLOAD_IDENTITY_USER};

fn q(value: &str) -> String {
    quoted(value, true)
}

/// The AWS role, its trust policy and attachments, and the Google service account: created
/// here (the conditions refer to its `unique_id`), or, when it exists and its id is given, read
/// with a `data` source that checks the id, so a re-created account with the same email fails
/// the plan instead of being trusted under the old id.
pub fn gcp_to_aws(s: &GcpToAws) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# keyless setup gcp-to-aws: {sa} may assume {arn}.\n\
         # AWS compares the service account's numeric id (aud and sub), not its email.\n",
        sa = s.service_account,
        arn = s.role_arn(),
    );
    match &s.service_account_id {
        None => {
            let _ = writeln!(
                out,
                "resource \"google_service_account\" \"keyless\" {{\n  project      = {}\n  account_id   = {}\n  display_name = {}\n}}\n",
                q(s.service_account_project()),
                q(s.service_account_name()),
                q(&format!("keyless: assumes AWS role {}", s.role_name)),
            );
        }
        Some(id) => {
            let _ = writeln!(
                out,
                "# The account exists: read it, and stop if its id is not the one reviewed here (a\n\
                 # deleted and re-created account with the same email is another identity to AWS).\n\
                 data \"google_service_account\" \"keyless\" {{\n  project    = {}\n  account_id = {}\n\n  \
                 lifecycle {{\n    postcondition {{\n      condition     = self.unique_id == {}\n      error_message = {}\n    }}\n  }}\n}}\n",
                q(s.service_account_project()),
                q(&s.service_account),
                q(id),
                q(&format!(
                    "{} no longer has the numeric id {id}: review the trust policy before updating --service-account-id",
                    s.service_account
                )),
            );
        }
    }
    out.push_str("data \"aws_iam_policy_document\" \"keyless_trust\" {\n  statement {\n");
    out.push_str("    effect  = \"Allow\"\n    actions = [\"sts:AssumeRoleWithWebIdentity\"]\n\n");
    out.push_str(
        "    principals {\n      type        = \"Federated\"\n      identifiers = [\"accounts.google.com\"]\n    }\n",
    );
    for (variable, value) in s.conditions() {
        let value = match value {
            PolicyValue::Literal(v) => q(v),
            PolicyValue::CreatedServiceAccountId => {
                "google_service_account.keyless.unique_id".to_string()
            }
        };
        let _ = write!(
            out,
            "\n    condition {{\n      test     = \"StringEquals\"\n      variable = {}\n      values   = [{value}]\n    }}\n",
            q(variable),
        );
    }
    out.push_str("  }\n}\n\n");
    let _ = writeln!(
        out,
        "resource \"aws_iam_role\" \"keyless\" {{\n  name                 = {}\n  assume_role_policy   = data.aws_iam_policy_document.keyless_trust.json\n  max_session_duration = {}\n}}\n",
        q(&s.role_name),
        s.max_session_duration
    );
    for (i, arn) in s.policy_arns.iter().enumerate() {
        let _ = writeln!(
            out,
            "resource \"aws_iam_role_policy_attachment\" \"keyless_{i}\" {{\n  role       = aws_iam_role.keyless.name\n  policy_arn = {}\n}}\n",
            q(arn)
        );
    }
    let _ = writeln!(
        out,
        "output \"role_arn\" {{\n  description = {}\n  value       = aws_iam_role.keyless.arn\n}}",
        q(&format!("Then, on GCP: {}", s.keyless_command()))
    );
    out
}

/// The pool, the AWS provider, the service account and its bindings.
pub fn aws_to_gcp(s: &AwsToGcp) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# keyless setup aws-to-gcp: sessions of the AWS role {role} may impersonate {sa}.\n",
        role = s.aws_role,
        sa = s.service_account
    );
    let _ = writeln!(
        out,
        "resource \"google_iam_workload_identity_pool\" \"keyless\" {{\n  project                   = {}\n  workload_identity_pool_id = {}\n}}\n",
        q(&s.project_id),
        q(&s.pool)
    );
    let _ = writeln!(
        out,
        "resource \"google_iam_workload_identity_pool_provider\" \"keyless\" {{\n  project                            = {}\n  workload_identity_pool_id          = google_iam_workload_identity_pool.keyless.workload_identity_pool_id\n  workload_identity_pool_provider_id = {}\n\n  aws {{\n    account_id = {}\n  }}\n\n  attribute_mapping = {{",
        q(&s.project_id),
        q(&s.provider),
        q(&s.aws_account)
    );
    for (key, value) in ATTRIBUTE_MAPPING {
        let width = ATTRIBUTE_MAPPING
            .iter()
            .map(|(k, _)| k.len() + 2)
            .max()
            .unwrap_or(0);
        let _ = writeln!(out, "    {:width$} = {}", q(key), q(value));
    }
    let _ = writeln!(
        out,
        "  }}\n  attribute_condition = {}\n}}\n",
        q(&s.attribute_condition())
    );
    let _ = writeln!(
        out,
        "resource \"google_service_account\" \"keyless\" {{\n  project      = {}\n  account_id   = {}\n  display_name = {}\n}}\n",
        q(&s.project_id),
        q(s.service_account_name()),
        q(&format!("keyless: impersonated by AWS role {}", s.aws_role))
    );
    let _ = writeln!(
        out,
        "resource \"google_service_account_iam_member\" \"keyless_workload_identity_user\" {{\n  service_account_id = google_service_account.keyless.name\n  role               = {}\n  member             = {}\n\n  depends_on = [google_iam_workload_identity_pool_provider.keyless]\n}}\n",
        q(WORKLOAD_IDENTITY_USER),
        q(&s.principal_set())
    );
    if let Some(role) = &s.role {
        let _ = writeln!(
            out,
            "resource \"google_project_iam_member\" \"keyless_role\" {{\n  project = {}\n  role    = {}\n  member  = \"serviceAccount:${{google_service_account.keyless.email}}\"\n}}\n",
            q(&s.project_id),
            q(role)
        );
    }
    let _ = writeln!(
        out,
        "# Then, on AWS:\n#   {}\noutput \"keyless_command\" {{\n  value = {}\n}}",
        s.keyless_command(),
        q(&s.keyless_command())
    );
    out
}
