"""Creates the AWS side of a test in moto, through boto3, while moto's auth is still off.

Usage: python moto_setup.py SPEC_JSON   (endpoint and dummy keys come from the environment)

SPEC_JSON:
  {"roles":   [{"name": ..., "trust_policy": {...}, "policy": {...} or null}],
   "buckets": ["name", ...],
   "queues":  ["name", ...]}

A role's "policy" becomes an inline role policy: with auth enforced, moto allows an
assumed-role session exactly what the role's inline and attached policies allow.

Prints JSON: {"roles": {name: arn}, "buckets": [...], "queues": {name: url}}.
"""

import json
import sys

import boto3


def main() -> None:
    spec = json.loads(sys.argv[1])
    iam = boto3.client("iam")
    s3 = boto3.client("s3")
    sqs = boto3.client("sqs")

    roles = {}
    for role in spec.get("roles", []):
        created = iam.create_role(
            RoleName=role["name"],
            AssumeRolePolicyDocument=json.dumps(role["trust_policy"]),
            MaxSessionDuration=role.get("max_session_duration", 3600),
        )
        if role.get("policy"):
            iam.put_role_policy(
                RoleName=role["name"],
                PolicyName=f"{role['name']}-permissions",
                PolicyDocument=json.dumps(role["policy"]),
            )
        roles[role["name"]] = created["Role"]["Arn"]

    for bucket in spec.get("buckets", []):
        s3.create_bucket(Bucket=bucket)

    queues = {}
    for queue in spec.get("queues", []):
        queues[queue] = sqs.create_queue(QueueName=queue)["QueueUrl"]

    json.dump({"roles": roles, "buckets": spec.get("buckets", []), "queues": queues}, sys.stdout)


if __name__ == "__main__":
    main()
