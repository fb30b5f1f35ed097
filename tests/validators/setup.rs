//! `keyless setup`, the real binary: every format of the GCP → AWS direction embeds exactly the
//! recommended trust policy, which the lab accepts for a real exchange and the linter passes;
//! each output is syntactically valid for its tool; bad inputs name the flag and the fix. The
//! OIDC pairs (github, k8s → aws, gcp; aws-oidc → gcp) are held to the same: exact policies in
//! every format, accepted by the lab's STS, lint clean. aws-oidc → aws is refused, as AWS refuses
//! those tokens.

use crate::support;

use std::process::{Command, Output};

use keyless::lab::LabConfig;
use serde_json::{json, Value};
use support::LabWorld;

const DEPLOYER: &str = "deployer@keyless-lab.iam.gserviceaccount.com";
const DEPLOYER_ID: &str = "100000000000000000001";

fn keyless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(args)
        .output()
        .expect("run keyless")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "keyless failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn gcp_to_aws(format: &str, extra: &[&str]) -> String {
    let mut with_id = vec!["--service-account-id", DEPLOYER_ID];
    with_id.extend_from_slice(extra);
    gcp_to_aws_creating(format, &with_id)
}

/// Without `--service-account-id`: the configuration creates the service account.
fn gcp_to_aws_creating(format: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "setup",
        "gcp-to-aws",
        "--service-account",
        DEPLOYER,
        "--aws-account",
        "123456789012",
        "--role-name",
        "gcp-deploy",
        "--policy-arn",
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "--max-session-duration",
        "4h",
        "--format",
        format,
    ];
    args.extend_from_slice(extra);
    stdout(&keyless(&args))
}

/// `keyless setup aws-to-gcp` for the lab's federation, before `--role` and `--format`.
const AWS_TO_GCP_ARGS: &[&str] = &[
    "setup",
    "aws-to-gcp",
    "--project-id",
    "keyless-lab",
    "--project-number",
    "424242424242",
    "--pool",
    "keyless-pool",
    "--provider",
    "aws-lab",
    "--aws-account",
    "123456789012",
    "--aws-role",
    "aws-workload",
    "--service-account",
    "copycat@keyless-lab.iam.gserviceaccount.com",
];

fn aws_to_gcp(format: &str) -> String {
    let mut args = AWS_TO_GCP_ARGS.to_vec();
    args.extend(["--role", "roles/storage.objectViewer", "--format", format]);
    stdout(&keyless(&args))
}

fn expected_policy(audience: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": "accounts.google.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                "accounts.google.com:aud": DEPLOYER_ID,
                "accounts.google.com:oaud": audience,
                "accounts.google.com:sub": DEPLOYER_ID
            }}
        }]
    })
}

/// The document between `<<'EOF'` and `EOF` in the shell script.
fn heredoc_policy(script: &str) -> Value {
    let start = script.find("<<'EOF'\n").expect("a quoted heredoc") + "<<'EOF'\n".len();
    let end = start + script[start..].find("\nEOF\n").expect("heredoc end");
    serde_json::from_str(&script[start..end]).expect("the heredoc is JSON")
}

/// The pinned venv's Python (tools/test prepares it; a missing venv fails with the fix).
fn python() -> String {
    support::venv::bin("python").display().to_string()
}

fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn assert_ok(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shell script's heredoc is exactly the recommended policy, and the lab's STS honours it:
/// the deployer's metadata token becomes credentials for the role carrying it.
#[tokio::test(flavor = "multi_thread")]
async fn generated_trust_policy_is_exact_and_the_lab_accepts_it() {
    let policy = heredoc_policy(&gcp_to_aws("shell", &[]));
    assert_eq!(policy, expected_policy("sts.amazonaws.com"));

    let mut config = LabConfig::demo();
    let role = config
        .roles
        .iter_mut()
        .find(|r| r.name == "gcp-deploy")
        .unwrap();
    role.trust_policy = policy.to_string();
    let w = LabWorld::start_with(config).await;
    let out = w
        .keyless(&["aws", "credentials", "--role-arn", &w.role("gcp-deploy")])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_successes, 1);
}

/// A custom audience is pinned as `oaud`, and the command printed for the workload asks for it.
#[test]
fn custom_audience_is_pinned() {
    let script = gcp_to_aws("shell", &["--audience", "my-aws-roles"]);
    assert_eq!(heredoc_policy(&script), expected_policy("my-aws-roles"));
    assert!(script.contains("--audience my-aws-roles"), "{script}");
}

/// The linter has nothing to say about the generated policy, even at low severity.
#[test]
fn generated_trust_policy_lints_clean() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(
        &dir,
        "trust.json",
        &heredoc_policy(&gcp_to_aws("shell", &[])).to_string(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(["lint", "--fail-on", "low", &file])
        .env_remove("KEYLESS_FAIL_ON")
        .env_remove("KEYLESS_LINT_FORMAT")
        .output()
        .unwrap();
    assert_ok(out, "keyless lint --fail-on low");
}

#[test]
fn shell_scripts_are_valid_bash() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = [
        ("gcp-to-aws.sh", gcp_to_aws("shell", &[])),
        ("aws-to-gcp.sh", aws_to_gcp("shell")),
        ("gcp-to-aws-create.sh", gcp_to_aws_creating("shell", &[])),
    ];
    let shellcheck = support::tools::installed("shellcheck");
    assert!(
        shellcheck || std::env::var_os("CI").is_none(),
        "CI must check the generated scripts with shellcheck: .ci/run installs it (apt-get install shellcheck)"
    );
    if !shellcheck {
        eprintln!("note: shellcheck not installed; only `bash -n` checked");
    }
    for (name, text) in &scripts {
        assert!(text.starts_with("#!/usr/bin/env bash\nset -euo pipefail\n"));
        let file = write_temp(&dir, name, text);
        assert_ok(
            Command::new("bash").args(["-n", &file]).output().unwrap(),
            "bash -n",
        );
        if shellcheck {
            assert_ok(
                Command::new("shellcheck").arg(&file).output().unwrap(),
                "shellcheck",
            );
        }
    }
    let script = &scripts[0].1;
    assert!(script.contains("aws iam create-role"), "{script}");
    assert!(
        script.contains("--assume-role-policy-document \"file://$trust_policy\""),
        "{script}"
    );
    assert!(
        script.contains("--max-session-duration '14400'"),
        "{script}"
    );
    assert!(
        script.contains("aws iam attach-role-policy --role-name 'gcp-deploy' --policy-arn 'arn:aws:iam::aws:policy/ReadOnlyAccess'"),
        "{script}"
    );
    // The account exists (its id was given): the script checks it and never creates it.
    assert!(!script.contains("service-accounts create"), "{script}");
    assert!(
        scripts[2]
            .1
            .contains("gcloud iam service-accounts create 'deployer' --project 'keyless-lab'"),
        "{}",
        scripts[2].1
    );
}

/// The CloudFormation template is YAML whose role carries exactly the policy, the attachment,
/// the session limit, and the ARN as an output.
#[test]
fn cloudformation_is_yaml_with_the_exact_policy() {
    let template = gcp_to_aws("cloudformation", &[]);
    assert!(template.contains("AWSTemplateFormatVersion: \"2010-09-09\""));
    assert!(template.contains("Type: AWS::IAM::Role"));
    // The account exists (its id was given): nothing tells the user to create it.
    assert!(!template.contains("service-accounts create"), "{template}");
    let doc = cloudformation_document(&template);
    let props = &doc["Resources"]["KeylessRole"]["Properties"];
    assert_eq!(
        props["AssumeRolePolicyDocument"],
        expected_policy("sts.amazonaws.com")
    );
    assert_eq!(props["RoleName"], "gcp-deploy");
    assert_eq!(props["MaxSessionDuration"], 14400);
    assert_eq!(
        props["ManagedPolicyArns"],
        json!(["arn:aws:iam::aws:policy/ReadOnlyAccess"])
    );
    assert_eq!(
        doc["Outputs"]["RoleArn"]["Value"],
        json!({"GetAtt": "KeylessRole.Arn"})
    );
    assert!(doc.get("Parameters").is_none(), "{doc}");
}

