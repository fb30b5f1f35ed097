"""The google-auth peer of `keyless gcp token`: an external_account (aws1) refresh.

Usage: AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_SESSION_TOKEN=... AWS_REGION=...
       python google_auth_token.py CONFIG_FILE [--repeat N]

Loads the file `keyless gcp config` wrote (google.auth.aws.Credentials.from_info, as the tests
do: load_credentials_from_file would look the project up at cloudresourcemanager) and refreshes
it over real HTTP against the lab: subject token, Google STS, generateAccessToken. Prints the
access token. With --repeat N it refreshes N times in one process and prints JSON with the CPU
and wall time of each refresh alone (imports and interpreter start excluded).
"""

import json
import sys
import time

import google.auth.transport.requests
from google.auth import aws


def main() -> None:
    config_file = sys.argv[1]
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--repeat" else 0
    with open(config_file) as f:
        info = json.load(f)
    request = google.auth.transport.requests.Request()
    if not repeat:
        credentials = aws.Credentials.from_info(
            info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(request)
        print(credentials.token)
        return
    cpu, wall = [], []
    for _ in range(repeat):
        credentials = aws.Credentials.from_info(
            info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        c0, w0 = time.process_time(), time.perf_counter()
        credentials.refresh(request)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    json.dump({"cpu_s": cpu, "wall_s": wall}, sys.stdout)


if __name__ == "__main__":
    main()
