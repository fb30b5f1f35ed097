//! The real `keyless` binary hands AWS credentials to real, unmodified AWS clients (the aws
//! CLI and boto3, from the venv `tools/test` prepares), and moto, with auth enforcement on,
//! checks every SigV4 signature they make with those credentials and every action against
//! the role's IAM policy.
//!
//! What moto cannot tell us: it accepts any web identity token for any role (no JWT, trust
//! policy or duration checks), so trust decisions are tested against the lab, not here.
//!
//! How the tests stay deterministic under moto's auth switch (see `support::moto`): setup runs
//! with auth off; then either
//! - `Federation::warm_cache` allows exactly one unauthenticated request, runs the very
//!   command line the profile's `credential_process` runs (its one unsigned
//!   AssumeRoleWithWebIdentity uses the allowance and fills keyless' cache), and turns
//!   enforcement fully on; every later `credential_process` run is answered from the cache,
//!   and a cache miss would fail loudly (moto answers 500); or
//! - a test allows exactly one unauthenticated request and lets the client's first
//!   `credential_process` run take it (the cold path a user meets first).

use crate::support;

use serde_json::json;
use support::{expect_failure, expect_success, AwsHome, GoogleIdentity, Moto};

/// moto's default account.
const ACCOUNT: &str = "123456789012";
/// The role the deployer's Google identity may assume, allowed S3, SQS and STS.
const ROLE: &str = "keyless-ci-deployer";
/// A role the same identity may assume but that has no permissions at all.
const BARE_ROLE: &str = "keyless-ci-bare";
const SESSION: &str = "ci-deployer";
const BUCKET: &str = "keyless-ci-artifacts";
const QUEUE: &str = "keyless-ci-jobs";
/// The profile in `~/.aws/config` whose credential_process runs keyless for [`ROLE`].
const PROFILE: &str = "deployer";
/// Same for [`BARE_ROLE`].
const BARE_PROFILE: &str = "bare";

/// One moto with the AWS side of a Google → AWS federation, and a home configured to use it.
struct Federation {
    moto: Moto,
    home: AwsHome,
    token_file: std::path::PathBuf,
    role_arn: String,
    bare_role_arn: String,
    queue_url: String,
}

impl Federation {
    /// Starts moto, creates the roles, bucket and queue (auth still off), writes the Google ID
    /// token file and a `credential_process` profile per role.
    fn start() -> Self {
        let moto = Moto::start();
        let identity = GoogleIdentity::deployer();
        let permissions = json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sqs:*", "sts:*"], "Resource": "*"}]
        });
        let created = moto.create(&json!({
            "roles": [
                {"name": ROLE, "trust_policy": identity.trust_policy(), "policy": permissions},
                {"name": BARE_ROLE, "trust_policy": identity.trust_policy(), "policy": null},
            ],
            "buckets": [BUCKET],
            "queues": [QUEUE],
        }));
        let home = AwsHome::new(&moto.endpoint());
        let token_file = home.write_token("google-id-token", &identity.id_token());
        let federation = Self {
            role_arn: created["roles"][ROLE].as_str().expect("role ARN").into(),
            bare_role_arn: created["roles"][BARE_ROLE]
                .as_str()
                .expect("role ARN")
                .into(),
            queue_url: created["queues"][QUEUE].as_str().expect("queue URL").into(),
            moto,
            home,
            token_file,
        };
        assert_eq!(
            federation.role_arn,
            format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}")
        );
        for (profile, role) in [
            (PROFILE, &federation.role_arn),
            (BARE_PROFILE, &federation.bare_role_arn),
        ] {
            federation
                .home
                .add_credential_process_profile(profile, &federation.credentials_args(role));
        }
        federation
    }

    /// `aws credentials` arguments for `role`, exactly as the profiles' credential_process
    /// lines carry them (so a run with them fills the cache entry those lines read).
    fn credentials_args(&self, role_arn: &str) -> Vec<String> {
        [
            "aws",
            "credentials",
            "--role-arn",
            role_arn,
            "--token-source",
            &format!("file:{}", self.token_file.display()),
            "--session-name",
            SESSION,
        ]
        .map(String::from)
        .to_vec()
    }

    /// The same flags for `aws exec` / `aws whoami`: everything after `aws credentials`.
    fn role_flags(&self, role_arn: &str) -> Vec<String> {
        self.credentials_args(role_arn).split_off(2)
    }

    /// Fills keyless' cache for `role_arn` with moto allowing exactly that one unsigned
    /// exchange, then turns enforcement fully on. Returns the credential_process JSON.
    fn warm_cache(&self, role_arn: &str) -> serde_json::Value {
        self.moto.reset_auth(1);
        let out = expect_success(&mut self.home.keyless(self.credentials_args(role_arn)));
        self.moto.reset_auth(0);
        out.json()
    }

    fn assumed_role_arn(role: &str) -> String {
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{SESSION}")
    }
}