/// Without `--service-account-id`, CloudFormation (which cannot create the Google account)
/// takes the id as a stack parameter, never a literal, and says how to create the account.
#[test]
fn cloudformation_takes_the_id_of_an_account_it_cannot_create_as_a_parameter() {
    let template = gcp_to_aws_creating("cloudformation", &[]);
    assert!(
        template.contains("#   gcloud iam service-accounts create deployer --project keyless-lab"),
        "{template}"
    );
    assert!(
        template.contains("ServiceAccountId=\"$(gcloud iam service-accounts describe deployer@keyless-lab.iam.gserviceaccount.com --format='value(uniqueId)')\""),
        "{template}"
    );
    let doc = cloudformation_document(&template);
    assert_eq!(doc["Parameters"]["ServiceAccountId"]["Type"], "String");
    let id = json!({"Ref": "ServiceAccountId"});
    assert_eq!(
        doc["Resources"]["KeylessRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
            ["Condition"]["StringEquals"],
        json!({
            "accounts.google.com:aud": id,
            "accounts.google.com:oaud": "sts.amazonaws.com",
            "accounts.google.com:sub": id
        })
    );
}

/// The template passes cfn-lint; returned as JSON (`!Tag x` becomes `{"Tag": "x"}`).
fn cloudformation_document(template: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(&dir, "template.yaml", template);
    // AWS's own template linter (pinned in the venv) finds nothing to say.
    assert_ok(
        Command::new(support::venv::bin("cfn-lint"))
            .arg(&file)
            .output()
            .unwrap(),
        "cfn-lint",
    );
    // CloudFormation's short forms (!GetAtt) are tags PyYAML must be told to accept.
    let script = "import json, sys, yaml\n\
        class L(yaml.SafeLoader): pass\n\
        L.add_multi_constructor('!', lambda l, s, n: {s: l.construct_scalar(n)})\n\
        print(json.dumps(yaml.load(open(sys.argv[1]), Loader=L)))";
    let out = Command::new(python())
        .args(["-c", script, &file])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_ok(out, "yaml.load");
    serde_json::from_str(&text).unwrap()
}

/// The Pulumi programs compile, and the policy passed to `json.dumps` is exactly the one.
#[test]
fn pulumi_programs_compile_with_the_exact_policy() {
    let dir = tempfile::tempdir().unwrap();
    let program = gcp_to_aws("pulumi", &[]);
    let creating = gcp_to_aws_creating("pulumi", &[]);
    for (name, text) in [
        ("gcp_to_aws.py", program.clone()),
        ("aws_to_gcp.py", aws_to_gcp("pulumi")),
        ("gcp_to_aws_create.py", creating.clone()),
    ] {
        let file = write_temp(&dir, name, &text);
        assert_ok(
            Command::new(python())
                .args(["-m", "py_compile", &file])
                .output()
                .unwrap(),
            "py_compile",
        );
    }
    assert!(program.contains("import pulumi_aws as aws"));
    assert!(program.contains("import pulumi_gcp as gcp"));
    let start = program.find("json.dumps(").unwrap() + "json.dumps(".len();
    let end = start + program[start..].find("\n)\n").unwrap();
    let policy: Value = serde_json::from_str(&program[start..end]).unwrap();
    assert_eq!(policy, expected_policy("sts.amazonaws.com"));
    // The account exists: looked up and its id checked, not created.
    assert!(!program.contains("serviceaccount.Account("), "{program}");
    assert!(
        program.contains(&format!(
            "service_account = gcp.serviceaccount.get_account(account_id=\"{DEPLOYER}\", project=\"keyless-lab\")\nif service_account.unique_id != \"{DEPLOYER_ID}\":"
        )),
        "{program}"
    );

    // Created here: the policy is built from the created account's unique_id, no literal id.
    assert!(creating.contains("service_account = gcp.serviceaccount.Account("));
    assert!(!creating.contains(DEPLOYER_ID), "{creating}");
    let marker = "service_account.unique_id.apply(\n    lambda unique_id: json.dumps(";
    let start = creating.find(marker).expect(marker) + marker.len();
    let end = start + creating[start..].find("\n    )\n)\n").unwrap();
    let policy = creating[start..end].replace(": unique_id", &format!(": \"{DEPLOYER_ID}\""));
    let policy: Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(policy, expected_policy("sts.amazonaws.com"));
}

/// The Terraform parses as HCL (python-hcl2, pinned in the venv); returned as hcl2's JSON
/// (expressions as `${...}`, string literals with their quotes).
fn assert_hcl(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(&dir, "main.tf", text);
    let out = Command::new(python())
        .args([
            "-c",
            "import hcl2, json, sys; print(json.dumps(hcl2.load(open(sys.argv[1]))))",
            &file,
        ])
        .output()
        .unwrap();
    let json = String::from_utf8(out.stdout.clone()).unwrap();
    assert_ok(out, "python-hcl2");
    serde_json::from_str(&json).unwrap()
}

/// The blocks of one kind (`resource`, `data`) and type, by name, from hcl2's JSON.
fn hcl_blocks(doc: &Value, kind: &str, type_: &str) -> Vec<(String, Value)> {
    let quoted = format!("\"{type_}\"");
    doc[kind]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.get(&quoted))
        .flat_map(|named| named.as_object().unwrap().clone())
        .collect()
}

/// The `values` of each condition of the trust policy document, by variable.
fn hcl_conditions(doc: &Value) -> Vec<(String, Value)> {
    let policy = hcl_blocks(doc, "data", "aws_iam_policy_document");
    assert_eq!(policy.len(), 1, "{doc}");
    let statements = policy[0].1["statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{doc}");
    statements[0]["condition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["test"], "\"StringEquals\"");
            (
                c["variable"].as_str().unwrap().to_string(),
                c["values"].clone(),
            )
        })
        .collect()
}

/// An existing account (its id given) is read with a data source whose postcondition holds the
/// id, never created; an account the configuration creates is referred to by `unique_id`,
/// never pinned as a literal it cannot know.
#[test]
fn terraform_reads_an_existing_account_and_refers_to_a_created_one() {
    let doc = assert_hcl(&gcp_to_aws("terraform", &[]));
    assert!(hcl_blocks(&doc, "resource", "google_service_account").is_empty());
    let data = hcl_blocks(&doc, "data", "google_service_account");
    assert_eq!(data.len(), 1, "{doc}");
    let account = &data[0].1;
    assert_eq!(account["account_id"], format!("\"{DEPLOYER}\""));
    assert_eq!(account["project"], "\"keyless-lab\"");
    assert_eq!(
        account["lifecycle"][0]["postcondition"][0]["condition"],
        format!("${{self.unique_id == \"{DEPLOYER_ID}\"}}")
    );
    let literal = json!([format!("\"{DEPLOYER_ID}\"")]);
    assert_eq!(
        hcl_conditions(&doc),
        [
            ("\"accounts.google.com:aud\"".to_string(), literal.clone()),
            (
                "\"accounts.google.com:oaud\"".to_string(),
                json!(["\"sts.amazonaws.com\""])
            ),
            ("\"accounts.google.com:sub\"".to_string(), literal),
        ]
    );

    let tf = gcp_to_aws_creating("terraform", &[]);
    assert!(!tf.contains(DEPLOYER_ID), "no literal id:\n{tf}");
    let doc = assert_hcl(&tf);
    assert!(hcl_blocks(&doc, "data", "google_service_account").is_empty());
    let created = hcl_blocks(&doc, "resource", "google_service_account");
    assert_eq!(created.len(), 1, "{doc}");
    assert_eq!(created[0].0, "\"keyless\"");
    assert_eq!(created[0].1["account_id"], "\"deployer\"");
    let reference = json!(["${google_service_account.keyless.unique_id}"]);
    assert_eq!(
        hcl_conditions(&doc),
        [
            ("\"accounts.google.com:aud\"".to_string(), reference.clone()),
            (
                "\"accounts.google.com:oaud\"".to_string(),
                json!(["\"sts.amazonaws.com\""])
            ),
            ("\"accounts.google.com:sub\"".to_string(), reference),
        ]
    );
}

/// Terraform: valid HCL, the policy document's statement carries exactly the three
/// conditions (and no others), the role, attachment and service account are there.
#[test]
fn terraform_has_the_exact_conditions() {
    let tf = gcp_to_aws("terraform", &[]);
    assert_hcl(&tf);
    assert!(tf.contains("data \"aws_iam_policy_document\" \"keyless_trust\""));
    assert!(tf.contains("resource \"aws_iam_role\" \"keyless\""));
    assert!(tf.contains("resource \"aws_iam_role_policy_attachment\""));
    assert!(tf.contains("data \"google_service_account\" \"keyless\""));
    assert!(tf.contains("max_session_duration = 14400"));
    assert!(tf.contains("actions = [\"sts:AssumeRoleWithWebIdentity\"]"));
    assert!(
        tf.contains("type        = \"Federated\"\n      identifiers = [\"accounts.google.com\"]")
    );
    for (variable, value) in [
        ("accounts.google.com:aud", DEPLOYER_ID),
        ("accounts.google.com:oaud", "sts.amazonaws.com"),
        ("accounts.google.com:sub", DEPLOYER_ID),
    ] {
        let block = format!(
            "condition {{\n      test     = \"StringEquals\"\n      variable = \"{variable}\"\n      values   = [\"{value}\"]\n    }}"
        );
        assert!(tf.contains(&block), "missing {block}\nin:\n{tf}");
    }
    assert_eq!(tf.matches("\n    condition {").count(), 3, "{tf}");
    assert_eq!(tf.matches("statement {").count(), 1, "{tf}");
}

/// AWS → GCP: the provider's mapping and condition, the binding to exactly the role's
/// principal set, the project role, and the keyless command, in every format.
#[test]
fn aws_to_gcp_outputs_bind_exactly_the_role() {
    let principal_set = "principalSet://iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/attribute.aws_role/arn:aws:sts::123456789012:assumed-role/aws-workload";
    let command = "keyless gcp config --audience //iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/providers/aws-lab --service-account copycat@keyless-lab.iam.gserviceaccount.com";
    let role_mapping = "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn";
    for format in ["terraform", "shell", "pulumi"] {
        let text = aws_to_gcp(format);
        for needle in [
            principal_set,
            command,
            role_mapping,
            "roles/iam.workloadIdentityUser",
            "roles/storage.objectViewer",
            "assertion.account",
        ] {
            assert!(text.contains(needle), "{format}: missing {needle}\n{text}");
        }
        let condition = if format == "shell" {
            "'attribute.aws_role == \"arn:aws:sts::123456789012:assumed-role/aws-workload\"'"
        } else {
            r#""attribute.aws_role == \"arn:aws:sts::123456789012:assumed-role/aws-workload\"""#
        };
        assert!(text.contains(condition), "{format}: condition\n{text}");
    }
    let tf = aws_to_gcp("terraform");
    assert_hcl(&tf);
    for resource in [
        "google_iam_workload_identity_pool\" \"keyless\"",
        "google_iam_workload_identity_pool_provider\" \"keyless\"",
        "google_service_account\" \"keyless\"",
        "google_service_account_iam_member\"",
        "google_project_iam_member\"",
    ] {
        assert!(tf.contains(resource), "missing {resource}\n{tf}");
    }
    let sh = aws_to_gcp("shell");
    assert!(sh.contains("gcloud iam workload-identity-pools providers create-aws 'aws-lab'"));
    assert!(sh.contains("--attribute-mapping \"google.subject=assertion.arn,attribute.aws_role="));
}

