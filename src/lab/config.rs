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
    /// IAM users of the AWS account with long-lived access keys (`AKIA...`).
    pub iam_users: Vec<LabIamUser>,
    /// Workload identity pools of the Google project (`project_number`).
    pub workload_identity_pools: Vec<LabWorkloadIdentityPool>,
    /// `roles/iam.workloadIdentityUser` bindings on service accounts: who may impersonate them
    /// with a federated token.
    pub workload_identity_users: Vec<LabWorkloadIdentityUser>,
    /// Cloud Storage buckets, for the `storage/v1/b` stand-in of a Google API.
    pub buckets: Vec<LabBucket>,
    /// The org policy `constraints/iam.allowServiceAccountCredentialLifetimeExtension`: lets
    /// `generateAccessToken` grant lifetimes above one hour (up to 12).
    pub allow_service_account_lifetime_extension: bool,
    /// Caps the lifetime of every AWS session and Google access token the lab issues (`None`:
    /// the real services' lifetimes). Refresh tests shorten it to see several refreshes.
    pub credential_lifetime_cap: Option<Duration>,
    /// How long each upstream call (AWS STS, Google STS, IAM Credentials) takes before it is
    /// answered (zero: at once). A real STS is 20–100 ms away; the scale benchmark uses 50 ms.
    pub upstream_latency: Duration,
    /// Answer upstream calls with the service's throttling error (`Throttling`,
    /// `RESOURCE_EXHAUSTED`) while more than this many are in flight (`None`: never).
    pub throttle_above: Option<u32>,
    /// The EC2 instance the IMDSv2 emulation describes; `None`: no instance (every IMDS path 404s).
    pub ec2_instance: Option<LabEc2Instance>,
    /// IAM OIDC providers of the AWS account besides Google's built-in one (an EKS cluster's
    /// issuer, GitHub Actions): STS accepts their tokens, signed with the lab's key.
    pub oidc_providers: Vec<LabOidcProvider>,
    /// The GitHub Actions token service (its own key; `None`: none). Its issuer must also be in
    /// `oidc_providers` for STS to accept its tokens.
    pub github_actions: Option<super::issuers::LabGithubActions>,
    /// A Kubernetes cluster's service-account issuer (its own key; `None`: none), likewise.
    pub kubernetes: Option<super::issuers::LabKubernetes>,
    /// Whether outbound identity federation (STS `GetWebIdentityToken`) starts enabled for the
    /// account; off by default, as in AWS. [`super::Lab::enable_outbound_federation`] turns it
    /// on later, as IAM's `EnableOutboundWebIdentityFederation` does.
    pub outbound_federation: bool,
    /// Other AWS accounts (a partner's, production's): their roles can be assumed with
    /// `AssumeRole` by sessions their trust policies name (the cross-account pattern).
    pub other_accounts: Vec<LabAccount>,
    /// The services whose Data Access audit logs (`DATA_READ`) the project has turned on: only
    /// their calls leave Cloud Audit Log entries, as in Google. The demo turns on
    /// `sts.googleapis.com` and `iamcredentials.googleapis.com`;
    /// [`super::Lab::set_data_access_logs`] changes it while the lab runs.
    pub data_access_logs: Vec<String>,
}

/// The services whose Data Access logs the demo project turns on.
pub const DEMO_DATA_ACCESS_SERVICES: [&str; 2] =
    ["sts.googleapis.com", "iamcredentials.googleapis.com"];

/// Another AWS account and its roles.
#[derive(Debug, Clone)]
pub struct LabAccount {
    /// 12 digits.
    pub account_id: String,
    /// Its roles; `AssumeRoleWithWebIdentity` is answered for the lab account only.
    pub roles: Vec<LabRole>,
}

/// An IAM OIDC provider (`arn:aws:iam::ACCOUNT:oidc-provider/HOST/PATH`).
#[derive(Debug, Clone)]
pub struct LabOidcProvider {
    /// The issuer URL as tokens carry it in `iss`, e.g.
    /// `https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE`.
    pub issuer: String,
    /// The audiences (client IDs) it accepts; a token must name one in its `aud`.
    pub client_ids: Vec<String>,
}