/// The aws CLI, configured with nothing but a `credential_process` line that runs keyless,
/// assumes the role from a cold cache and makes STS, S3 and SQS calls that moto verifies:
/// the first run exchanges the token (using moto's single allowance for the unsigned call),
/// later runs are served from keyless' cache (a second exchange would get a 500).
#[test]
fn aws_cli_works_through_credential_process() {
    let f = Federation::start();
    f.moto.reset_auth(1);

    let identity =
        expect_success(
            &mut f
                .home
                .aws(["sts", "get-caller-identity", "--profile", PROFILE]),
        )
        .json();
    assert_eq!(
        identity["Arn"],
        Federation::assumed_role_arn(ROLE),
        "{identity}"
    );
    assert_eq!(identity["Account"], ACCOUNT, "{identity}");

    let listing = expect_success(&mut f.home.aws(["s3", "ls", "--profile", PROFILE]));
    assert!(
        listing.stdout.contains(BUCKET),
        "bucket not listed:\n{listing}"
    );

    // aws CLI v1 pins SQS to its legacy host name for known regions and ignores
    // AWS_ENDPOINT_URL there (awscli/customizations/overridesslcommonname.py), hence the flag.
    let sent = expect_success(&mut f.home.aws([
        "sqs",
        "send-message",
        "--endpoint-url",
        &f.moto.endpoint(),
        "--profile",
        PROFILE,
        "--queue-url",
        &f.queue_url,
        "--message-body",
        "from the aws CLI",
    ]))
    .json();
    assert!(
        sent["MessageId"].as_str().is_some_and(|id| !id.is_empty()),
        "{sent}"
    );
}

