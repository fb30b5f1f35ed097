//! A Pulumi program in Python (`__main__.py`): the trust policy is a Python dict passed through
//! `json.dumps`, so it reads like the JSON IAM shows.

use std::fmt::Write;

use super::audit::{Audit, GoogleAuditConfig, Trail, LOG_TYPES, READ_WRITE_TYPE, TRAIL_NAME};
use super::oidc::{OidcToAws, OidcToGcp, Outbound, OUTBOUND_POLICY_NAME};
use super::{quoted, AwsToGcp, GcpToAws, ATTRIBUTE_MAPPING, WORKLOAD_IDENTITY_USER};

fn q(value: &str) -> String {
    quoted(value, false)
}

/// The role with its trust policy and attachments, and the Google service account: created here
/// (the policy is built from its `unique_id` once it exists), or looked up when it exists and its
/// id is given (the program stops if the id differs).
pub fn gcp_to_aws(s: &GcpToAws, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\"\"\"keyless setup gcp-to-aws: {sa} may assume {arn}.\"\"\"\n\n\
         import json\n\nimport pulumi\nimport pulumi_aws as aws\nimport pulumi_gcp as gcp\n",
        sa = s.service_account,
        arn = s.role_arn()
    );
    // Pretty JSON of strings, objects and arrays is a valid Python literal.
    match &s.service_account_id {
        None => {
            let _ = writeln!(
                out,
                "service_account = gcp.serviceaccount.Account(\n    \"keyless\",\n    project={},\n    account_id={},\n    display_name={},\n)\n",
                q(s.service_account_project()),
                q(s.service_account_name()),
                q(&format!("keyless: assumes AWS role {}", s.role_name))
            );
            let policy = s
                .trust_policy_pretty("unique_id")
                .replace('\n', "\n        ");
            let _ = writeln!(
                out,
                "# The numeric id is what AWS compares (aud = the token's azp, sub); it exists once the\n\
                 # account does.\n\
                 trust_policy = service_account.unique_id.apply(\n    lambda unique_id: json.dumps(\n        {policy}\n    )\n)\n"
            );
        }
        Some(id) => {
            let _ = writeln!(
                out,
                "# The account exists: look it up, and stop unless it has the numeric id pinned in the\n\
                 # policy (a deleted and re-created account with the same email is another identity).\n\
                 service_account = gcp.serviceaccount.get_account(account_id={}, project={})\n\
                 if service_account.unique_id != {id}:\n    \
                     raise Exception(\n        {}\n        + service_account.unique_id\n    )\n",
                q(&s.service_account),
                q(s.service_account_project()),
                q(&format!(
                    "{} does not have the numeric id {id} (review the trust policy before changing --service-account-id); it has: ",
                    s.service_account
                )),
                id = q(id),
            );
            let policy = s.trust_policy_pretty("").replace('\n', "\n    ");
            let _ = writeln!(
                out,
                "# The numeric id is what AWS compares (aud = the token's azp, sub).\ntrust_policy = json.dumps(\n    {policy}\n)\n"
            );
        }
    }
    let _ = writeln!(
        out,
        "role = aws.iam.Role(\n    \"keyless\",\n    name={},\n    assume_role_policy=trust_policy,\n    max_session_duration={},\n)\n",
        q(&s.role_name),
        s.max_session_duration
    );
    for (i, arn) in s.policy_arns.iter().enumerate() {
        let _ = writeln!(
            out,
            "aws.iam.RolePolicyAttachment(\n    \"keyless-{i}\",\n    role=role.name,\n    policy_arn={},\n)\n",
            q(arn)
        );
    }
    audit_section(&mut out, audit);
    let _ = writeln!(
        out,
        "pulumi.export(\"role_arn\", role.arn)\npulumi.export(\"service_account\", service_account.email)\n# Then, on GCP:\n#   {}",
        s.keyless_command()
    );
    out
}