/// An IAM user with a long-lived access key, as `aws configure` or CI secrets hold.
/// `Debug` redacts the secret key.
#[derive(Clone)]
pub struct LabIamUser {
    /// The user name (the ARN is `arn:aws:iam::ACCOUNT:user/NAME`).
    pub name: String,
    /// `AKIA` + 16 characters.
    pub access_key_id: String,
    /// The 40-character secret.
    pub secret_access_key: String,
}

impl std::fmt::Debug for LabIamUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabIamUser")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"****")
            .finish()
    }
}

/// A workload identity pool and its providers.
#[derive(Debug, Clone)]
pub struct LabWorkloadIdentityPool {
    /// The pool id, e.g. `keyless-pool`.
    pub pool_id: String,
    /// Its AWS providers.
    pub providers: Vec<LabAwsProvider>,
    /// Its OIDC providers.
    pub oidc_providers: Vec<LabPoolOidcProvider>,
}

/// An OIDC provider of a pool: Google STS accepts JWTs (subject token type
/// `urn:ietf:params:oauth:token-type:jwt` or `id_token`) from one issuer, verified with its keys,
/// mapped by [`crate::policy::issuer::google_sts::AttributeMapping`] and admitted by the condition.
#[derive(Debug, Clone)]
pub struct LabPoolOidcProvider {
    /// The provider id, e.g. `oidc-lab`.
    pub provider_id: String,
    /// `oidc.issuerUri`: the `iss` its tokens must carry (https://).
    pub issuer_uri: String,
    /// `oidc.allowedAudiences`; empty: the provider's own resource name, with or without
    /// `https://iam.googleapis.com/` in front.
    pub allowed_audiences: Vec<String>,
    /// `oidc.jwksJson`: the keys, inline; `None`: the keys the issuer's discovery document
    /// publishes (the lab's GitHub Actions, cluster and AWS outbound issuers their own keys,
    /// every other issuer the lab's key).
    pub jwks_json: Option<String>,
    /// `attributeMapping` (`google.subject` → `assertion.sub`, ...); empty: the default,
    /// `google.subject=assertion.sub`.
    pub attribute_mapping: Vec<(String, String)>,
    /// `attributeCondition` (the CEL subset); `None` admits every mapped token.
    pub attribute_condition: Option<String>,
}

impl LabPoolOidcProvider {
    /// The mapping, as Google applies it.
    pub fn mapping(
        &self,
    ) -> Result<
        crate::policy::issuer::google_sts::AttributeMapping,
        crate::policy::issuer::google_sts::MappingError,
    > {
        use crate::policy::issuer::google_sts::AttributeMapping;
        if self.attribute_mapping.is_empty() {
            return Ok(AttributeMapping::oidc_default());
        }
        AttributeMapping::parse(&self.attribute_mapping)
    }
}

/// An AWS provider of a pool, with the default attribute mapping
/// ([`crate::policy::workload_identity::aws_default_mapping`]).
#[derive(Debug, Clone)]
pub struct LabAwsProvider {
    /// The provider id, e.g. `aws-lab`.
    pub provider_id: String,
    /// The only AWS account whose callers the provider accepts.
    pub aws_account_id: String,
    /// A CEL condition (the subset of [`crate::policy::cel`]); `None` admits every caller of
    /// the account. Checked at start: an unsupported construct is a configuration error.
    pub attribute_condition: Option<String>,
}

/// `roles/iam.workloadIdentityUser` for `member` on `service_account`.
#[derive(Debug, Clone)]
pub struct LabWorkloadIdentityUser {
    /// The service account's email.
    pub service_account: String,
    /// `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/subject/S`
    /// or `principalSet://.../attribute.NAME/VALUE` or `principalSet://.../POOL/*`.
    pub member: String,
}

/// A bucket and who may list it.
#[derive(Debug, Clone)]
pub struct LabBucket {
    /// The bucket name.
    pub name: String,
    /// The project id it lives in.
    pub project_id: String,
    /// Members allowed to see it: `serviceAccount:EMAIL`, `user:EMAIL`, `principal://...`,
    /// `principalSet://...`.
    pub viewers: Vec<String>,
}

