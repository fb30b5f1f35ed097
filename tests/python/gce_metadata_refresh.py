"""google-auth believing it runs on Compute Engine, with keyless's metadata endpoint behind it.

Usage: GCE_METADATA_HOST=H:P GCE_METADATA_IP=H:P python gce_metadata_refresh.py SECONDS API_URL

Resolves credentials with google.auth.default() (which detects "GCE" by pinging
GCE_METADATA_IP), then for SECONDS GETs API_URL through an AuthorizedSession, once a second.
google-auth refreshes from the metadata endpoint whenever its token is within 3m45s of expiry,
which with the lab's short lifetimes is before every request: each request shows what the
endpoint hands out at that moment. Nothing here knows about keyless.
Prints JSON: {"credentials", "project_id", "email", "requests", "statuses": {status: count},
"distinct_tokens", "min_seconds_left", "max_seconds_left"}.
"""

import collections
import datetime
import hashlib
import json
import sys
import time

import google.auth
import google.auth.transport.requests
from google.auth import _helpers


def main() -> None:
    seconds, api_url = float(sys.argv[1]), sys.argv[2]
    credentials, project_id = google.auth.default()
    session = google.auth.transport.requests.AuthorizedSession(credentials)
    statuses = collections.Counter()
    tokens = set()
    seconds_left = []
    requests_made = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = session.get(api_url, timeout=10)
        requests_made += 1
        statuses[str(response.status_code)] += 1
        tokens.add(hashlib.sha256(credentials.token.encode()).hexdigest())
        left = credentials.expiry - _helpers.utcnow()
        seconds_left.append(left / datetime.timedelta(seconds=1))
        time.sleep(1)  # pacing: one request a second for the whole duration
    json.dump(
        {
            "credentials": type(credentials).__module__ + "." + type(credentials).__name__,
            "project_id": project_id,
            "email": credentials.service_account_email,
            "requests": requests_made,
            "statuses": statuses,
            "distinct_tokens": len(tokens),
            "min_seconds_left": min(seconds_left),
            "max_seconds_left": max(seconds_left),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
