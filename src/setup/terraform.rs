//! Terraform (HCL): the trust policy as an `aws_iam_policy_document`, so `terraform plan` shows
//! each condition on its own line and reviewers see what is pinned.

use std::fmt::Write;

use super::audit::{Audit, GoogleAuditConfig, Trail, LOG_TYPES, READ_WRITE_TYPE, TRAIL_NAME};
use super::oidc::{OidcToAws, OidcToGcp, Outbound, OUTBOUND_POLICY_NAME};
use super::{quoted, AwsToGcp, GcpToAws, PolicyValue, ATTRIBUTE_MAPPING, WORKLOAD_IDENTITY_USER};

fn q(value: &str) -> String {
    quoted(value, true)
}

/// The AWS role, its trust policy and attachments, and the Google service account: created
/// here (the conditions refer to its `unique_id`), or, when it exists and its id is given, read
/// with a `data` source that checks the id, so a re-created account with the same email fails
/// the plan instead of being trusted under the old id.
pub fn gcp_to_aws(s: &GcpToAws, audit: Option<&Audit>) -> String {
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
    audit_section(&mut out, audit);
    out
}

/// The pool, the AWS provider, the service account and its bindings.
pub fn aws_to_gcp(s: &AwsToGcp, audit: Option<&Audit>) -> String {
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
    audit_section(&mut out, audit);
    out
}

/// The caller's account side of AWS outbound federation: the enable call as a comment (not a
/// Terraform resource) and the role's inline policy for the one audience.
fn outbound(out: &mut String, o: &Outbound) {
    let _ = writeln!(
        out,
        "# In the caller's account {account}: outbound identity federation, once per account\n\
         # (not a Terraform resource): aws iam enable-outbound-web-identity-federation\n\
         # (its issuer must be {issuer}).\n\
         # Then the role may mint tokens for this audience only.\n\
         resource \"aws_iam_role_policy\" \"keyless_get_web_identity_token\" {{\n  role   = {role}\n  name   = {name}\n  policy = <<-EOT\n{policy}\n  EOT\n}}\n",
        account = o.account,
        issuer = o.issuer,
        role = q(&o.role),
        name = q(OUTBOUND_POLICY_NAME),
        policy = indent(&o.policy_pretty(), "    "),
    );
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// SOURCE → AWS: the issuer's IAM OIDC provider, the role pinning `HOST/PATH:aud` and `:sub`,
/// its attachments.
pub fn oidc_to_aws(s: &OidcToAws, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# keyless setup {source}-to-aws: {who} may assume {arn}.\n\
         # AWS compares {host}:aud with the token's aud and {host}:sub with its sub.\n{notes}",
        source = s.source.name(),
        who = s.source.describe(),
        arn = s.role_arn(),
        host = s.source.provider_host(),
        notes = s.source.workload_notes(&s.audience),
    );
    let _ = writeln!(
        out,
        "# One IAM OIDC provider per issuer and account: if it exists, import it\n\
         #   terraform import aws_iam_openid_connect_provider.keyless {arn}\n\
         # No thumbprint_list (optional from AWS provider 5.81): AWS verifies the issuer's certificate.\n\
         resource \"aws_iam_openid_connect_provider\" \"keyless\" {{\n  url            = {url}\n  client_id_list = [{aud}]\n}}\n",
        arn = s.provider_arn(),
        url = q(s.source.issuer()),
        aud = q(&s.audience),
    );
    out.push_str("data \"aws_iam_policy_document\" \"keyless_trust\" {\n  statement {\n");
    out.push_str("    effect  = \"Allow\"\n    actions = [\"sts:AssumeRoleWithWebIdentity\"]\n\n");
    out.push_str(
        "    principals {\n      type        = \"Federated\"\n      identifiers = [aws_iam_openid_connect_provider.keyless.arn]\n    }\n",
    );
    for (variable, value) in s.conditions() {
        let _ = write!(
            out,
            "\n    condition {{\n      test     = \"StringEquals\"\n      variable = {}\n      values   = [{}]\n    }}\n",
            q(&variable),
            q(&value),
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
        q(&format!("Then, in the workload: {}", s.keyless_command()))
    );
    audit_section(&mut out, audit);
    out
}

/// SOURCE → Google: the pool, its OIDC provider admitting only the workload's subject, the
/// service account, the binding for that subject (and, for `aws-oidc`, the caller's side).
pub fn oidc_to_gcp(s: &OidcToGcp, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# keyless setup {source}-to-gcp: {who} may impersonate {sa}.\n{notes}",
        source = s.source.name(),
        who = s.source.describe(),
        sa = s.service_account,
        notes = s.source.workload_notes(&s.token_audience()),
    );
    if let Some(o) = s.outbound() {
        outbound(&mut out, &o);
    }
    let _ = writeln!(
        out,
        "resource \"google_iam_workload_identity_pool\" \"keyless\" {{\n  project                   = {}\n  workload_identity_pool_id = {}\n}}\n",
        q(&s.project_id),
        q(&s.pool)
    );
    let mapping = s.source.attribute_mapping();
    let width = mapping.iter().map(|(k, _)| k.len() + 2).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "resource \"google_iam_workload_identity_pool_provider\" \"keyless\" {{\n  project                            = {}\n  workload_identity_pool_id          = google_iam_workload_identity_pool.keyless.workload_identity_pool_id\n  workload_identity_pool_provider_id = {}\n\n  oidc {{\n    issuer_uri        = {}\n    allowed_audiences = [{}]\n  }}\n\n  attribute_mapping = {{",
        q(&s.project_id),
        q(&s.provider),
        q(s.source.issuer()),
        q(&s.token_audience()),
    );
    for (key, value) in &mapping {
        let _ = writeln!(out, "    {:width$} = {}", q(key), q(value));
    }
    let _ = writeln!(
        out,
        "  }}\n  attribute_condition = {}\n}}\n",
        q(&s.source.attribute_condition())
    );
    let _ = writeln!(
        out,
        "resource \"google_service_account\" \"keyless\" {{\n  project      = {}\n  account_id   = {}\n  display_name = {}\n}}\n",
        q(&s.project_id),
        q(s.service_account_name()),
        q(&s.display_name())
    );
    let _ = writeln!(
        out,
        "resource \"google_service_account_iam_member\" \"keyless_workload_identity_user\" {{\n  service_account_id = google_service_account.keyless.name\n  role               = {}\n  member             = {}\n\n  depends_on = [google_iam_workload_identity_pool_provider.keyless]\n}}\n",
        q(WORKLOAD_IDENTITY_USER),
        q(&s.principal())
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
        "# Then, in the workload:\n#   {}\noutput \"keyless_command\" {{\n  value = {}\n}}",
        s.keyless_command(),
        q(&s.keyless_command())
    );
    audit_section(&mut out, audit);
    out
}

