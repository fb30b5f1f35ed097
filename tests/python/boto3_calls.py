"""Makes the three calls a workload would make, with boto3's default credential chain.

Usage: AWS_PROFILE=... python boto3_calls.py QUEUE_URL

Nothing here knows about keyless: the profile's credential_process does. Prints JSON:
{"arn": caller ARN, "buckets": [names], "message_id": SQS message id, "access_key_id": ...}.
Any AWS error propagates and fails the script (exit status 1, traceback on stderr).
"""

import json
import sys

import boto3


def main() -> None:
    queue_url = sys.argv[1]
    session = boto3.Session()
    identity = session.client("sts").get_caller_identity()
    buckets = [b["Name"] for b in session.client("s3").list_buckets()["Buckets"]]
    message = session.client("sqs").send_message(QueueUrl=queue_url, MessageBody="from boto3")
    json.dump(
        {
            "arn": identity["Arn"],
            "buckets": buckets,
            "message_id": message["MessageId"],
            "access_key_id": session.get_credentials().access_key,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