/// The pool, the AWS provider, the service account and its bindings.
pub fn aws_to_gcp(s: &AwsToGcp, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let trail = audit.is_some_and(|a| a.trail.is_some());
    let _ = writeln!(
        out,
        "\"\"\"keyless setup aws-to-gcp: sessions of the AWS role {role} may impersonate {sa}.\"\"\"\n\n\
         {json}import pulumi\n{aws}import pulumi_gcp as gcp\n",
        json = if trail { "import json\n\n" } else { "" },
        aws = if trail { "import pulumi_aws as aws\n" } else { "" },
        role = s.aws_role,
        sa = s.service_account
    );
    let _ = writeln!(
        out,
        "pool = gcp.iam.WorkloadIdentityPool(\n    \"keyless\",\n    project={project},\n    workload_identity_pool_id={pool},\n)\n\n\
         provider = gcp.iam.WorkloadIdentityPoolProvider(\n    \"keyless\",\n    project={project},\n    workload_identity_pool_id=pool.workload_identity_pool_id,\n    workload_identity_pool_provider_id={provider},\n    aws=gcp.iam.WorkloadIdentityPoolProviderAwsArgs(account_id={account}),\n    attribute_mapping={{",
        project = q(&s.project_id),
        pool = q(&s.pool),
        provider = q(&s.provider),
        account = q(&s.aws_account),
    );
    for (key, value) in ATTRIBUTE_MAPPING {
        let _ = writeln!(out, "        {}: {},", q(key), q(value));
    }
    let _ = writeln!(
        out,
        "    }},\n    attribute_condition={},\n)\n",
        q(&s.attribute_condition())
    );
    let _ = writeln!(
        out,
        "service_account = gcp.serviceaccount.Account(\n    \"keyless\",\n    project={},\n    account_id={},\n    display_name={},\n)\n\n\
         gcp.serviceaccount.IAMMember(\n    \"keyless-workload-identity-user\",\n    service_account_id=service_account.name,\n    role={},\n    member={},\n    opts=pulumi.ResourceOptions(depends_on=[provider]),\n)\n",
        q(&s.project_id),
        q(s.service_account_name()),
        q(&format!("keyless: impersonated by AWS role {}", s.aws_role)),
        q(WORKLOAD_IDENTITY_USER),
        q(&s.principal_set()),
    );
    if let Some(role) = &s.role {
        let _ = writeln!(
            out,
            "gcp.projects.IAMMember(\n    \"keyless-role\",\n    project={},\n    role={},\n    member=service_account.email.apply(lambda email: f\"serviceAccount:{{email}}\"),\n)\n",
            q(&s.project_id),
            q(role)
        );
    }
    audit_section(&mut out, audit);
    let _ = writeln!(
        out,
        "pulumi.export(\"service_account\", service_account.email)\npulumi.export(\"audience\", {})\n# Then, on AWS:\n#   {}",
        q(&s.audience()),
        s.keyless_command()
    );
    out
}

/// The caller's account side of AWS outbound federation: the enable call as a comment and the
/// role's inline policy for the one audience.
fn outbound(out: &mut String, o: &Outbound) {
    let policy = o.policy_pretty().replace('\n', "\n        ");
    let _ = writeln!(
        out,
        "# In the caller's account {account}: outbound identity federation, once per account (not a\n\
         # Pulumi resource): aws iam enable-outbound-web-identity-federation (its issuer must be\n\
         # {issuer}). Then the role may mint tokens for this audience only.\n\
         aws.iam.RolePolicy(\n    \"keyless-get-web-identity-token\",\n    role={role},\n    name={name},\n    policy=json.dumps(\n        {policy}\n    ),\n)\n",
        account = o.account,
        issuer = o.issuer,
        role = q(&o.role),
        name = q(OUTBOUND_POLICY_NAME),
    );
}