/// The EC2 instance behind the IMDSv2 emulation.
#[derive(Debug, Clone)]
pub struct LabEc2Instance {
    /// `i-` + 17 hex digits; also the session name of the instance role's credentials.
    pub instance_id: String,
    /// The instance profile's role (a name in [`LabConfig::roles`]); its trust policy must
    /// admit `ec2.amazonaws.com`.
    pub role: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The availability zone, e.g. `us-east-1a`.
    pub availability_zone: String,
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
    /// The trust policy document (JSON), evaluated on every AssumeRoleWithWebIdentity, every
    /// AssumeRole (`{"AWS": ...}` principals) and when the instance or container endpoint hands
    /// out the role (`{"Service": "ec2.amazonaws.com"}`, `ecs-tasks.amazonaws.com`,
    /// `pods.eks.amazonaws.com`), as in AWS.
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
/// The demo project number (where the demo workload identity pool lives).
pub const DEMO_PROJECT_NUMBER: &str = "424242424242";
/// The demo workload identity pool.
pub const DEMO_POOL: &str = "keyless-pool";
/// The demo AWS provider of [`DEMO_POOL`].
pub const DEMO_AWS_PROVIDER: &str = "aws-lab";
/// The demo OIDC provider of [`DEMO_POOL`]: tokens of [`DEMO_OIDC_ISSUER`] whose
/// `repository_owner` is `keyless-lab` (a GitHub-Actions-like issuer the lab signs for).
pub const DEMO_OIDC_PROVIDER: &str = "oidc-lab";
/// The issuer [`DEMO_OIDC_PROVIDER`] trusts; sign its tokens with [`super::Lab::sign_claims`].
pub const DEMO_OIDC_ISSUER: &str = "https://token.keyless-lab.test";

impl LabConfig {
    /// The world `keyless demo` shows: a deployer VM, a CI runner that can be impersonated, and an
    /// intruder from another project whose tokens the trust policies must refuse.
    ///
    /// For the AWS → Google direction: the role `aws-workload` (assumable by the IAM user
    /// `ci-user` and the account, by the `eks-pod` service account's tokens as an IRSA stand-in,
    /// and by the EC2/ECS/EKS services) is the one identity the pool `keyless-pool` admits
    /// (provider `aws-lab`'s condition); `copycat@` may be impersonated by its sessions; the
    /// bucket `keyless-lab-artifacts` is visible to copycat and to those sessions directly.
    /// `ci-user`'s own ARN is refused by the condition, a realistic mistake.
    pub fn demo() -> Self {
        let sa = |email: &str, id: &str, creators: &[&str]| LabServiceAccount {
            email: email.to_string(),
            unique_id: id.to_string(),
            token_creators: creators.iter().map(|s| s.to_string()).collect(),
        };
        let deployer = "deployer@keyless-lab.iam.gserviceaccount.com";
        let aws_workload_principal_set = format!(
            "principalSet:{}/attribute.aws_role/{AWS_WORKLOAD_ROLE}",
            crate::policy::workload_identity::pool_resource(DEMO_PROJECT_NUMBER, DEMO_POOL)
        );
        let mut demo = Self {
            account_id: DEMO_ACCOUNT_ID.to_string(),
            project_id: "keyless-lab".to_string(),
            project_number: DEMO_PROJECT_NUMBER.to_string(),
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
                sa(COPYCAT, "100000000000000000003", &[]),
                sa(EKS_POD, "100000000000000000004", &[]),
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
                    name: "github-deploy".to_string(),
                    trust_policy: oidc_trust_policy(
                        DEMO_GITHUB_ISSUER,
                        "StringLike",
                        &format!("repo:{DEMO_GITHUB_REPOSITORY}:ref:refs/heads/main"),
                    ),
                    max_session_duration: 3600,
                },
                LabRole {
                    name: "k8s-deploy".to_string(),
                    trust_policy: oidc_trust_policy(
                        DEMO_KUBERNETES_ISSUER,
                        "StringEquals",
                        "system:serviceaccount:default:deployer",
                    ),
                    max_session_duration: 3600,
                },
                LabRole {
                    name: "ci-deploy".to_string(),
                    trust_policy: google_trust_policy("100000000000000000002"),
                    max_session_duration: 3600,
                },
                LabRole {
                    name: "aws-workload".to_string(),
                    trust_policy: aws_workload_trust_policy("100000000000000000004"),
                    max_session_duration: 43200,
                },
            ],
            id_token_lifetime: Duration::from_secs(3600),
            credential_lifetime_cap: None,
            upstream_latency: Duration::ZERO,
            throttle_above: None,
            iam_users: vec![LabIamUser {
                name: "ci-user".to_string(),
                access_key_id: "AKIALABCIUSER0000001".to_string(),
                secret_access_key: "labCiUserSecretKey0000000000000000000001".to_string(),
            }],
            workload_identity_pools: vec![LabWorkloadIdentityPool {
                pool_id: DEMO_POOL.to_string(),
                providers: vec![LabAwsProvider {
                    provider_id: DEMO_AWS_PROVIDER.to_string(),
                    aws_account_id: DEMO_ACCOUNT_ID.to_string(),
                    attribute_condition: Some(format!(
                        "attribute.aws_role == \"{AWS_WORKLOAD_ROLE}\""
                    )),
                }],
                oidc_providers: vec![LabPoolOidcProvider {
                    provider_id: DEMO_OIDC_PROVIDER.to_string(),
                    issuer_uri: DEMO_OIDC_ISSUER.to_string(),
                    allowed_audiences: Vec::new(),
                    jwks_json: None,
                    attribute_mapping: vec![
                        ("google.subject".into(), "assertion.sub".into()),
                        (
                            "attribute.repository_owner".into(),
                            "assertion.repository_owner".into(),
                        ),
                    ],
                    attribute_condition: Some(
                        "assertion.repository_owner == 'keyless-lab'".to_string(),
                    ),
                }],
            }],
            workload_identity_users: vec![
                LabWorkloadIdentityUser {
                    service_account: COPYCAT.to_string(),
                    member: aws_workload_principal_set.clone(),
                },
                LabWorkloadIdentityUser {
                    service_account: COPYCAT.to_string(),
                    member: format!(
                        "principalSet:{}/attribute.repository_owner/keyless-lab",
                        crate::policy::workload_identity::pool_resource(
                            DEMO_PROJECT_NUMBER,
                            DEMO_POOL
                        )
                    ),
                },
            ],
            buckets: vec![LabBucket {
                name: "keyless-lab-artifacts".to_string(),
                project_id: "keyless-lab".to_string(),
                viewers: vec![
                    format!("serviceAccount:{COPYCAT}"),
                    aws_workload_principal_set,
                ],
            }],
            allow_service_account_lifetime_extension: false,
            ec2_instance: Some(LabEc2Instance {
                instance_id: "i-0123456789abcdef0".to_string(),
                role: "aws-workload".to_string(),
                region: "us-east-1".to_string(),
                availability_zone: "us-east-1a".to_string(),
            }),
            oidc_providers: vec![
                LabOidcProvider {
                    issuer: DEMO_GITHUB_ISSUER.to_string(),
                    client_ids: vec!["sts.amazonaws.com".to_string()],
                },
                LabOidcProvider {
                    issuer: DEMO_KUBERNETES_ISSUER.to_string(),
                    client_ids: vec!["sts.amazonaws.com".to_string()],
                },
            ],
            github_actions: Some(super::issuers::LabGithubActions {
                issuer: DEMO_GITHUB_ISSUER.to_string(),
                repository: DEMO_GITHUB_REPOSITORY.to_string(),
                git_ref: "refs/heads/main".to_string(),
                event_name: "push".to_string(),
                environment: None,
                run_id: "4242424242".to_string(),
                token_lifetime: Duration::from_secs(300),
            }),
            kubernetes: Some(super::issuers::LabKubernetes {
                issuer: DEMO_KUBERNETES_ISSUER.to_string(),
                audiences: vec!["sts.amazonaws.com".to_string()],
                token_lifetime: Duration::from_secs(3600),
            }),
            outbound_federation: false,
            other_accounts: vec![LabAccount {
                account_id: DEMO_PARTNER_ACCOUNT_ID.to_string(),
                roles: vec![LabRole {
                    name: DEMO_PARTNER_ROLE.to_string(),
                    trust_policy: partner_trust_policy(
                        &format!("arn:aws:iam::{DEMO_ACCOUNT_ID}:role/gcp-deploy"),
                        DEMO_PARTNER_EXTERNAL_ID,
                    ),
                    max_session_duration: 3600,
                }],
            }],
            data_access_logs: DEMO_DATA_ACCESS_SERVICES.map(String::from).to_vec(),
        };
        // The lab's other issuers, each with a provider of the pool and copycat bound to it.
        demo.workload_identity_pools[0].oidc_providers.extend([
            demo_google_provider(),
            demo_github_provider(),
            demo_kubernetes_provider(),
            demo_aws_oidc_provider(),
        ]);
        demo.workload_identity_users.extend([
            demo_pool_binding(&format!("attribute.email/{deployer}")),
            demo_pool_binding("attribute.email/ci-runner@keyless-lab.iam.gserviceaccount.com"),
            demo_pool_binding(&format!("attribute.repository/{DEMO_GITHUB_REPOSITORY}")),
            demo_pool_binding("attribute.namespace/default"),
            // aws-oidc's subject is the role (attributes are pool-wide: an
            // `attribute.aws_account` binding would admit the aws-lab provider's callers too).
            demo_pool_binding(&format!(
                "subject/arn:aws:iam::{DEMO_ACCOUNT_ID}:role/aws-workload"
            )),
        ]);
        demo
    }

    /// The AWS provider `provider` of pool `pool`, if it exists.
    pub fn aws_provider(&self, pool: &str, provider: &str) -> Option<&LabAwsProvider> {
        self.workload_identity_pools
            .iter()
            .find(|p| p.pool_id == pool)?
            .providers
            .iter()
            .find(|p| p.provider_id == provider)
    }

    /// The OIDC provider `provider` of pool `pool`, if it exists.
    pub fn pool_oidc_provider(&self, pool: &str, provider: &str) -> Option<&LabPoolOidcProvider> {
        self.workload_identity_pools
            .iter()
            .find(|p| p.pool_id == pool)?
            .oidc_providers
            .iter()
            .find(|p| p.provider_id == provider)
    }

    /// The IAM user with this name, if it exists.
    pub fn iam_user(&self, name: &str) -> Option<&LabIamUser> {
        self.iam_users.iter().find(|u| u.name == name)
    }

    /// The service account with this email, if it exists.
    pub fn service_account(&self, email: &str) -> Option<&LabServiceAccount> {
        self.service_accounts
            .iter()
            .find(|s| s.email.eq_ignore_ascii_case(email))
    }

    /// The IAM OIDC provider for tokens whose `iss` is `issuer`, if the account has one.
    pub fn oidc_provider(&self, issuer: &str) -> Option<&LabOidcProvider> {
        self.oidc_providers.iter().find(|p| p.issuer == issuer)
    }

    /// The role with this name, if it exists.
    pub fn role(&self, name: &str) -> Option<&LabRole> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The role `name` of account `account` (the lab account or one of `other_accounts`).
    pub fn role_in(&self, account: &str, name: &str) -> Option<&LabRole> {
        if account == self.account_id {
            return self.role(name);
        }
        self.other_accounts
            .iter()
            .find(|a| a.account_id == account)?
            .roles
            .iter()
            .find(|r| r.name == name)
    }
}

