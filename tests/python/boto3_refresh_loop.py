"""A long-running workload: STS GetCallerIdentity every INTERVAL seconds, CALLS times.

Usage: python boto3_refresh_loop.py CALLS INTERVAL shared|fresh

`shared` keeps one boto3 session for the whole run, so boto3's own refresh logic decides when
to go back to the credential endpoint (the ECS container provider re-fetches once fewer than
15 minutes remain, i.e. on every call with short lab credentials). `fresh` resolves the
credential chain again for every call: botocore's IMDS provider treats credentials expiring
within ~17-25 minutes as an IMDS outage and extends their expiry locally ("static stability"),
so one long-lived session cannot follow lab credentials that live seconds.

Prints JSON: {"arns": [...], "access_keys": [...], "errors": [...]}; the sleeps are the workload.
"""

import json
import sys
import time

import boto3


def main() -> None:
    calls, interval, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    session = boto3.Session()
    arns, keys, errors = [], [], []
    for i in range(calls):
        if mode == "fresh":
            session = boto3.Session()
        try:
            arns.append(session.client("sts").get_caller_identity()["Arn"])
            keys.append(session.get_credentials().get_frozen_credentials().access_key)
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            errors.append(f"call {i}: {type(e).__name__}: {e}")
        if i + 1 < calls:
            time.sleep(interval)
    json.dump({"arns": arns, "access_keys": keys, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
