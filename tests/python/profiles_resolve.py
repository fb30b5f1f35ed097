"""Resolve each named profile of the shared credentials file with botocore's own parser.

Usage: profiles_resolve.py PROFILE...  (AWS_SHARED_CREDENTIALS_FILE names the file)
Exits non-zero naming the first profile botocore cannot read keys from.
"""

import sys

import botocore.session


def main(profiles):
    for profile in profiles:
        session = botocore.session.Session(profile=profile)
        creds = session.get_credentials()
        if creds is None or not creds.access_key.startswith("ASIA") or not creds.token:
            print(f"profile {profile}: botocore found no session credentials", file=sys.stderr)
            return 1
    print(f"{len(profiles)} profiles resolved")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