impl Default for LabConfig {
    fn default() -> Self {
        Self::demo()
    }
}

/// The demo pool's provider for Google's issuer (`metadata`, `impersonate:`): service accounts
/// of the lab project (`attribute.email`; deployer and ci-runner bound to copycat).
pub const DEMO_GOOGLE_PROVIDER: &str = "google-lab";
/// The demo pool's provider for [`DEMO_GITHUB_ISSUER`]: jobs of `keyless-lab`'s repositories,
/// `attribute.repository` bound to copycat for [`DEMO_GITHUB_REPOSITORY`].
pub const DEMO_GITHUB_PROVIDER: &str = "github-lab";
/// The demo pool's provider for [`DEMO_KUBERNETES_ISSUER`]: service accounts of the `default`
/// namespace (`attribute.namespace`, bound to copycat).
pub const DEMO_KUBERNETES_PROVIDER: &str = "k8s-lab";
/// The demo pool's provider for the lab account's AWS outbound issuer
/// ([`super::Lab::outbound_issuer`]; tokens exist once outbound federation is enabled):
/// the token's account must be the lab account; the `aws-workload` role's principal is bound to
/// copycat.
pub const DEMO_AWS_OIDC_PROVIDER: &str = "aws-oidc-lab";

/// `name` mapped as `attribute.name` from the claim expression `claim`.
fn attribute(name: &str, claim: &str) -> (String, String) {
    (format!("attribute.{name}"), claim.to_string())
}

