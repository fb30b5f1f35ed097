"""What google-auth sends to Google STS for an AWS identity, at a frozen time.

Usage: AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... [AWS_SESSION_TOKEN=...] AWS_REGION=...
       python google_auth_token_request.py AUDIENCE TOKEN_URL UNIX_SECONDS

Loads an external_account (aws1) configuration with google.auth.aws.Credentials.from_info,
freezes google-auth's clock, and refreshes through a transport that records the POST to the
token URL instead of sending it. Prints JSON: {"url", "headers", "form": {field: value}}.
Nothing here knows about keyless; the Rust test compares this with what keyless sends.
"""

import datetime
import json
import sys
import urllib.parse

from google.auth import _helpers, aws


class Recorded(Exception):
    """Stops the refresh once the token request has been captured."""


class RecordingRequest:
    """A google.auth.transport.Request that records the token-exchange POST."""

    def __init__(self, token_url):
        self.token_url = token_url
        self.captured = None

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        if url == self.token_url:
            if isinstance(body, bytes):
                body = body.decode()
            self.captured = {"url": url, "method": method, "headers": dict(headers or {}), "body": body}
            raise Recorded()
        raise RuntimeError(f"unexpected request to {url}: credentials must come from the environment")


def main() -> None:
    audience, token_url, when = sys.argv[1], sys.argv[2], int(sys.argv[3])
    frozen = datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc).replace(tzinfo=None)
    _helpers.utcnow = lambda: frozen
    credentials = aws.Credentials.from_info(
        {
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": token_url,
            "credential_source": {
                "environment_id": "aws1",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            },
        },
        scopes=["https://www.googleapis.com/auth/cloud-platform"],
    )
    request = RecordingRequest(token_url)
    try:
        credentials.refresh(request)
    except Recorded:
        pass
    captured = request.captured
    if captured is None:
        sys.exit("google-auth did not call the token URL")
    form = dict(urllib.parse.parse_qsl(captured["body"], keep_blank_values=True))
    json.dump({"url": captured["url"], "headers": captured["headers"], "form": form}, sys.stdout)


if __name__ == "__main__":
    main()