/// SOURCE → AWS: the IAM OIDC provider, the role whose trust policy names it, attachments.
pub fn oidc_to_aws(s: &OidcToAws, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\"\"\"keyless setup {}-to-aws: {} may assume {}.\"\"\"\n\n{}\n\
         import json\n\nimport pulumi\nimport pulumi_aws as aws\n",
        s.source.name(),
        s.source.describe(),
        s.role_arn(),
        s.source.workload_notes(&s.audience),
    );
    let principal = "\"__KEYLESS_PROVIDER_ARN__\"";
    let policy = super::oidc::pretty(&s.trust_policy_with("__KEYLESS_PROVIDER_ARN__"))
        .replace(principal, "arn")
        .replace('\n', "\n        ");
    let _ = writeln!(
        out,
        "# One IAM OIDC provider per issuer and account: if it exists, import it\n\
         # (pulumi import aws:iam/openIdConnectProvider:OpenIdConnectProvider keyless {arn}).\n\
         provider = aws.iam.OpenIdConnectProvider(\n    \"keyless\",\n    url={url},\n    client_id_lists=[{aud}],\n)\n\n\
         trust_policy = provider.arn.apply(\n    lambda arn: json.dumps(\n        {policy}\n    )\n)\n\n\
         role = aws.iam.Role(\n    \"keyless\",\n    name={role},\n    assume_role_policy=trust_policy,\n    max_session_duration={max},\n)\n",
        arn = s.provider_arn(),
        url = q(s.source.issuer()),
        aud = q(&s.audience),
        role = q(&s.role_name),
        max = s.max_session_duration,
    );
    for (i, arn) in s.policy_arns.iter().enumerate() {
        let _ = writeln!(
            out,
            "aws.iam.RolePolicyAttachment(\n    \"keyless-{i}\",\n    role=role.name,\n    policy_arn={},\n)\n",
            q(arn)
        );
    }
    audit_section(&mut out, audit);
    let _ = writeln!(
        out,
        "pulumi.export(\"role_arn\", role.arn)\n# Then, in the workload:\n#   {}",
        s.keyless_command()
    );
    out
}

/// SOURCE → Google: the pool, the OIDC provider, the service account and its bindings (and,
/// for `aws-oidc`, the caller's side).
pub fn oidc_to_gcp(s: &OidcToGcp, audit: Option<&Audit>) -> String {
    let mut out = String::new();
    let outbound_side = s.outbound();
    let _ = writeln!(
        out,
        "\"\"\"keyless setup {}-to-gcp: {} may impersonate {}.\"\"\"\n\n{}\n{}import pulumi\n{}import pulumi_gcp as gcp\n",
        s.source.name(),
        s.source.describe(),
        s.service_account,
        s.source.workload_notes(&s.token_audience()),
        if outbound_side.is_some() { "import json\n\n" } else { "" },
        if outbound_side.is_some() { "import pulumi_aws as aws\n" } else { "" },
    );
    if let Some(o) = &outbound_side {
        outbound(&mut out, o);
    }
    let _ = writeln!(
        out,
        "pool = gcp.iam.WorkloadIdentityPool(\n    \"keyless\",\n    project={project},\n    workload_identity_pool_id={pool},\n)\n\n\
         provider = gcp.iam.WorkloadIdentityPoolProvider(\n    \"keyless\",\n    project={project},\n    workload_identity_pool_id=pool.workload_identity_pool_id,\n    workload_identity_pool_provider_id={provider},\n    oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(\n        issuer_uri={issuer},\n        allowed_audiences=[{audience}],\n    ),\n    attribute_mapping={{",
        project = q(&s.project_id),
        pool = q(&s.pool),
        provider = q(&s.provider),
        issuer = q(s.source.issuer()),
        audience = q(&s.token_audience()),
    );
    for (key, value) in s.source.attribute_mapping() {
        let _ = writeln!(out, "        {}: {},", q(key), q(value));
    }
    let _ = writeln!(
        out,
        "    }},\n    attribute_condition={},\n)\n",
        q(&s.source.attribute_condition())
    );
    let _ = writeln!(
        out,
        "service_account = gcp.serviceaccount.Account(\n    \"keyless\",\n    project={},\n    account_id={},\n    display_name={},\n)\n\n\
         gcp.serviceaccount.IAMMember(\n    \"keyless-workload-identity-user\",\n    service_account_id=service_account.name,\n    role={},\n    member={},\n    opts=pulumi.ResourceOptions(depends_on=[provider]),\n)\n",
        q(&s.project_id),
        q(s.service_account_name()),
        q(&s.display_name()),
        q(WORKLOAD_IDENTITY_USER),
        q(&s.principal()),
    );
    if let Some(role) = &s.role {
        let _ = writeln!(
            out,
            "gcp.projects.IAMMember(\n    \"keyless-role\",\n    project={},\n    role={},\n    member=service_account.email.apply(lambda email: f\"serviceAccount:{{email}}\"),\n)\n",
            q(&s.project_id),
            q(role)
        );
    }
    audit_section(&mut out, audit);
    let _ = writeln!(
        out,
        "pulumi.export(\"service_account\", service_account.email)\npulumi.export(\"audience\", {})\n# Then, in the workload:\n#   {}",
        q(&s.audience()),
        s.keyless_command()
    );
    out
}

