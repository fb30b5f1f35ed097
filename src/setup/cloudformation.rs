//! CloudFormation (YAML): the AWS half only, since CloudFormation cannot create Google
//! resources; the Google half is a comment with the gcloud command, so nothing is forgotten.

use std::fmt::Write;

use super::{quoted, GcpToAws};

fn q(value: &str) -> String {
    // A double-quoted YAML scalar accepts the same escapes as JSON for these characters.
    quoted(value, false)
}

/// The role with its trust policy, attachments and session limit; the ARN as an output.
pub fn gcp_to_aws(s: &GcpToAws) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# keyless setup gcp-to-aws: {sa} may assume {arn}.\n\
         #\n\
         # The Google side (not expressible in CloudFormation):\n\
         #   gcloud iam service-accounts create {name} --project {project}\n\
         # Then, on GCP:\n\
         #   {cmd}\n\
         AWSTemplateFormatVersion: \"2010-09-09\"\n\
         Description: {desc}\n\
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
        name = s.service_account_name(),
        project = s.service_account_project(),
        cmd = s.keyless_command(),
        desc = q(&format!(
            "keyless: the Google service account {} may assume this role",
            s.service_account
        )),
        role = q(&s.role_name),
        max = s.max_session_duration,
    );
    for (key, value) in s.conditions() {
        let _ = writeln!(out, "                {}: {}", q(key), q(value));
    }
    if !s.policy_arns.is_empty() {
        out.push_str("      ManagedPolicyArns:\n");
        for arn in &s.policy_arns {
            let _ = writeln!(out, "        - {}", q(arn));
        }
    }
    out.push_str(
        "Outputs:\n  RoleArn:\n    Description: The role keyless assumes (--role-arn)\n    Value: !GetAtt KeylessRole.Arn\n",
    );
    out
}
