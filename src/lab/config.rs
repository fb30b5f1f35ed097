//! What the lab knows: the AWS account and its roles, the Google project, its service accounts and
//! users. Tests build their own; `keyless demo` and `keyless lab` use [`LabConfig::demo`].

use std::time::Duration;

/// The whole lab world.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// The AWS account that owns [`LabConfig::roles`].
    pub account_id: String,
    /// The Google project id (`project/project-id` on the metadata server).
    pub project_id: String,
    /// The Google project number (`project/numeric-project-id`).
    pub project_number: String,
    /// The VM's default service account email; must be one of `service_accounts`.
    pub metadata_service_account: String,
    /// Google service accounts that exist in the lab.
    pub service_accounts: Vec<LabServiceAccount>,
    /// Google users that can refresh an `authorized_user` ADC file.
    pub users: Vec<LabUser>,
    /// AWS roles that exist in the lab account.
    pub roles: Vec<LabRole>,
    /// Lifetime of the ID tokens the lab mints (Google: one hour); shorten it to test expiry.
    pub id_token_lifetime: Duration,
}

/// A Google service account.
#[derive(Debug, Clone)]
pub struct LabServiceAccount {
    /// Its email, e.g. `deployer@keyless-lab.iam.gserviceaccount.com`.
    pub email: String,
    /// Its 21-digit numeric unique id: what its ID tokens carry as `sub` and `azp`.
    pub unique_id: String,
    /// Principals (emails) holding Service Account Token Creator on it (may impersonate it).
    pub token_creators: Vec<String>,
}

/// A Google user with OAuth client credentials, as `gcloud auth application-default login` leaves.
/// `Debug` redacts the client secret and refresh token, like every secret in keyless.
#[derive(Clone)]
pub struct LabUser {
    /// The user's email: the principal of the access tokens it gets.
    pub email: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// The refresh token the ADC file carries.
    pub refresh_token: String,
}

/// An AWS IAM role.
#[derive(Debug, Clone)]
pub struct LabRole {
    /// The role name (the ARN is `arn:aws:iam::ACCOUNT:role/NAME`).
    pub name: String,
    /// The trust policy document (JSON), evaluated on every AssumeRoleWithWebIdentity.
    pub trust_policy: String,
    /// Seconds; `DurationSeconds` above it is refused, as AWS does.
    pub max_session_duration: u32,
}

impl std::fmt::Debug for LabUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabUser")
            .field("email", &self.email)
            .field("client_id", &self.client_id)
            .field("client_secret", &"****")
            .field("refresh_token", &"****")
            .finish()
    }
}

/// The demo account id.
pub const DEMO_ACCOUNT_ID: &str = "123456789012";

impl LabConfig {
    /// The world `keyless demo` shows: a deployer VM, a CI runner that can be impersonated, and an
    /// intruder from another project whose tokens the trust policies must refuse.
    pub fn demo() -> Self {
        let sa = |email: &str, id: &str, creators: &[&str]| LabServiceAccount {
            email: email.to_string(),
            unique_id: id.to_string(),
            token_creators: creators.iter().map(|s| s.to_string()).collect(),
        };
        let deployer = "deployer@keyless-lab.iam.gserviceaccount.com";
        Self {
            account_id: DEMO_ACCOUNT_ID.to_string(),
            project_id: "keyless-lab".to_string(),
            project_number: "424242424242".to_string(),
            metadata_service_account: deployer.to_string(),
            service_accounts: vec![
                sa(deployer, "100000000000000000001", &[]),
                sa(
                    "ci-runner@keyless-lab.iam.gserviceaccount.com",
                    "100000000000000000002",
                    &[deployer, "dev@example.com"],
                ),
                sa(
                    "intruder@elsewhere.iam.gserviceaccount.com",
                    "100000000000000000099",
                    &[],
                ),
            ],
            users: vec![LabUser {
                email: "dev@example.com".to_string(),
                client_id: "764086051850-lab.apps.googleusercontent.com".to_string(),
                client_secret: "lab-client-secret".to_string(),
                refresh_token: "1//lab-refresh-token-dev".to_string(),
            }],
            roles: vec![
                LabRole {
                    name: "gcp-deploy".to_string(),
                    trust_policy: google_trust_policy("100000000000000000001"),
                    max_session_duration: 14400,
                },
                LabRole {
                    name: "ci-deploy".to_string(),
                    trust_policy: google_trust_policy("100000000000000000002"),
                    max_session_duration: 3600,
                },
            ],
            id_token_lifetime: Duration::from_secs(3600),
        }
    }

    /// The service account with this email, if it exists.
    pub fn service_account(&self, email: &str) -> Option<&LabServiceAccount> {
        self.service_accounts
            .iter()
            .find(|s| s.email.eq_ignore_ascii_case(email))
    }

    /// The role with this name, if it exists.
    pub fn role(&self, name: &str) -> Option<&LabRole> {
        self.roles.iter().find(|r| r.name == name)
    }
}

impl Default for LabConfig {
    fn default() -> Self {
        Self::demo()
    }
}

/// The trust policy keyless recommends for one Google service account: pin `aud` (= the token's
/// azp, the account's unique id), `sub`, and a role-specific `oaud`.
pub fn google_trust_policy(unique_id: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": "accounts.google.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                "accounts.google.com:aud": unique_id,
                "accounts.google.com:oaud": "sts.amazonaws.com",
                "accounts.google.com:sub": unique_id
            }}
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_world_is_consistent_and_debug_hides_user_secrets() {
        let demo = LabConfig::demo();
        assert!(demo
            .service_account(&demo.metadata_service_account)
            .is_some());
        assert_eq!(demo.role("gcp-deploy").unwrap().max_session_duration, 14400);
        assert_eq!(demo.role("ci-deploy").unwrap().max_session_duration, 3600);
        for role in &demo.roles {
            crate::policy::PolicyDocument::parse(&role.trust_policy).unwrap();
        }
        let debug = format!("{demo:?}");
        assert!(!debug.contains(&demo.users[0].client_secret), "{debug}");
        assert!(!debug.contains(&demo.users[0].refresh_token), "{debug}");
    }
}