/// `--audit`, before the exports: the trail, then the project's audit configs.
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

fn py_bool(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

/// The trail in the stack's AWS region (`aws:region`), its bucket and the policy first:
/// CloudTrail checks the bucket policy when the trail is created.
fn trail(out: &mut String, t: &Trail) {
    const REGION: &str = "__KEYLESS_TRAIL_REGION__";
    let placeholder = quoted(&t.arn_in(REGION), false);
    let policy = t
        .bucket_policy_pretty(REGION)
        .replace(&placeholder, "trail_arn")
        .replace('\n', "\n        ");
    let _ = writeln!(
        out,
        "{notes}audit_bucket = aws.s3.Bucket(\"keyless-audit\", bucket={bucket})\n\n\
         aws.s3.BucketPublicAccessBlock(\n    \"keyless-audit\",\n    bucket=audit_bucket.id,\n    block_public_acls=True,\n    block_public_policy=True,\n    ignore_public_acls=True,\n    restrict_public_buckets=True,\n)\n\n\
         trail_arn = f{arn}\n\
         audit_bucket_policy = aws.s3.BucketPolicy(\n    \"keyless-audit\",\n    bucket=audit_bucket.id,\n    policy=json.dumps(\n        {policy}\n    ),\n)\n\n\
         aws.cloudtrail.Trail(\n    \"keyless-audit\",\n    name={name},\n    s3_bucket_name=audit_bucket.id,\n    is_multi_region_trail={multi},\n    include_global_service_events={global},\n    enable_log_file_validation={validation},\n    \
         event_selectors=[\n        aws.cloudtrail.TrailEventSelectorArgs(\n            read_write_type={rw},\n            include_management_events=True,\n        )\n    ],\n    \
         opts=pulumi.ResourceOptions(depends_on=[audit_bucket_policy]),\n)\n",
        notes = comments(&t.notes()),
        bucket = q(&t.bucket()),
        arn = q(&t.arn_in("{aws.config.region}")),
        name = q(TRAIL_NAME),
        multi = py_bool(Trail::MULTI_REGION),
        global = py_bool(Trail::INCLUDE_GLOBAL_SERVICE_EVENTS),
        validation = py_bool(Trail::LOG_FILE_VALIDATION),
        rw = q(READ_WRITE_TYPE),
    );
}

/// One `IAMAuditConfig` per service: authoritative for that service only, so other services'
/// configs stay.
fn google_audit(out: &mut String, g: &GoogleAuditConfig) {
    out.push_str(&comments(&g.notes()));
    for service in &g.services {
        let label = service.split('.').next().unwrap_or(service);
        let configs: String = LOG_TYPES
            .iter()
            .map(|t| {
                format!(
                    "        gcp.projects.IAMAuditConfigAuditLogConfigArgs(log_type={}),\n",
                    q(t)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "gcp.projects.IAMAuditConfig(\n    \"keyless-audit-{label}\",\n    project={},\n    service={},\n    audit_log_configs=[\n{configs}    ],\n)\n",
            q(&g.project_id),
            q(service),
        );
    }
}
