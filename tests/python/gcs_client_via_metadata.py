"""google-cloud-storage with no credentials configured: they come from the "metadata server".

Usage: GCE_METADATA_HOST=H:P GCE_METADATA_IP=H:P python gcs_client_via_metadata.py ENDPOINT PROJECT BUCKET

Builds storage.Client(project=PROJECT, client_options={"api_endpoint": ENDPOINT}) (a GCS
emulator; the api_endpoint option keeps real credentials, STORAGE_EMULATOR_HOST would not),
creates BUCKET, uploads and reads back an object, and lists the buckets, recording the
Authorization header of every request the client sent.
Prints JSON: {"credentials", "buckets", "content", "requests", "unauthenticated_requests",
"bearer_tokens": [distinct tokens sent]}.
"""

import json
import sys

from google.cloud import storage


def main() -> None:
    endpoint, project, bucket_name = sys.argv[1], sys.argv[2], sys.argv[3]
    client = storage.Client(project=project, client_options={"api_endpoint": endpoint})
    sent = []

    def record(response, *args, **kwargs):
        sent.append(response.request.headers.get("Authorization"))

    client._http.hooks["response"].append(record)
    bucket = client.create_bucket(bucket_name)
    bucket.blob("hello.txt").upload_from_string("from keyless")
    content = bucket.blob("hello.txt").download_as_text()
    buckets = [b.name for b in client.list_buckets()]
    bearer = sorted({h.split(" ", 1)[1] for h in sent if h and h.startswith("Bearer ")})
    json.dump(
        {
            "credentials": type(client._credentials).__module__
            + "."
            + type(client._credentials).__name__,
            "buckets": buckets,
            "content": content,
            "requests": len(sent),
            "unauthenticated_requests": sum(1 for h in sent if not h),
            "bearer_tokens": bearer,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