fn demo_google_provider() -> LabPoolOidcProvider {
    LabPoolOidcProvider {
        provider_id: DEMO_GOOGLE_PROVIDER.to_string(),
        issuer_uri: super::google_keys::GOOGLE_ISSUER.to_string(),
        allowed_audiences: Vec::new(),
        jwks_json: None,
        attribute_mapping: vec![
            ("google.subject".into(), "assertion.sub".into()),
            attribute("email", "assertion.email"),
        ],
        attribute_condition: Some(
            "assertion.email.endsWith('@keyless-lab.iam.gserviceaccount.com')".to_string(),
        ),
    }
}

fn demo_github_provider() -> LabPoolOidcProvider {
    LabPoolOidcProvider {
        provider_id: DEMO_GITHUB_PROVIDER.to_string(),
        issuer_uri: DEMO_GITHUB_ISSUER.to_string(),
        allowed_audiences: Vec::new(),
        jwks_json: None,
        attribute_mapping: vec![
            ("google.subject".into(), "assertion.sub".into()),
            attribute("repository", "assertion.repository"),
            attribute("repository_owner", "assertion.repository_owner"),
        ],
        attribute_condition: Some("assertion.repository_owner == 'keyless-lab'".to_string()),
    }
}

fn demo_kubernetes_provider() -> LabPoolOidcProvider {
    LabPoolOidcProvider {
        provider_id: DEMO_KUBERNETES_PROVIDER.to_string(),
        issuer_uri: DEMO_KUBERNETES_ISSUER.to_string(),
        allowed_audiences: Vec::new(),
        jwks_json: None,
        attribute_mapping: vec![
            ("google.subject".into(), "assertion.sub".into()),
            attribute("namespace", "assertion['kubernetes.io'].namespace"),
            attribute(
                "service_account",
                "assertion['kubernetes.io'].serviceaccount.name",
            ),
        ],
        attribute_condition: Some("assertion['kubernetes.io'].namespace == 'default'".to_string()),
    }
}