/// boto3's default credential chain, given only `AWS_PROFILE`, runs keyless through
/// `credential_process` and makes STS, S3 and SQS calls that moto verifies.
#[test]
fn boto3_works_through_credential_process() {
    let f = Federation::start();
    let issued = f.warm_cache(&f.role_arn);

    let out = expect_success(
        f.home
            .python("boto3_calls.py", [&f.queue_url])
            .env("AWS_PROFILE", PROFILE),
    )
    .json();
    assert_eq!(out["arn"], Federation::assumed_role_arn(ROLE), "{out}");
    assert_eq!(out["access_key_id"], issued["AccessKeyId"], "{out}");
    assert!(
        out["buckets"].as_array().unwrap().contains(&json!(BUCKET)),
        "{out}"
    );
    assert!(
        out["message_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{out}"
    );
}

/// The control that makes the other tests mean something: moto, as set up here, really
/// checks. A request signed with keyless' key id and session token but a wrong secret is
/// refused (the same profile with the right secret is accepted); a role whose policy allows
/// nothing is denied S3; and a new unsigned exchange is refused once enforcement is on.
#[test]
fn moto_refuses_bad_signatures_missing_permissions_and_unallowed_exchanges() {
    let f = Federation::start();
    f.moto.reset_auth(1);
    let issued = expect_success(&mut f.home.keyless(f.credentials_args(&f.role_arn))).json();
    f.moto.reset_auth(1);
    expect_success(&mut f.home.keyless(f.credentials_args(&f.bare_role_arn)));
    f.moto.reset_auth(0);

    let key_id = issued["AccessKeyId"].as_str().expect("AccessKeyId");
    let secret = issued["SecretAccessKey"].as_str().expect("SecretAccessKey");
    let token = issued["SessionToken"].as_str().expect("SessionToken");
    f.home.add_static_profile("genuine", key_id, secret, token);
    f.home.add_static_profile(
        "forged",
        key_id,
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFORGEDKEY",
        token,
    );

    let genuine =
        expect_success(
            &mut f
                .home
                .aws(["sts", "get-caller-identity", "--profile", "genuine"]),
        )
        .json();
    assert_eq!(
        genuine["Arn"],
        Federation::assumed_role_arn(ROLE),
        "{genuine}"
    );
    let forged =
        expect_failure(
            &mut f
                .home
                .aws(["sts", "get-caller-identity", "--profile", "forged"]),
        );
    assert!(forged.stderr.contains("SignatureDoesNotMatch"), "{forged}");

    // The bare role is who it says (GetCallerIdentity needs no permission) but may do nothing.
    let bare =
        expect_success(
            &mut f
                .home
                .aws(["sts", "get-caller-identity", "--profile", BARE_PROFILE]),
        )
        .json();
    assert_eq!(
        bare["Arn"],
        Federation::assumed_role_arn(BARE_ROLE),
        "{bare}"
    );
    let denied = expect_failure(&mut f.home.aws(["s3", "ls", "--profile", BARE_PROFILE]));
    assert!(denied.stderr.contains("AccessDenied"), "{denied}");

    // With no allowance left, the unsigned AssumeRoleWithWebIdentity fails (moto: 500).
    let mut uncached = f.home.keyless(f.credentials_args(&f.role_arn));
    uncached.arg("--no-cache");
    let refused = expect_failure(&mut uncached);
    assert!(refused.stderr.contains("HTTP 500"), "{refused}");
}

/// `keyless aws exec` gives an unmodified child (the aws CLI, no profile) the role's
/// credentials in its environment.
#[test]
fn exec_gives_the_child_the_role() {
    let f = Federation::start();
    f.warm_cache(&f.role_arn);

    let mut exec = f.home.keyless(["aws", "exec"]);
    exec.args(f.role_flags(&f.role_arn)).args([
        "--",
        "aws",
        "--output",
        "json",
        "sts",
        "get-caller-identity",
    ]);
    let identity = expect_success(&mut exec).json();
    assert_eq!(
        identity["Arn"],
        Federation::assumed_role_arn(ROLE),
        "{identity}"
    );
}

/// `keyless aws exec` exits with its child's exit code, so scripts see the command's result.
#[test]
fn exec_passes_the_child_exit_code_through() {
    let f = Federation::start();
    f.warm_cache(&f.role_arn);

    let mut exec = f.home.keyless(["aws", "exec"]);
    exec.args(f.role_flags(&f.role_arn)).args([
        "--",
        "sh",
        "-c",
        "test -n \"$AWS_SESSION_TOKEN\" || exit 90; exit 7",
    ]);
    let out = support::process::run(&mut exec);
    assert_eq!(out.code(), 7, "{out}");
}

/// `keyless aws credentials --format env`, eval'd by `sh`, leaves an environment in which
/// the aws CLI (no profile) is the role and can reach S3.
#[test]
fn env_format_evals_into_a_working_aws_environment() {
    let f = Federation::start();
    f.warm_cache(&f.role_arn);

    let script = r#"
        set -e
        eval "$("$0" "$@" --format env)"
        test -n "$AWS_CREDENTIAL_EXPIRATION"
        aws --output json sts get-caller-identity
        aws s3 ls >&2
    "#;
    let mut sh = f.home.command("sh");
    sh.args(["-c", script])
        .arg(support::aws_home::keyless_bin())
        .args(f.credentials_args(&f.role_arn));
    let out = expect_success(&mut sh);
    assert_eq!(
        out.json()["Arn"],
        Federation::assumed_role_arn(ROLE),
        "{out}"
    );
    assert!(out.stderr.contains(BUCKET), "{out}");
}

/// Role chaining through `credential_process`: the web identity lands in the deployer role,
/// whose credentials sign an `AssumeRole` into a partner role (with an external ID and a
/// session tag on the wire), and the aws CLI acts as the partner role. With auth on, moto
/// verifies the AssumeRole signature, the deployer's permission to call it and the partner
/// role's trust policy with `sts:ExternalId` (it matches an `AWS` principal only against the
/// caller's session ARN, not its role ARN as AWS does, hence both in the policy; it checks no
/// absent condition key, session length or tags: the lab tests those).
#[test]
fn aws_cli_gets_the_chained_role_through_credential_process() {
    const PARTNER: &str = "keyless-ci-partner";
    let f = Federation::start();
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": [f.role_arn.clone(), Federation::assumed_role_arn(ROLE)]},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"sts:ExternalId": "keyless-ci-partner-id"}}
        }]
    });
    let created = f.moto.create(&json!({
        "roles": [{"name": PARTNER, "trust_policy": trust, "policy": null}],
    }));
    let partner = created["roles"][PARTNER]
        .as_str()
        .expect("role ARN")
        .to_string();
    let mut args = f.credentials_args(&f.role_arn);
    args.extend(["--chain-role", &partner, "--tag", "team=payments ci"].map(String::from));
    let mut with_id = args.clone();
    with_id.extend(["--external-id", "keyless-ci-partner-id"].map(String::from));
    f.home.add_credential_process_profile("chained", &with_id);
    // One unsigned AssumeRoleWithWebIdentity; the AssumeRole after it is signed and checked.
    f.moto.reset_auth(1);
    let identity =
        expect_success(
            &mut f
                .home
                .aws(["sts", "get-caller-identity", "--profile", "chained"]),
        )
        .json();
    assert_eq!(
        identity["Arn"],
        Federation::assumed_role_arn(PARTNER),
        "{identity}"
    );
    // The partner role may do nothing: S3 is denied, so these really are its credentials.
    let denied = expect_failure(&mut f.home.aws(["s3", "ls", "--profile", "chained"]));
    assert!(denied.stderr.contains("AccessDenied"), "{denied}");
    // With a wrong external ID moto's trust check refuses: exit 3, naming the condition. (moto
    // lets a missing one through: a condition on an absent key passes there, unlike in AWS.)
    f.moto.reset_auth(1);
    let mut refused = f.home.keyless(&args);
    refused.args(["--no-cache", "--external-id", "someone-elses-id"]);
    let out = support::process::run(&mut refused);
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stderr.contains("sts:ExternalId set"), "{out}");
    assert!(out.stderr.contains(&partner), "{out}");
}