/// Each bad value is refused with the usage code, naming the flag and what to give instead.
#[test]
fn invalid_inputs_name_the_flag_and_the_fix() {
    let base = |flag: &str, value: &str| -> Vec<String> {
        let mut args: Vec<String> = [
            "setup",
            "gcp-to-aws",
            "--service-account",
            DEPLOYER,
            "--service-account-id",
            DEPLOYER_ID,
            "--aws-account",
            "123456789012",
            "--role-name",
            "gcp-deploy",
            "--format",
            "shell",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        match args.iter().position(|a| a == flag) {
            Some(i) => args[i + 1] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
        args
    };
    for (flag, value, fix) in [
        ("--service-account-id", DEPLOYER, "numeric unique id"),
        ("--aws-account", "12345", "12 digits"),
        ("--service-account", "deployer", "iam.gserviceaccount.com"),
        (
            "--role-name",
            "arn:aws:iam::123456789012:role/x",
            "not its ARN",
        ),
        ("--policy-arn", "ReadOnlyAccess", "managed policy ARN"),
        ("--max-session-duration", "60", "3600 to 43200"),
        ("--audience", "a b", "audience"),
    ] {
        let args = base(flag, value);
        let out = keyless(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(out.stdout.is_empty(), "{flag}: nothing printed on refusal");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(stderr.contains(fix), "{flag}: {stderr}");
    }

    let aws_to_gcp_args = |flag: &str, value: &str| -> Output {
        let mut args = AWS_TO_GCP_ARGS.to_vec();
        args.extend(["--format", "terraform"]);
        match args.iter().position(|a| *a == flag) {
            Some(i) => args[i + 1] = value,
            None => args.extend([flag, value]),
        }
        keyless(&args)
    };
    for (flag, value, fix) in [
        ("--project-number", "keyless-lab", "project number"),
        ("--aws-account", "1234567890123", "12 digits"),
        ("--pool", "gcp-pool", "pool id"),
        (
            "--service-account",
            "copycat@other-project.iam.gserviceaccount.com",
            "@keyless-lab.iam.gserviceaccount.com",
        ),
        ("--role", "storage.objectViewer", "roles/"),
    ] {
        let out = aws_to_gcp_args(flag, value);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(stderr.contains(fix), "{flag}: {stderr}");
    }
    // CloudFormation cannot create Google resources: clap refuses the format for aws-to-gcp.
    let out = aws_to_gcp_args("--format", "cloudformation");
    assert_eq!(out.status.code(), Some(2));
}

/// Runs a generated script with `aws` and `gcloud` replaced by stubs that record their argument
/// vectors (and any `file://` document), so the test sees exactly what the real CLIs would get.
fn run_with_stubs(script: &str) -> (Vec<Vec<String>>, Option<String>) {
    let (ok, calls, policy) = run_with_stubs_as(script, DEPLOYER_ID);
    assert!(ok, "the generated script with stubbed CLIs failed");
    (calls, policy)
}

/// As [`run_with_stubs`], with `gcloud iam service-accounts describe` answering `unique_id`;
/// also says whether the script succeeded.
fn run_with_stubs_as(script: &str, unique_id: &str) -> (bool, Vec<Vec<String>>, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let policy = dir.path().join("policy.json");
    let stub = format!(
        "#!/usr/bin/env bash\n\
         {{ printf '%s' \"$(basename \"$0\")\"; printf '\\t%s' \"$@\"; printf '\\n'; }} >>'{log}'\n\
         for a in \"$@\"; do case \"$a\" in file://*) cat \"${{a#file://}}\" >'{policy}';; esac; done\n\
         if [ \"$2 $3\" = 'service-accounts describe' ]; then echo '{unique_id}'; fi\n",
        log = log.display(),
        policy = policy.display()
    );
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["aws", "gcloud"] {
        let path = bin.join(tool);
        std::fs::write(&path, &stub).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let file = write_temp(&dir, "setup.sh", script);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg(&file)
        .env("PATH", path)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("script stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    let calls = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    (
        out.status.success(),
        calls,
        std::fs::read_to_string(&policy).ok(),
    )
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

/// Run for real (against stubs): the role is created with exactly the policy, then attached.
#[test]
fn gcp_to_aws_script_passes_the_exact_arguments() {
    let (calls, policy) = run_with_stubs(&gcp_to_aws("shell", &[]));
    let policy: Value = serde_json::from_str(&policy.expect("create-role read a file")).unwrap();
    assert_eq!(policy, expected_policy("sts.amazonaws.com"));
    assert_eq!(calls.len(), 3, "{calls:?}");
    // The account exists: described (its id checked), not created.
    assert_eq!(calls[0], describe_deployer());
    assert_eq!(
        calls[1][..7],
        argv(&[
            "aws",
            "iam",
            "create-role",
            "--role-name",
            "gcp-deploy",
            "--max-session-duration",
            "14400"
        ])
    );
    assert_eq!(
        calls[2],
        argv(&[
            "aws",
            "iam",
            "attach-role-policy",
            "--role-name",
            "gcp-deploy",
            "--policy-arn",
            "arn:aws:iam::aws:policy/ReadOnlyAccess"
        ])
    );
}

fn describe_deployer() -> Vec<String> {
    argv(&[
        "gcloud",
        "iam",
        "service-accounts",
        "describe",
        DEPLOYER,
        "--project",
        "keyless-lab",
        "--format=value(uniqueId)",
    ])
}

/// An existing account whose id is not the one given stops the script before AWS is touched;
/// an account the script creates has its id read back into the policy.
#[test]
fn gcp_to_aws_script_checks_an_existing_id_and_reads_a_created_one() {
    let (ok, calls, policy) = run_with_stubs_as(&gcp_to_aws("shell", &[]), "100000000000000000002");
    assert!(!ok, "a different id must stop the script");
    assert_eq!(calls, [describe_deployer()]);
    assert!(policy.is_none());

    let script = gcp_to_aws_creating("shell", &[]);
    assert!(!script.contains(DEPLOYER_ID), "no literal id:\n{script}");
    let (ok, calls, policy) = run_with_stubs_as(&script, DEPLOYER_ID);
    assert!(ok);
    assert_eq!(
        calls[0],
        argv(&[
            "gcloud",
            "iam",
            "service-accounts",
            "create",
            "deployer",
            "--project",
            "keyless-lab"
        ])
    );
    assert_eq!(calls[1], describe_deployer());
    assert_eq!(calls[2][..3], argv(&["aws", "iam", "create-role"]));
    let policy: Value = serde_json::from_str(&policy.expect("create-role read a file")).unwrap();
    assert_eq!(policy, expected_policy("sts.amazonaws.com"));
}

/// Run for real (against stubs): gcloud receives the mapping, condition and member unmangled.
#[test]
fn aws_to_gcp_script_passes_the_exact_arguments() {
    let (calls, _) = run_with_stubs(&aws_to_gcp("shell"));
    assert_eq!(calls.len(), 5, "{calls:?}");
    let provider = &calls[1];
    let value_of = |call: &Vec<String>, flag: &str| {
        let i = call.iter().position(|a| a == flag).unwrap();
        call[i + 1].clone()
    };
    assert_eq!(
        value_of(provider, "--attribute-mapping"),
        "google.subject=assertion.arn,\
         attribute.aws_role=assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn,\
         attribute.aws_account=assertion.account"
    );
    assert_eq!(
        value_of(provider, "--attribute-condition"),
        "attribute.aws_role == \"arn:aws:sts::123456789012:assumed-role/aws-workload\""
    );
    assert_eq!(value_of(provider, "--account-id"), "123456789012");
    assert_eq!(
        value_of(&calls[3], "--member"),
        "principalSet://iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/attribute.aws_role/arn:aws:sts::123456789012:assumed-role/aws-workload"
    );
    assert_eq!(
        value_of(&calls[3], "--role"),
        "roles/iam.workloadIdentityUser"
    );
    assert_eq!(
        value_of(&calls[4], "--member"),
        "serviceAccount:copycat@keyless-lab.iam.gserviceaccount.com"
    );
}

/// The lab's Google side honours what the aws-to-gcp script configures: with the provider's
/// condition and the workloadIdentityUser member replaced by the ones gcloud would receive, the
/// role's session gets a token for the service account with the audience the script prints.
#[tokio::test(flavor = "multi_thread")]
async fn aws_to_gcp_configuration_is_accepted_by_the_lab() {
    let script = aws_to_gcp("shell");
    let (calls, _) = run_with_stubs(&script);
    let value_of = |call: &Vec<String>, flag: &str| {
        let i = call.iter().position(|a| a == flag).unwrap();
        call[i + 1].clone()
    };
    let condition = value_of(&calls[1], "--attribute-condition");
    let member = value_of(&calls[3], "--member");

    let mut config = LabConfig::demo();
    config.workload_identity_pools[0].providers[0].attribute_condition = Some(condition);
    for binding in &mut config.workload_identity_users {
        binding.member = member.clone();
    }
    let w = LabWorld::start_with(config).await;
    let audience = script
        .split("--audience ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    assert_eq!(audience, w.lab.workload_identity_audience());

    let session =
        w.lab
            .issue_role_credentials("aws-workload", "app", std::time::Duration::from_secs(3600));
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID", session.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            session.secret_access_key.expose().to_string(),
        ),
    ];
    if let Some(token) = &session.session_token {
        env.push(("AWS_SESSION_TOKEN", token.expose().to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = w
        .keyless_env(
            &[
                "gcp",
                "token",
                "--audience",
                audience,
                "--service-account",
                "copycat@keyless-lab.iam.gserviceaccount.com",
            ],
            &env,
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
}

/// The provider and the service account's IAM policy, as `gcloud ... describe` / `get-iam-policy`
/// would show them after the script ran, lint clean at low severity.
#[test]
fn aws_to_gcp_configuration_lints_clean() {
    let (calls, _) = run_with_stubs(&aws_to_gcp("shell"));
    let value_of = |call: &Vec<String>, flag: &str| {
        let i = call.iter().position(|a| a == flag).unwrap();
        call[i + 1].clone()
    };
    let mapping: serde_json::Map<String, Value> = value_of(&calls[1], "--attribute-mapping")
        .split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_string(), Value::String(v.to_string()))
        })
        .collect();
    let provider = json!({
        "name": "projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/providers/aws-lab",
        "state": "ACTIVE",
        "aws": {"accountId": value_of(&calls[1], "--account-id")},
        "attributeMapping": mapping,
        "attributeCondition": value_of(&calls[1], "--attribute-condition"),
    });
    let iam_policy = json!({
        "version": 1,
        "bindings": [{
            "role": value_of(&calls[3], "--role"),
            "members": [value_of(&calls[3], "--member")],
        }],
    });
    let dir = tempfile::tempdir().unwrap();
    let provider = write_temp(&dir, "provider.json", &provider.to_string());
    let iam_policy = write_temp(&dir, "iam-policy.json", &iam_policy.to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(["lint", "--fail-on", "low", &provider, &iam_policy])
        .env_remove("KEYLESS_FAIL_ON")
        .env_remove("KEYLESS_LINT_FORMAT")
        .output()
        .unwrap();
    assert_ok(out, "keyless lint --fail-on low");
}

// ---------------------------------------------------------------------------------------------
// The OIDC sources: github, k8s → aws, gcp; aws-oidc → gcp.

const EKS_ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/LAB0123456789ABCDEF";
const EKS_HOST: &str = "oidc.eks.us-east-1.amazonaws.com/id/LAB0123456789ABCDEF";
const OUTBOUND_ISSUER: &str = "https://a1b2c3d4-lab.tokens.sts.global.api.aws";
const GITHUB_HOST: &str = "token.actions.githubusercontent.com";

/// `keyless setup PAIR` with the source's flags, a target's flags and `--format`.
fn oidc_setup(pair: &str, format: &str, extra: &[&str]) -> String {
    let mut args = vec!["setup", pair];
    args.extend(oidc_source_args(pair));
    if pair.ends_with("-to-aws") {
        args.extend([
            "--aws-account",
            "123456789012",
            "--role-name",
            "oidc-deploy",
        ]);
    } else {
        args.extend([
            "--project-id",
            "keyless-lab",
            "--project-number",
            "424242424242",
            "--pool",
            "keyless-pool",
            "--provider",
            "oidc-lab",
            "--service-account",
            "copycat@keyless-lab.iam.gserviceaccount.com",
            "--role",
            "roles/storage.objectViewer",
        ]);
    }
    args.extend(["--format", format]);
    args.extend_from_slice(extra);
    stdout(&keyless(&args))
}

fn oidc_source_args(pair: &str) -> Vec<&'static str> {
    match pair.split("-to-").next().unwrap() {
        "github" => vec!["--github-repo", "my-org/my-repo"],
        "k8s" => vec![
            "--k8s-issuer",
            EKS_ISSUER,
            "--namespace",
            "payments",
            "--k8s-service-account",
            "app",
        ],
        "aws-oidc" => vec![
            "--aws-issuer",
            OUTBOUND_ISSUER,
            "--aws-account",
            "111111111111",
            "--aws-role",
            "app-role",
        ],
        other => panic!("{other}"),
    }
}

/// (host, sub) each OIDC → AWS pair pins.
fn oidc_pin(pair: &str) -> (&'static str, &'static str) {
    match pair.split("-to-").next().unwrap() {
        "github" => (GITHUB_HOST, "repo:my-org/my-repo:ref:refs/heads/main"),
        "k8s" => (EKS_HOST, "system:serviceaccount:payments:app"),
        other => panic!("{other}"),
    }
}

fn expected_oidc_policy(pair: &str, principal: Value) -> Value {
    let (host, sub) = oidc_pin(pair);
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": principal},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host}:aud"): "sts.amazonaws.com",
                format!("{host}:sub"): sub
            }}
        }]
    })
}