/// `--audit`, after the federation: the trail (its bucket first, since CloudTrail checks the
/// bucket policy when the trail is created) and the project's audit configs.
fn audit_section(out: &mut String, audit: Option<&Audit>) {
    let Some(audit) = audit else {
        return;
    };
    if let Some(t) = &audit.trail {
        trail(out, t);
    }
    if let Some(g) = &audit.google {
        google_audit(out, g);
    }
}

fn comments(lines: &[String]) -> String {
    lines.iter().map(|l| format!("# {l}\n")).collect()
}

/// The trail's ARN names the provider's region, which the bucket policy must match.
const REGION: &str = "${data.aws_region.current.name}";

fn trail(out: &mut String, t: &Trail) {
    let _ = writeln!(
        out,
        "\n{notes}data \"aws_region\" \"current\" {{}}\n\n\
         resource \"aws_s3_bucket\" \"keyless_audit\" {{\n  bucket = {bucket}\n}}\n\n\
         resource \"aws_s3_bucket_public_access_block\" \"keyless_audit\" {{\n  bucket                  = aws_s3_bucket.keyless_audit.id\n  block_public_acls       = true\n  block_public_policy     = true\n  ignore_public_acls      = true\n  restrict_public_buckets = true\n}}\n\n\
         resource \"aws_s3_bucket_policy\" \"keyless_audit\" {{\n  bucket = aws_s3_bucket.keyless_audit.id\n  policy = <<-EOT\n{policy}\n  EOT\n\n  depends_on = [aws_s3_bucket_public_access_block.keyless_audit]\n}}\n\n\
         resource \"aws_cloudtrail\" \"keyless_audit\" {{\n  name                          = {name}\n  s3_bucket_name                = aws_s3_bucket.keyless_audit.id\n  is_multi_region_trail         = {multi}\n  include_global_service_events = {global}\n  enable_log_file_validation    = {validation}\n\n  \
         event_selector {{\n    read_write_type           = {rw}\n    include_management_events = true\n  }}\n\n  depends_on = [aws_s3_bucket_policy.keyless_audit]\n}}",
        notes = comments(&t.notes()),
        bucket = q(&t.bucket()),
        policy = indent(&t.bucket_policy_pretty(REGION), "    "),
        name = q(TRAIL_NAME),
        multi = Trail::MULTI_REGION,
        global = Trail::INCLUDE_GLOBAL_SERVICE_EVENTS,
        validation = Trail::LOG_FILE_VALIDATION,
        rw = q(READ_WRITE_TYPE),
    );
}

/// One `google_project_iam_audit_config` per service: authoritative for that service only, so
/// other services' configs stay.
fn google_audit(out: &mut String, g: &GoogleAuditConfig) {
    let mut notes = g.notes();
    notes.push(
        "Each resource owns its service's config: if the project has one, import it first."
            .to_string(),
    );
    let _ = write!(out, "\n{}", comments(&notes));
    for (i, service) in g.services.iter().enumerate() {
        let label = service.split('.').next().unwrap_or(service);
        let configs: String = LOG_TYPES
            .iter()
            .map(|t| format!("\n  audit_log_config {{\n    log_type = {}\n  }}\n", q(t)))
            .collect();
        let _ = writeln!(
            out,
            "{sep}resource \"google_project_iam_audit_config\" \"keyless_audit_{label}\" {{\n  project = {project}\n  service = {service}\n{configs}}}",
            sep = if i == 0 { "" } else { "\n" },
            project = q(&g.project_id),
            service = q(service),
        );
    }
}