fn demo_aws_oidc_provider() -> LabPoolOidcProvider {
    LabPoolOidcProvider {
        provider_id: DEMO_AWS_OIDC_PROVIDER.to_string(),
        issuer_uri: super::aws_outbound::issuer_for(DEMO_ACCOUNT_ID),
        allowed_audiences: Vec::new(),
        jwks_json: None,
        attribute_mapping: vec![
            ("google.subject".into(), "assertion.sub".into()),
            attribute(
                "aws_account",
                "assertion['https://sts.amazonaws.com/'].aws_account",
            ),
        ],
        attribute_condition: Some(format!(
            "assertion['https://sts.amazonaws.com/'].aws_account == '{DEMO_ACCOUNT_ID}'"
        )),
    }
}

/// copycat may be impersonated by the demo pool's principals named by `rest`:
/// `attribute.NAME/VALUE` (a principalSet) or `subject/SUBJECT` (one principal).
fn demo_pool_binding(rest: &str) -> LabWorkloadIdentityUser {
    let kind = if rest.starts_with("subject/") {
        "principal"
    } else {
        "principalSet"
    };
    LabWorkloadIdentityUser {
        service_account: COPYCAT.to_string(),
        member: format!(
            "{kind}:{}/{rest}",
            crate::policy::workload_identity::pool_resource(DEMO_PROJECT_NUMBER, DEMO_POOL)
        ),
    }
}

/// The demo GitHub Actions issuer (GitHub's own name; the lab signs with its own key).
pub const DEMO_GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The repository whose `main` branch the demo role `github-deploy` trusts.
pub const DEMO_GITHUB_REPOSITORY: &str = "keyless-lab/app";
/// The demo EKS cluster's issuer (the role `k8s-deploy` trusts `default:deployer` of it).
pub const DEMO_KUBERNETES_ISSUER: &str =
    "https://oidc.eks.us-east-1.amazonaws.com/id/KEYLESSLABCLUSTER0001";