fn provider_arn(pair: &str) -> String {
    format!(
        "arn:aws:iam::123456789012:oidc-provider/{}",
        oidc_pin(pair).0
    )
}

/// Runs a generated script against `aws`/`gcloud` stubs that record each call and each
/// `file://` document (or `.json` path); `answers` are (the call's first words, stdout, exit
/// status).
fn run_with_answering_stubs(
    script: &str,
    answers: &[(&str, &str, i32)],
) -> (bool, Vec<Vec<String>>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let mut cases = String::new();
    for (words, answer, status) in answers {
        cases.push_str(&format!("  '{words}'*) echo '{answer}'; exit {status};;\n"));
    }
    let stub = format!(
        "#!/usr/bin/env bash\n\
         {{ printf '%s' \"$(basename \"$0\")\"; printf '\\t%s' \"$@\"; printf '\\n'; }} >>'{log}'\n\
         for a in \"$@\"; do case \"$a\" in file://*) cat \"${{a#file://}}\" >'{docs}'/\"$(wc -l <'{log}')\";; /*.json) cat \"$a\" >'{docs}'/\"$(wc -l <'{log}')\";; esac; done\n\
         case \"$(basename \"$0\") $*\" in\n{cases}esac\n",
        log = log.display(),
        docs = docs.display(),
    );
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["aws", "gcloud"] {
        let path = bin.join(tool);
        std::fs::write(&path, &stub).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let file = write_temp(&dir, "setup.sh", script);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg(&file)
        .env("PATH", path)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("script stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    let calls: Vec<Vec<String>> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    let mut documents = Vec::new();
    for i in 1..=calls.len() {
        if let Ok(doc) = std::fs::read_to_string(docs.join(i.to_string())) {
            documents.push(doc);
        }
    }
    (out.status.success(), calls, documents)
}

fn value_of(call: &[String], flag: &str) -> String {
    let i = call
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {call:?}"));
    call[i + 1].clone()
}

const OIDC_TO_AWS: [&str; 2] = ["github-to-aws", "k8s-to-aws"];
const OIDC_TO_GCP: [&str; 3] = ["github-to-gcp", "k8s-to-gcp", "aws-oidc-to-gcp"];

/// Every OIDC → AWS format embeds exactly the trust policy (the provider's ARN, or what the
/// format refers to the provider by), the provider for the issuer with the audience as client
/// id, and the role; every output is valid for its tool.
#[test]
fn oidc_to_aws_policies_are_exact_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for pair in OIDC_TO_AWS {
        let (host, _) = oidc_pin(pair);
        // Shell: run against stubs; the provider is created when missing, the role gets the policy.
        let script = oidc_setup(pair, "shell", &[]);
        let file = write_temp(&dir, &format!("{pair}.sh"), &script);
        assert_ok(
            Command::new("bash").args(["-n", &file]).output().unwrap(),
            "bash -n",
        );
        if support::tools::installed("shellcheck") {
            assert_ok(
                Command::new("shellcheck").arg(&file).output().unwrap(),
                "shellcheck",
            );
        }
        let (ok, calls, docs) = run_with_answering_stubs(
            &script,
            &[("aws iam get-open-id-connect-provider", "", 254)],
        );
        assert!(ok, "{pair}: {calls:?}");
        let create = calls
            .iter()
            .find(|c| c[..3] == argv(&["aws", "iam", "create-open-id-connect-provider"]))
            .unwrap_or_else(|| panic!("{pair}: {calls:?}"));
        assert_eq!(value_of(create, "--url"), format!("https://{host}"));
        assert_eq!(value_of(create, "--client-id-list"), "sts.amazonaws.com");
        let role = calls.iter().find(|c| c[2] == "create-role").unwrap();
        assert_eq!(value_of(role, "--role-name"), "oidc-deploy");
        let policy: Value = serde_json::from_str(docs.last().unwrap()).unwrap();
        assert_eq!(
            policy,
            expected_oidc_policy(pair, json!(provider_arn(pair))),
            "{pair}"
        );
        // The provider exists: it is given the audience rather than created again.
        let (ok, calls, _) =
            run_with_answering_stubs(&script, &[("aws iam get-open-id-connect-provider", "", 0)]);
        assert!(ok, "{pair}: {calls:?}");
        assert!(calls
            .iter()
            .any(|c| c[2] == "add-client-id-to-open-id-connect-provider"));
        assert!(!calls
            .iter()
            .any(|c| c[2] == "create-open-id-connect-provider"));

        // Terraform: the provider resource, and the principal refers to it.
        let doc = assert_hcl(&oidc_setup(pair, "terraform", &[]));
        let providers = hcl_blocks(&doc, "resource", "aws_iam_openid_connect_provider");
        assert_eq!(providers.len(), 1, "{pair}: {doc}");
        assert_eq!(providers[0].1["url"], format!("\"https://{host}\""));
        assert_eq!(
            hcl_conditions(&doc),
            [
                (format!("\"{host}:aud\""), json!(["\"sts.amazonaws.com\""])),
                (
                    format!("\"{host}:sub\""),
                    json!([format!("\"{}\"", oidc_pin(pair).1)])
                ),
            ],
            "{pair}"
        );
        let statement = &hcl_blocks(&doc, "data", "aws_iam_policy_document")[0].1["statement"][0];
        assert_eq!(
            statement["principals"][0]["identifiers"],
            json!(["${aws_iam_openid_connect_provider.keyless.arn}"])
        );

        // CloudFormation: cfn-lint passes; the principal is the provider's Ref (its ARN).
        let cfn = cloudformation_document(&oidc_setup(pair, "cloudformation", &[]));
        assert_eq!(
            cfn["Resources"]["KeylessRole"]["Properties"]["AssumeRolePolicyDocument"],
            expected_oidc_policy(pair, json!({"Ref": "KeylessOidcProvider"})),
            "{pair}"
        );
        assert_eq!(
            cfn["Resources"]["KeylessOidcProvider"]["Properties"]["Url"],
            format!("https://{host}")
        );

        // Pulumi: compiles; the policy is built from the provider's ARN.
        let program = oidc_setup(pair, "pulumi", &[]);
        let file = write_temp(&dir, &format!("{}.py", pair.replace('-', "_")), &program);
        assert_ok(
            Command::new(python())
                .args(["-m", "py_compile", &file])
                .output()
                .unwrap(),
            "py_compile",
        );
        let marker = "provider.arn.apply(\n    lambda arn: json.dumps(";
        let start = program.find(marker).expect(marker) + marker.len();
        let end = start + program[start..].find("\n    )\n)\n").unwrap();
        let policy = program[start..end].replace(": arn", ": \"ARN\"");
        let policy: Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(policy, expected_oidc_policy(pair, json!("ARN")), "{pair}");
    }
}

/// aws-oidc: the caller's account gets outbound federation (enabled when it is not, stopped
/// when its issuer is not the one given) and a policy for exactly the provider's audience.
#[test]
fn aws_oidc_turns_on_outbound_federation_for_one_audience() {
    let expected = |audience: &str| {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "sts:GetWebIdentityToken",
                "Resource": "*",
                "Condition": {"ForAllValues:StringEquals": {"sts:IdentityTokenAudience": [audience]}}
            }]
        })
    };
    let audience = "https://iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/providers/oidc-lab";
    let script = oidc_setup("aws-oidc-to-gcp", "shell", &[]);
    // Not enabled yet: the get fails, the enable call answers with the issuer.
    let (ok, calls, docs) = run_with_answering_stubs(
        &script,
        &[
            ("aws iam get-outbound-web-identity-federation-info", "", 254),
            (
                "aws iam enable-outbound-web-identity-federation",
                OUTBOUND_ISSUER,
                0,
            ),
        ],
    );
    assert!(ok, "{calls:?}");
    assert_eq!(
        calls[1],
        argv(&[
            "aws",
            "iam",
            "enable-outbound-web-identity-federation",
            "--query",
            "IssuerIdentifier",
            "--output",
            "text"
        ])
    );
    assert_eq!(calls[2][..3], argv(&["aws", "iam", "put-role-policy"]));
    assert_eq!(value_of(&calls[2], "--role-name"), "app-role");
    let policy: Value = serde_json::from_str(&docs[0]).unwrap();
    assert_eq!(policy, expected(audience));

    // Another issuer (another account): the script stops before touching IAM or Google.
    let (ok, calls, _) = run_with_answering_stubs(
        &script,
        &[(
            "aws iam get-outbound-web-identity-federation-info",
            "https://other.tokens.sts.global.api.aws",
            0,
        )],
    );
    assert!(!ok);
    assert_eq!(calls.len(), 1, "{calls:?}");

    // Already enabled with that issuer: no enable call; the same policy in every AWS-side format.
    let (ok, calls, docs) = run_with_answering_stubs(
        &script,
        &[(
            "aws iam get-outbound-web-identity-federation-info",
            OUTBOUND_ISSUER,
            0,
        )],
    );
    assert!(ok, "{calls:?}");
    assert!(!calls
        .iter()
        .any(|c| c[2] == "enable-outbound-web-identity-federation"));
    let policy: Value = serde_json::from_str(&docs[0]).unwrap();
    assert_eq!(policy, expected(audience));
    let cfn = cloudformation_document(&oidc_setup("aws-oidc-to-gcp", "cloudformation", &[]));
    assert_eq!(
        cfn["Resources"]["KeylessGetWebIdentityToken"]["Properties"]["PolicyDocument"],
        expected(audience)
    );
    let tf = assert_hcl(&oidc_setup("aws-oidc-to-gcp", "terraform", &[]));
    let inline = hcl_blocks(&tf, "resource", "aws_iam_role_policy");
    assert_eq!(inline.len(), 1, "{tf}");
    let text = inline[0].1["policy"].as_str().unwrap();
    let policy: Value = serde_json::from_str(text.trim_matches('"')).unwrap_or_else(|_| {
        // hcl2 keeps a heredoc's text as it is written.
        let start = text.find('{').unwrap();
        let end = text.rfind('}').unwrap();
        serde_json::from_str(&text[start..=end]).unwrap()
    });
    assert_eq!(policy, expected(audience));
}

