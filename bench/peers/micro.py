"""The Python peers of benches/micro.rs: the same four operations, done the way the reference
Python libraries do them, on the same inputs.

Usage: AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_SESSION_TOKEN=... AWS_REGION=...
       python micro.py DATA_DIR WORK_DIR [--quick|--full]

Prints JSON {name: {"median_ns": ..., "min_ns": ..., "max_ns": ...}} over several timeit
repeats. The names match benches/micro.rs.
"""

import configparser
import io
import json
import sys
import timeit
from pathlib import Path

import botocore.parsers
import botocore.session
from awscli.customizations.configure.writer import ConfigFileWriter
from google.auth import aws
from google.auth import jwt

AUDIENCE = (
    "//iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/bench-pool/providers/bench-provider"
)


def ini_with_profiles(n: int) -> str:
    """The same 1,000-profile credentials file benches/micro.rs generates."""
    out = []
    for i in range(n):
        out.append(
            f"[profile-{i:04}]\n"
            f"aws_access_key_id = AKIA{i:016}\n"
            f"aws_secret_access_key = {'s' * 36}{i:04}\n"
            "region = us-east-1\n\n"
        )
    return "".join(out)


def bench(fn, repeats):
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    runs = [t / number * 1e9 for t in timer.repeat(repeat=repeats, number=number)]
    runs.sort()
    return {"median_ns": runs[len(runs) // 2], "min_ns": runs[0], "max_ns": runs[-1]}


def main() -> None:
    data, work = Path(sys.argv[1]), Path(sys.argv[2])
    repeats = 3 if "--quick" in sys.argv else 7
    results = {}

    # SigV4 subject token: google-auth's aws1 source with credentials in the environment.
    credentials = aws.Credentials.from_info(
        {
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {
                "environment_id": "aws1",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            },
        }
    )
    results["sigv4_subject_token"] = bench(lambda: credentials.retrieve_subject_token(None), repeats)

    # STS XML: botocore's query-protocol parser with the STS model's output shape.
    xml = (data / "assume_role_response.xml").read_bytes()
    model = botocore.session.get_session().get_service_model("sts")
    shape = model.operation_model("AssumeRoleWithWebIdentity").output_shape
    parser = botocore.parsers.QueryParser()
    response = {"body": xml, "status_code": 200, "headers": {}}
    results["sts_xml_parse"] = bench(lambda: parser.parse(response, shape), repeats)

    # JWT claims without verification, as google-auth decodes them.
    token = (data / "id_token.jwt").read_text().strip()
    results["jwt_claims_decode"] = bench(lambda: jwt.decode(token, verify=False), repeats)

    # One profile of a 1,000-profile file rewritten in memory: configparser (drops comments).
    text = ini_with_profiles(1000)

    def rewrite_in_memory():
        cp = configparser.RawConfigParser()
        cp.read_string(text)
        cp.set("profile-0500", "aws_access_key_id", "ASIABENCHNEWKEY00000")
        cp.set("profile-0500", "aws_secret_access_key", "n" * 40)
        cp.set("profile-0500", "aws_session_token", "t" * 600)
        out = io.StringIO()
        cp.write(out)
        return out.getvalue()

    results["ini_rewrite_1000_profiles"] = bench(rewrite_in_memory, repeats)

    # The same on disk, as `aws configure set` does it (awscli's ConfigFileWriter).
    path = work / "python-credentials"
    path.write_text(text)
    writer = ConfigFileWriter()
    new = {
        "__section__": "profile-0500",
        "aws_access_key_id": "ASIABENCHNEWKEY00000",
        "aws_secret_access_key": "n" * 40,
        "aws_session_token": "t" * 600,
    }
    results["ini_write_profile_file_1000_profiles"] = bench(
        lambda: writer.update_config(new, str(path)), repeats
    )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
