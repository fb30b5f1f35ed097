//! A Pulumi program in Python (`__main__.py`): the trust policy is a Python dict passed through
//! `json.dumps`, so it reads like the JSON IAM shows.

use std::fmt::Write;

use super::{quoted, AwsToGcp, GcpToAws, ATTRIBUTE_MAPPING, WORKLOAD_IDENTITY_USER};

fn q(value: &str) -> String {
    quoted(value, false)
}

/// The role with its trust policy and attachments, and the Google service account: created here
/// (the policy is built from its `unique_id` once it exists), or looked up when it exists and its
/// id is given (the program stops if the id differs).
pub fn gcp_to_aws(s: &GcpToAws) -> String {
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
    let _ = writeln!(
        out,
        "pulumi.export(\"role_arn\", role.arn)\npulumi.export(\"service_account\", service_account.email)\n# Then, on GCP:\n#   {}",
        s.keyless_command()
    );
    out
}

/// The pool, the AWS provider, the service account and its bindings.
pub fn aws_to_gcp(s: &AwsToGcp) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\"\"\"keyless setup aws-to-gcp: sessions of the AWS role {role} may impersonate {sa}.\"\"\"\n\n\
         import pulumi\nimport pulumi_gcp as gcp\n",
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
    let _ = writeln!(
        out,
        "pulumi.export(\"service_account\", service_account.email)\npulumi.export(\"audience\", {})\n# Then, on AWS:\n#   {}",
        q(&s.audience()),
        s.keyless_command()
    );
    out
}