/// The lab's STS honours what k8s-to-aws and github-to-aws configure: the workload's token
/// becomes credentials, a token of another subject of the same issuer is refused.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_to_aws_configuration_is_accepted_by_the_lab() {
    let mut config = LabConfig::demo();
    let account = config.account_id.clone();
    let mut roles = Vec::new();
    for pair in OIDC_TO_AWS {
        let (host, _) = oidc_pin(pair);
        let (_, _, docs) = run_with_answering_stubs(&oidc_setup(pair, "shell", &[]), &[]);
        let policy = docs.last().unwrap().replace("123456789012", &account);
        config.oidc_providers.push(keyless::lab::LabOidcProvider {
            issuer: format!("https://{host}"),
            client_ids: vec!["sts.amazonaws.com".to_string()],
        });
        let name = pair.replace("-to-aws", "-role");
        config.roles.push(keyless::lab::LabRole {
            name: name.clone(),
            trust_policy: policy,
            max_session_duration: 3600,
        });
        roles.push((pair, name));
    }
    let w = LabWorld::start_with(config).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (pair, name) in roles {
        let (host, sub) = oidc_pin(pair);
        for (who, subject, code) in [
            ("workload", sub, 0),
            ("stranger", "repo:someone/else:ref:refs/heads/main", 3),
        ] {
            let token = w.lab.sign_claims(&json!({
                "iss": format!("https://{host}"), "aud": ["sts.amazonaws.com"], "sub": subject,
                "iat": now, "exp": now + 600
            }));
            let path = w.home.write_token(&format!("{pair}-{who}.jwt"), &token);
            let out = w
                .keyless(&[
                    "aws",
                    "credentials",
                    "--no-cache",
                    "--role-arn",
                    &w.role(&name),
                    "--token-source",
                    &format!("file:{}", path.display()),
                ])
                .await;
            assert_eq!(out.code(), code, "{pair} {who}: {out}");
        }
    }
}