/// The trust policy for the IAM OIDC provider of `issuer` in the demo account: `HOST/PATH:aud`
/// pinned to STS, `HOST/PATH:sub` matched by `operator` (`StringEquals`, or `StringLike` for
/// GitHub's subjects).
pub fn oidc_trust_policy(issuer: &str, operator: &str, sub: &str) -> String {
    let provider = issuer.trim_start_matches("https://").trim_end_matches('/');
    let mut condition = serde_json::json!({
        "StringEquals": {format!("{provider}:aud"): "sts.amazonaws.com"}
    });
    condition[operator][format!("{provider}:sub")] = sub.into();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{DEMO_ACCOUNT_ID}:oidc-provider/{provider}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition
        }]
    })
    .to_string()
}

/// The demo partner account: its role [`DEMO_PARTNER_ROLE`] trusts the lab account's
/// `gcp-deploy` sessions that send the external ID [`DEMO_PARTNER_EXTERNAL_ID`].
pub const DEMO_PARTNER_ACCOUNT_ID: &str = "210987654321";
/// The partner account's role for the cross-account chain.
pub const DEMO_PARTNER_ROLE: &str = "partner-readonly";
/// The external ID the partner gave the lab account.
pub const DEMO_PARTNER_EXTERNAL_ID: &str = "keyless-lab-partner";

/// The trust policy of a third party's role: `caller_role` may assume it (and tag the session
/// and set a source identity) when it sends `external_id`, the confused-deputy guard AWS
/// recommends for cross-account access.
pub fn partner_trust_policy(caller_role: &str, external_id: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PartnerWithExternalId",
            "Effect": "Allow",
            "Principal": {"AWS": caller_role},
            "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
        }]
    })
    .to_string()
}

/// The demo service account that AWS workloads impersonate.
const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
/// The demo service account whose tokens stand in for an EKS cluster's IRSA tokens.
const EKS_POD: &str = "eks-pod@keyless-lab.iam.gserviceaccount.com";
/// `attribute.aws_role` of every `aws-workload` session.
const AWS_WORKLOAD_ROLE: &str = "arn:aws:sts::123456789012:assumed-role/aws-workload";

/// `aws-workload`'s trust: the IAM user `ci-user` and the account (`sts:AssumeRole`), a Google
/// service account's tokens (`sts:AssumeRoleWithWebIdentity`, standing in for IRSA), and the
/// services that hand roles to instances, tasks and pods.
fn aws_workload_trust_policy(web_identity_unique_id: &str) -> String {
    let mut web_identity: serde_json::Value =
        serde_json::from_str(&google_trust_policy(web_identity_unique_id))
            .expect("google_trust_policy is JSON");
    let web_identity = web_identity["Statement"][0].take();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CiUserAndAccount",
                "Effect": "Allow",
                "Principal": {"AWS": [
                    format!("arn:aws:iam::{DEMO_ACCOUNT_ID}:user/ci-user"),
                    format!("arn:aws:iam::{DEMO_ACCOUNT_ID}:root"),
                ]},
                "Action": "sts:AssumeRole"
            },
            web_identity,
            {
                "Sid": "ComputeServices",
                "Effect": "Allow",
                "Principal": {"Service": [
                    "ec2.amazonaws.com", "ecs-tasks.amazonaws.com", "pods.eks.amazonaws.com"
                ]},
                "Action": ["sts:AssumeRole", "sts:TagSession"]
            }
        ]
    })
    .to_string()
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
        let partner = demo
            .role_in(DEMO_PARTNER_ACCOUNT_ID, DEMO_PARTNER_ROLE)
            .unwrap();
        crate::policy::PolicyDocument::parse(&partner.trust_policy).unwrap();
        assert!(demo.role_in(DEMO_ACCOUNT_ID, "gcp-deploy").is_some());
        assert!(demo
            .role_in(DEMO_PARTNER_ACCOUNT_ID, "gcp-deploy")
            .is_none());
        let debug = format!("{demo:?}");
        assert!(!debug.contains(&demo.users[0].client_secret), "{debug}");
        assert!(!debug.contains(&demo.users[0].refresh_token), "{debug}");
    }
}
