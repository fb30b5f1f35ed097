//! CloudFormation (YAML): the AWS half only, since CloudFormation cannot create Google
//! resources; the Google half is a comment with the gcloud command, so nothing is forgotten.
//! Without `--service-account-id` the account is created outside the stack, so its numeric id
//! is a stack parameter given at deploy time, never a literal guessed here.

use std::fmt::Write;

use super::{quoted, GcpToAws, PolicyValue};

/// The stack parameter that carries the id of a service account created outside the stack.
const ID_PARAMETER: &str = "ServiceAccountId";

fn q(value: &str) -> String {
    // A double-quoted YAML scalar accepts the same escapes as JSON for these characters.
    quoted(value, false)
}

/// The role with its trust policy, attachments and session limit; the ARN as an output.
pub fn gcp_to_aws(s: &GcpToAws) -> String {
    let mut out = String::new();
    let (google_side, parameters) = if s.creates_service_account() {
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
    out.push_str(
        "Outputs:\n  RoleArn:\n    Description: The role keyless assumes (--role-arn)\n    Value: !GetAtt KeylessRole.Arn\n",
    );
    out
}