/// The trust policies and Google providers and bindings the new pairs configure lint clean at
/// low severity (the new issuer rules included).
#[test]
fn oidc_configurations_lint_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let answers = [(
        "aws iam get-outbound-web-identity-federation-info",
        OUTBOUND_ISSUER,
        0,
    )];
    for pair in OIDC_TO_AWS {
        let (_, _, docs) = run_with_answering_stubs(&oidc_setup(pair, "shell", &[]), &answers);
        for (i, doc) in docs.iter().enumerate() {
            files.push(write_temp(&dir, &format!("{pair}-{i}.json"), doc));
        }
    }
    for pair in OIDC_TO_GCP {
        let (ok, calls, docs) = run_with_answering_stubs(&oidc_setup(pair, "shell", &[]), &answers);
        assert!(ok, "{pair}: {calls:?}");
        // aws-oidc: the caller's policy too (KL011: one audience, ForAllValues).
        for (i, doc) in docs.iter().enumerate() {
            files.push(write_temp(&dir, &format!("{pair}-{i}.json"), doc));
        }
        let create = calls
            .iter()
            .find(|c| c.get(4).is_some_and(|a| a == "create-oidc"))
            .unwrap_or_else(|| panic!("{pair}: {calls:?}"));
        let mapping: serde_json::Map<String, Value> = value_of(create, "--attribute-mapping")
            .split(',')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_string(), Value::String(v.to_string()))
            })
            .collect();
        let provider = json!({
            "name": "projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/providers/oidc-lab",
            "state": "ACTIVE",
            "oidc": {
                "issuerUri": value_of(create, "--issuer-uri"),
                "allowedAudiences": [value_of(create, "--allowed-audiences")],
            },
            "attributeMapping": mapping,
            "attributeCondition": value_of(create, "--attribute-condition"),
        });
        let binding = calls
            .iter()
            .find(|c| c.get(3).is_some_and(|a| a == "add-iam-policy-binding"))
            .unwrap();
        let iam_policy = json!({"version": 1, "bindings": [{
            "role": value_of(binding, "--role"),
            "members": [value_of(binding, "--member")],
        }]});
        files.push(write_temp(
            &dir,
            &format!("{pair}-provider.json"),
            &provider.to_string(),
        ));
        files.push(write_temp(
            &dir,
            &format!("{pair}-iam.json"),
            &iam_policy.to_string(),
        ));
        // The binding names exactly the workload's subject, which the condition pins.
        let sub = match pair {
            "github-to-gcp" => "repo:my-org/my-repo:ref:refs/heads/main",
            "k8s-to-gcp" => "system:serviceaccount:payments:app",
            _ => "arn:aws:iam::111111111111:role/app-role",
        };
        assert_eq!(
            value_of(binding, "--member"),
            format!("principal://iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/subject/{sub}")
        );
        assert_eq!(
            value_of(create, "--attribute-condition"),
            format!("assertion.sub == '{sub}'")
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .arg("lint")
        .args(["--fail-on", "low"])
        .args(&files)
        .env_remove("KEYLESS_FAIL_ON")
        .env_remove("KEYLESS_LINT_FORMAT")
        .output()
        .unwrap();
    assert_ok(out, "keyless lint --fail-on low");
}

/// OIDC → Google: Terraform and Pulumi carry the same provider, condition and binding as the
/// script, and are valid for their tools.
#[test]
fn oidc_to_gcp_outputs_admit_exactly_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    for pair in OIDC_TO_GCP {
        let tf = oidc_setup(pair, "terraform", &[]);
        let doc = assert_hcl(&tf);
        let provider = hcl_blocks(
            &doc,
            "resource",
            "google_iam_workload_identity_pool_provider",
        );
        assert_eq!(provider.len(), 1, "{pair}: {doc}");
        let shell = oidc_setup(pair, "shell", &[]);
        let (_, calls, _) = run_with_answering_stubs(
            &shell,
            &[(
                "aws iam get-outbound-web-identity-federation-info",
                OUTBOUND_ISSUER,
                0,
            )],
        );
        let create = calls
            .iter()
            .find(|c| c.get(4).is_some_and(|a| a == "create-oidc"))
            .unwrap();
        let condition = value_of(create, "--attribute-condition");
        assert_eq!(
            provider[0].1["attribute_condition"],
            Value::String(format!("\"{condition}\"")),
            "{pair}"
        );
        assert_eq!(
            provider[0].1["oidc"][0]["issuer_uri"],
            format!("\"{}\"", value_of(create, "--issuer-uri"))
        );
        let member = hcl_blocks(&doc, "resource", "google_service_account_iam_member");
        assert_eq!(
            member[0].1["member"],
            format!("\"{}\"", {
                let binding = calls
                    .iter()
                    .find(|c| c.get(3).is_some_and(|a| a == "add-iam-policy-binding"))
                    .unwrap();
                value_of(binding, "--member")
            })
        );

        let program = oidc_setup(pair, "pulumi", &[]);
        let file = write_temp(&dir, &format!("{}.py", pair.replace('-', "_")), &program);
        assert_ok(
            Command::new(python())
                .args(["-m", "py_compile", &file])
                .output()
                .unwrap(),
            "py_compile",
        );
        assert!(
            program.contains(&format!("attribute_condition={:?}", condition)),
            "{program}"
        );
        let file = write_temp(&dir, &format!("{pair}.sh"), &shell);
        if support::tools::installed("shellcheck") {
            assert_ok(
                Command::new("shellcheck").arg(&file).output().unwrap(),
                "shellcheck",
            );
        }
    }
    // github and k8s have no AWS side: clap refuses CloudFormation.
    let mut args = vec!["setup", "github-to-gcp"];
    args.extend(oidc_source_args("github-to-gcp"));
    args.extend([
        "--project-id",
        "keyless-lab",
        "--project-number",
        "1",
        "--pool",
        "keyless-pool",
        "--provider",
        "oidc-lab",
        "--service-account",
        "copycat@keyless-lab.iam.gserviceaccount.com",
        "--format",
        "cloudformation",
    ]);
    assert_eq!(keyless(&args).status.code(), Some(2));
}

/// Bad values of the new flags are refused with the usage code, naming the flag and the fix.
#[test]
fn oidc_invalid_inputs_name_the_flag_and_the_fix() {
    for (pair, flag, value, fix) in [
        ("github-to-aws", "--github-repo", "my-org/*", "ORG/REPO"),
        ("github-to-aws", "--github-ref", "main", "refs/heads/main"),
        (
            "github-to-gcp",
            "--github-environment",
            "prod*",
            "environment",
        ),
        ("k8s-to-aws", "--namespace", "Payments", "DNS label"),
        (
            "k8s-to-aws",
            "--k8s-issuer",
            "http://cluster.example",
            "https://",
        ),
        (
            "k8s-to-gcp",
            "--k8s-service-account",
            "App",
            "DNS subdomain",
        ),
        (
            "aws-oidc-to-gcp",
            "--aws-issuer",
            "https://example.com",
            "tokens.sts.global.api.aws",
        ),
        ("aws-oidc-to-gcp", "--aws-org-id", "org-1", "o-"),
    ] {
        let mut args: Vec<String> = vec!["setup".into(), pair.into()];
        args.extend(oidc_source_args(pair).iter().map(|s| s.to_string()));
        if pair.ends_with("-to-aws") {
            args.extend(["--aws-account", "123456789012", "--role-name", "r"].map(String::from));
        } else {
            args.extend(
                [
                    "--project-id",
                    "keyless-lab",
                    "--project-number",
                    "1",
                    "--pool",
                    "keyless-pool",
                    "--provider",
                    "oidc-lab",
                    "--service-account",
                    "copycat@keyless-lab.iam.gserviceaccount.com",
                ]
                .map(String::from),
            );
        }
        args.extend(["--format", "shell"].map(String::from));
        match args.iter().position(|a| a == flag) {
            Some(i) => args[i + 1] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
        let out = keyless(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{pair} {flag}: {stderr}");
        assert!(out.stdout.is_empty(), "{pair} {flag}");
        assert!(stderr.contains(flag), "{pair} {flag}: {stderr}");
        assert!(stderr.contains(fix), "{pair} {flag}: {stderr}");
    }
}

/// aws-oidc → aws cannot work (AWS refuses its own outbound tokens in
/// AssumeRoleWithWebIdentity): the subcommand prints nothing to deploy, exits with the usage
/// code, quotes AWS's rule and gives the alternative, whose trust statement and command the
/// lab's STS accept (and refuse with another external ID).
#[tokio::test(flavor = "multi_thread")]
async fn aws_oidc_to_aws_is_refused_with_the_rule_and_an_alternative_that_works() {
    let old_command_line = [
        "setup",
        "aws-oidc-to-aws",
        "--aws-issuer",
        OUTBOUND_ISSUER,
        "--source-account",
        "111111111111",
        "--aws-role",
        "app-role",
        "--aws-account",
        "123456789012",
        "--role-name",
        "partner-access",
        "--format",
        "shell",
    ];
    let mut stderr = String::new();
    for args in [&old_command_line[..], &old_command_line[..2]] {
        let out = keyless(args);
        stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let words = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            "The JSON Web Tokens (JWTs) generated by the GetWebIdentityToken API cannot be used for OpenID Connect (OIDC) federation into AWS (via the AssumeRoleWithWebIdentity API).",
            "sts:AssumeRole",
            "--chain-role",
            "--external-id",
            "docs/targets/aws-chaining.md",
            "keyless setup aws-oidc-to-gcp",
        ] {
            assert!(words.contains(expected), "{expected}: {stderr}");
        }
    }

    // The advice, with the lab's names: the partner's role trusts the lab's gcp-deploy.
    let mut config = LabConfig::demo();
    let caller = format!("arn:aws:iam::{}:role/gcp-deploy", config.account_id);
    let partner = &mut config.other_accounts[0];
    let target = format!("arn:aws:iam::{}:role/advised-partner", partner.account_id);
    let fill = |text: &str| {
        text.replace("CALLER_ROLE_ARN", &caller)
            .replace("TARGET_ROLE_ARN", &target)
            .replace(
                "arn:aws:iam::CALLER_ACCOUNT:role/CALLER_ROLE",
                caller.as_str(),
            )
            .replace("\"ID\"", "\"advised-external-id\"")
            .replace(" ID", " advised-external-id")
    };
    let statement: String = stderr
        .lines()
        .skip_while(|l| *l != "  {")
        .take_while(|l| *l != "  }")
        .chain(["}"])
        .collect();
    let statement: Value = serde_json::from_str(&fill(&statement))
        .unwrap_or_else(|e| panic!("no trust statement ({e}): {stderr}"));
    assert_eq!(statement["Principal"]["AWS"], caller.as_str());
    assert_eq!(
        statement["Condition"]["StringEquals"]["sts:ExternalId"],
        "advised-external-id"
    );
    partner.roles.push(keyless::lab::LabRole {
        name: "advised-partner".into(),
        trust_policy: json!({"Version": "2012-10-17", "Statement": [statement]}).to_string(),
        max_session_duration: 3600,
    });
    let command = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("keyless aws credentials"))
        .unwrap_or_else(|| panic!("no command: {stderr}"));
    let command = fill(command);
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let w = LabWorld::start_with(config).await;
    let out = w
        .keyless(&[&args[..], &["--format", "json"]].concat())
        .await;
    assert_eq!(out.code(), 0, "{command}: {}", out.stderr);
    assert!(
        out.stdout.contains(":assumed-role/advised-partner/"),
        "{}",
        out.stdout
    );
    let other = command.replace("advised-external-id", "another-id");
    let args: Vec<&str> = other.split_whitespace().skip(1).collect();
    assert_eq!(w.keyless(&args).await.code(), 3, "{other}");
}

