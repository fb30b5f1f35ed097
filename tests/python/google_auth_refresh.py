"""google-auth doing the exchange by itself, from an external_account file keyless wrote.

Usage: AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... [AWS_SESSION_TOKEN=...] AWS_REGION=...
       python google_auth_refresh.py CONFIG_FILE API_URL
   or, for a file credential source (an OIDC token): python google_auth_refresh.py CONFIG_FILE API_URL

Loads the file with google.auth.aws.Credentials.from_info (an AWS credential source) or
google.auth.identity_pool.Credentials.from_info (a file or url one): load_credentials_from_file
would also look the project up at cloudresourcemanager. Refreshes over real HTTP (the token and
impersonation URLs in the file point at the lab), then GETs API_URL with the token.
Prints JSON: {"status": HTTP status of API_URL, "expiry": token expiry, "credentials": class}.
"""

import json
import sys

import google.auth.transport.requests
import requests
from google.auth import aws, identity_pool


def main() -> None:
    config_file, api_url = sys.argv[1], sys.argv[2]
    with open(config_file) as f:
        info = json.load(f)
    kind = aws if "environment_id" in info["credential_source"] else identity_pool
    credentials = kind.Credentials.from_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    credentials.refresh(google.auth.transport.requests.Request())
    response = requests.get(api_url, headers={"Authorization": f"Bearer {credentials.token}"}, timeout=10)
    json.dump(
        {
            "status": response.status_code,
            "expiry": str(credentials.expiry),
            "credentials": f"{type(credentials).__module__}.{type(credentials).__name__}",
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
