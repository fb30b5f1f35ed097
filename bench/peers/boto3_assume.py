"""The boto3 peer of `keyless aws credentials`: the pattern the GCP → AWS write-ups show.

Usage: python boto3_assume.py ROLE_ARN TOKEN_FILE   (AWS_ENDPOINT_URL_STS points at the lab)

Reads a Google ID token, calls STS AssumeRoleWithWebIdentity with boto3 and prints the
credential_process JSON, as a hand-written credential_process script would.
"""

import json
import sys

import boto3


def main() -> None:
    role_arn, token_file = sys.argv[1], sys.argv[2]
    with open(token_file) as f:
        token = f.read().strip()
    sts = boto3.client("sts")
    answer = sts.assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="bench", WebIdentityToken=token
    )
    c = answer["Credentials"]
    json.dump(
        {
            "Version": 1,
            "AccessKeyId": c["AccessKeyId"],
            "SecretAccessKey": c["SecretAccessKey"],
            "SessionToken": c["SessionToken"],
            "Expiration": c["Expiration"].isoformat(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