// ---------------------------------------------------------------------------------------------
// `--audit`: a CloudTrail trail on the AWS side, Data Access logs on the Google side.

/// Every pair with `--audit`, and the formats it prints.
const AUDIT_PAIRS: [(&str, &[&str]); 7] = [
    (
        "gcp-to-aws",
        &["terraform", "cloudformation", "shell", "pulumi"],
    ),
    ("aws-to-gcp", &["terraform", "shell", "pulumi"]),
    (
        "github-to-aws",
        &["terraform", "cloudformation", "shell", "pulumi"],
    ),
    (
        "k8s-to-aws",
        &["terraform", "cloudformation", "shell", "pulumi"],
    ),
    ("github-to-gcp", &["terraform", "shell", "pulumi"]),
    ("k8s-to-gcp", &["terraform", "shell", "pulumi"]),
    (
        "aws-oidc-to-gcp",
        &["terraform", "cloudformation", "shell", "pulumi"],
    ),
];

const STS_GOOGLE: &str = "sts.googleapis.com";
const IAM_CREDENTIALS: &str = "iamcredentials.googleapis.com";

/// `keyless setup PAIR --format FORMAT` (with `extra`, e.g. `--audit`).
fn any_setup(pair: &str, format: &str, extra: &[&str]) -> String {
    match pair {
        "gcp-to-aws" => gcp_to_aws(format, extra),
        "aws-to-gcp" => {
            let mut args = AWS_TO_GCP_ARGS.to_vec();
            args.extend(["--role", "roles/storage.objectViewer", "--format", format]);
            args.extend_from_slice(extra);
            stdout(&keyless(&args))
        }
        _ => oidc_setup(pair, format, extra),
    }
}

/// The account whose trail `--audit` adds (the role's, or the AWS caller's), and the Google
/// services whose Data Access logs it turns on.
fn audit_sides(pair: &str) -> (Option<&'static str>, Vec<&'static str>) {
    match pair {
        // The source side: generateIdToken, when the workload impersonates the account.
        "gcp-to-aws" => (Some("123456789012"), vec![IAM_CREDENTIALS]),
        "aws-to-gcp" => (Some("123456789012"), vec![STS_GOOGLE, IAM_CREDENTIALS]),
        "github-to-aws" | "k8s-to-aws" => (Some("123456789012"), vec![]),
        "github-to-gcp" | "k8s-to-gcp" => (None, vec![STS_GOOGLE, IAM_CREDENTIALS]),
        "aws-oidc-to-gcp" => (Some("111111111111"), vec![STS_GOOGLE, IAM_CREDENTIALS]),
        other => panic!("{other}"),
    }
}

/// The bucket policy CloudTrail requires (AWS's documented one), for this trail only.
fn expected_bucket_policy(account: &str, trail_arn: Value) -> Value {
    let bucket = format!("arn:aws:s3:::keyless-audit-{account}");
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AWSCloudTrailAclCheck",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:GetBucketAcl",
                "Resource": bucket,
                "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}}
            },
            {
                "Sid": "AWSCloudTrailWrite",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": format!("{bucket}/AWSLogs/{account}/*"),
                "Condition": {"StringEquals": {
                    "s3:x-amz-acl": "bucket-owner-full-control",
                    "aws:SourceArn": trail_arn
                }}
            }
        ]
    })
}

fn trail_arn(region: &str, account: &str) -> String {
    format!("arn:aws:cloudtrail:{region}:{account}:trail/keyless-audit")
}

/// The project's IAM policy before `--audit`: another service's config, and an exemption on
/// IAM Credentials that the merge must keep.
const PROJECT_POLICY: &str = r#"{"bindings":[{"role":"roles/viewer","members":["user:a@example.com"]}],"etag":"BwX1","version":1,"auditConfigs":[{"service":"storage.googleapis.com","auditLogConfigs":[{"logType":"DATA_WRITE"}]},{"service":"iamcredentials.googleapis.com","auditLogConfigs":[{"logType":"DATA_READ","exemptedMembers":["user:b@example.com"]}]}]}"#;

/// [`PROJECT_POLICY`] with `services`' Data Access logs on, nothing else changed.
fn expected_project_policy(services: &[&str]) -> Value {
    let mut configs = vec![
        json!({"service": "storage.googleapis.com", "auditLogConfigs": [{"logType": "DATA_WRITE"}]}),
    ];
    configs.push(json!({"service": IAM_CREDENTIALS, "auditLogConfigs": [
        {"logType": "DATA_READ", "exemptedMembers": ["user:b@example.com"]},
        {"logType": "ADMIN_READ"}
    ]}));
    if services.contains(&STS_GOOGLE) {
        configs.push(json!({"service": STS_GOOGLE, "auditLogConfigs": [
            {"logType": "ADMIN_READ"}, {"logType": "DATA_READ"}
        ]}));
    }
    json!({
        "bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"]}],
        "etag": "BwX1",
        "version": 1,
        "auditConfigs": configs
    })
}

/// Without `--audit` nothing of it is printed (the other tests hold the rest of the output).
#[test]
fn without_audit_nothing_is_added() {
    for (pair, formats) in AUDIT_PAIRS {
        for format in formats.iter().copied() {
            let text = any_setup(pair, format, &[]);
            for word in [
                "keyless-audit",
                "cloudtrail",
                "auditConfigs",
                "audit_config",
                "IAMAuditConfig",
            ] {
                assert!(!text.contains(word), "{pair} {format}: {word}\n{text}");
            }
            let audited = any_setup(pair, format, &["--audit"]);
            assert!(audited.len() > text.len(), "{pair} {format}");
        }
    }
}

/// Terraform: the trail's settings, the public access block, the exact bucket policy (the
/// region is the provider's), one audit config per Google service with both log types.
#[test]
fn audit_terraform_has_the_trail_and_the_audit_configs() {
    for (pair, _) in AUDIT_PAIRS {
        let (account, services) = audit_sides(pair);
        let doc = assert_hcl(&any_setup(pair, "terraform", &["--audit"]));
        let trails = hcl_blocks(&doc, "resource", "aws_cloudtrail");
        let policies = hcl_blocks(&doc, "resource", "aws_s3_bucket_policy");
        match account {
            None => assert!(trails.is_empty() && policies.is_empty(), "{pair}: {doc}"),
            Some(account) => {
                assert_eq!(trails.len(), 1, "{pair}: {doc}");
                let trail = &trails[0].1;
                assert_eq!(trail["name"], "\"keyless-audit\"");
                assert_eq!(trail["is_multi_region_trail"], true, "{pair}");
                assert_eq!(trail["include_global_service_events"], true, "{pair}");
                assert_eq!(trail["enable_log_file_validation"], true, "{pair}");
                assert_eq!(trail["event_selector"][0]["read_write_type"], "\"All\"");
                assert_eq!(
                    trail["event_selector"][0]["include_management_events"],
                    true
                );
                let bucket = hcl_blocks(&doc, "resource", "aws_s3_bucket");
                assert_eq!(
                    bucket[0].1["bucket"],
                    format!("\"keyless-audit-{account}\"")
                );
                let block = hcl_blocks(&doc, "resource", "aws_s3_bucket_public_access_block");
                for flag in [
                    "block_public_acls",
                    "block_public_policy",
                    "ignore_public_acls",
                    "restrict_public_buckets",
                ] {
                    assert_eq!(block[0].1[flag], true, "{pair}: {flag}");
                }
                let text = policies[0].1["policy"].as_str().unwrap();
                let (start, end) = (text.find('{').unwrap(), text.rfind('}').unwrap());
                let text =
                    text[start..=end].replace("${data.aws_region.current.name}", "eu-west-1");
                let policy: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(
                    policy,
                    expected_bucket_policy(account, json!(trail_arn("eu-west-1", account))),
                    "{pair}"
                );
            }
        }
        let configs = hcl_blocks(&doc, "resource", "google_project_iam_audit_config");
        let configured: Vec<String> = configs
            .iter()
            .map(|(_, c)| {
                assert_eq!(c["project"], "\"keyless-lab\"", "{pair}");
                let types: Vec<&str> = c["audit_log_config"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["log_type"].as_str().unwrap())
                    .collect();
                assert_eq!(types, ["\"ADMIN_READ\"", "\"DATA_READ\""], "{pair}");
                c["service"].as_str().unwrap().trim_matches('"').to_string()
            })
            .collect();
        assert_eq!(configured, services, "{pair}");
    }
}

/// CloudFormation: cfn-lint passes; the bucket is kept with the stack gone and closed to the
/// public, its policy exact (the trail's ARN in the stack's region), the trail's settings; the
/// Google side, which CloudFormation cannot set, is the gcloud merge as a comment.
#[test]
fn audit_cloudformation_has_the_trail() {
    for (pair, formats) in AUDIT_PAIRS {
        if !formats.contains(&"cloudformation") {
            continue;
        }
        let (account, services) = audit_sides(pair);
        let account = account.expect("every CloudFormation pair has an AWS side");
        let template = any_setup(pair, "cloudformation", &["--audit"]);
        let doc = cloudformation_document(&template);
        let resources = &doc["Resources"];
        let bucket = &resources["KeylessAuditBucket"];
        assert_eq!(bucket["DeletionPolicy"], "Retain", "{pair}");
        assert_eq!(
            bucket["Properties"]["PublicAccessBlockConfiguration"],
            json!({"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true})
        );
        assert_eq!(
            bucket["Properties"]["BucketName"],
            format!("keyless-audit-{account}")
        );
        let sub = json!({"Fn::Sub": trail_arn("${AWS::Region}", account)});
        assert_eq!(
            resources["KeylessAuditBucketPolicy"]["Properties"]["PolicyDocument"],
            expected_bucket_policy(account, sub),
            "{pair}"
        );
        let trail = &resources["KeylessAuditTrail"];
        assert_eq!(trail["DependsOn"], "KeylessAuditBucketPolicy");
        assert_eq!(
            trail["Properties"],
            json!({
                "TrailName": "keyless-audit",
                "S3BucketName": {"Ref": "KeylessAuditBucket"},
                "IsLogging": true,
                "IsMultiRegionTrail": true,
                "IncludeGlobalServiceEvents": true,
                "EnableLogFileValidation": true,
                "EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": true}]
            }),
            "{pair}"
        );
        assert!(
            template.contains("Event history keeps 90 days"),
            "{template}"
        );
        assert!(
            template.contains("`keyless audit aws` reads Event history"),
            "{template}"
        );
        let merge =
            "#     gcloud projects set-iam-policy 'keyless-lab' \"$audit_work/audited.json\"";
        assert_eq!(
            template.contains(merge),
            !services.is_empty(),
            "{pair}: {template}"
        );
        for service in services {
            assert!(
                template.contains(&format!("\"service\":\"{service}\"")),
                "{pair}: {template}"
            );
        }
    }
}

/// Pulumi: the programs compile; the bucket policy is exact (the trail's ARN in the stack's
/// region), the trail's settings, one `IAMAuditConfig` per Google service.
#[test]
fn audit_pulumi_has_the_trail_and_the_audit_configs() {
    let dir = tempfile::tempdir().unwrap();
    for (pair, _) in AUDIT_PAIRS {
        let (account, services) = audit_sides(pair);
        let program = any_setup(pair, "pulumi", &["--audit"]);
        let file = write_temp(&dir, &format!("{}.py", pair.replace('-', "_")), &program);
        assert_ok(
            Command::new(python())
                .args(["-m", "py_compile", &file])
                .output()
                .unwrap(),
            "py_compile",
        );
        assert_eq!(
            program.contains("aws.cloudtrail.Trail("),
            account.is_some(),
            "{pair}"
        );
        if let Some(account) = account {
            assert!(program.contains("import json\n"), "{pair}");
            assert!(program.contains("import pulumi_aws as aws\n"), "{pair}");
            let region = "{aws.config.region}";
            assert!(
                program.contains(&format!(
                    "trail_arn = f\"{}\"\n",
                    trail_arn(region, account)
                )),
                "{program}"
            );
            let marker = "audit_bucket_policy = aws.s3.BucketPolicy(";
            let from = program.find(marker).unwrap();
            let start = from + program[from..].find("json.dumps(").unwrap() + "json.dumps(".len();
            let end = start + program[start..].find("\n    ),\n)\n").unwrap();
            let policy = program[start..end]
                .replace("trail_arn", &format!("\"{}\"", trail_arn(region, account)));
            let policy: Value = serde_json::from_str(&policy).unwrap();
            assert_eq!(
                policy,
                expected_bucket_policy(account, json!(trail_arn(region, account))),
                "{pair}"
            );
            for setting in [
                "is_multi_region_trail=True",
                "include_global_service_events=True",
                "enable_log_file_validation=True",
                "read_write_type=\"All\"",
                "restrict_public_buckets=True",
            ] {
                assert!(program.contains(setting), "{pair}: {setting}");
            }
        }
        assert_eq!(
            program.matches("gcp.projects.IAMAuditConfig(").count(),
            services.len(),
            "{pair}"
        );
        for service in services {
            assert!(program.contains(&format!("    service=\"{service}\",\n    audit_log_configs=[\n        gcp.projects.IAMAuditConfigAuditLogConfigArgs(log_type=\"ADMIN_READ\"),\n        gcp.projects.IAMAuditConfigAuditLogConfigArgs(log_type=\"DATA_READ\"),\n    ],")), "{pair}: {program}");
        }
    }
}

/// Shell, run against stubs: the bucket, its public access block and exact policy (in the
/// trail's region), the trail with its settings, started; the project's policy read, merged
/// (other services and exemptions kept) and written back.
#[test]
fn audit_scripts_create_the_trail_and_merge_the_audit_config() {
    let dir = tempfile::tempdir().unwrap();
    for (pair, _) in AUDIT_PAIRS {
        let (account, services) = audit_sides(pair);
        let script = any_setup(pair, "shell", &["--audit"]);
        let file = write_temp(&dir, &format!("{pair}.sh"), &script);
        assert_ok(
            Command::new("bash").args(["-n", &file]).output().unwrap(),
            "bash -n",
        );
        if support::tools::installed("shellcheck") {
            assert_ok(
                Command::new("shellcheck").arg(&file).output().unwrap(),
                "shellcheck",
            );
        }
        let (ok, calls, docs) = run_with_answering_stubs(
            &script,
            &[
                ("aws configure get region", "eu-west-1", 0),
                ("gcloud iam service-accounts describe", DEPLOYER_ID, 0),
                (
                    "aws iam get-outbound-web-identity-federation-info",
                    OUTBOUND_ISSUER,
                    0,
                ),
                ("gcloud projects get-iam-policy", PROJECT_POLICY, 0),
            ],
        );
        assert!(ok, "{pair}: {calls:?}");
        let call = |words: &[&str]| {
            calls
                .iter()
                .find(|c| c.len() > words.len() && c[..words.len()] == argv(words)[..])
        };
        match account {
            None => assert!(
                call(&["aws", "cloudtrail", "create-trail"]).is_none(),
                "{pair}"
            ),
            Some(account) => {
                let bucket = format!("keyless-audit-{account}");
                let create = call(&["aws", "cloudtrail", "create-trail"]).expect("create-trail");
                let region = value_of(create, "--region");
                for flag in [
                    "--is-multi-region-trail",
                    "--include-global-service-events",
                    "--enable-log-file-validation",
                ] {
                    assert!(create.contains(&flag.to_string()), "{pair}: {create:?}");
                }
                assert_eq!(value_of(create, "--name"), "keyless-audit");
                assert_eq!(value_of(create, "--s3-bucket-name"), bucket);
                let put = call(&["aws", "s3api", "put-bucket-policy"]).expect("put-bucket-policy");
                assert_eq!(value_of(put, "--bucket"), bucket);
                assert!(value_of(put, "--policy").starts_with("file://"));
                let policy: Value = docs
                    .iter()
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .find(|d| d["Statement"][0]["Sid"] == "AWSCloudTrailAclCheck")
                    .expect("the bucket policy");
                assert_eq!(
                    policy,
                    expected_bucket_policy(account, json!(trail_arn(&region, account))),
                    "{pair}"
                );
                let block = call(&["aws", "s3api", "put-public-access-block"]).expect("block");
                assert_eq!(
                    value_of(block, "--public-access-block-configuration"),
                    "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true"
                );
                let selectors =
                    call(&["aws", "cloudtrail", "put-event-selectors"]).expect("selectors");
                let selectors: Value =
                    serde_json::from_str(&value_of(selectors, "--event-selectors")).unwrap();
                assert_eq!(
                    selectors,
                    json!([{"ReadWriteType": "All", "IncludeManagementEvents": true}])
                );
                let order: Vec<&str> = calls
                    .iter()
                    .filter(|c| c[0] == "aws" && (c[1] == "s3api" || c[1] == "cloudtrail"))
                    .map(|c| c[2].as_str())
                    .collect();
                assert_eq!(
                    order,
                    [
                        "create-bucket",
                        "put-public-access-block",
                        "put-bucket-policy",
                        "create-trail",
                        "put-event-selectors",
                        "start-logging"
                    ],
                    "{pair}"
                );
            }
        }
        let set = call(&["gcloud", "projects", "set-iam-policy"]);
        assert_eq!(set.is_some(), !services.is_empty(), "{pair}");
        if let Some(set) = set {
            assert_eq!(set[3], "keyless-lab");
            let merged: Value = docs
                .iter()
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find(|d| d.get("etag").is_some())
                .expect("the merged project policy");
            assert_eq!(merged, expected_project_policy(&services), "{pair}");
        }
    }
}
