"""The hand-written peer of keyless's local endpoints: a Python ECS-style and GCE-style stub.

Usage: python stub_server.py PORT_FILE

What people write when they need a credential endpoint in a hurry: http.server, one thread per
connection, HTTP/1.1 keep-alive and TCP_NODELAY (its fairest settings), fixed credentials in memory,
the same checks keyless makes (the ECS Authorization token, GCE's Metadata-Flavor header).
Binds 127.0.0.1 on a free port and writes the port to PORT_FILE.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AUTH_TOKEN = "bench-token"
ECS = json.dumps(
    {
        "AccessKeyId": "ASIABENCHSTUB0000000",
        "SecretAccessKey": "x" * 40,
        "Token": "t" * 600,
        "Expiration": "2099-01-01T00:00:00Z",
        "AccountId": "123456789012",
    }
).encode()
GCE = json.dumps({"access_token": "ya29." + "a" * 200, "expires_in": 3599, "token_type": "Bearer"}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle and the client's delayed ACK
    # add 40 ms to every answer on a kept-alive connection (the classic stub bug, fixed here to
    # give the peer its best shot).
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path == "/creds":
            if self.headers.get("Authorization") != AUTH_TOKEN:
                return self.answer(403, b'{"Code":"AccessDenied"}', {})
            return self.answer(200, ECS, {})
        if self.path.startswith("/computeMetadata/v1/instance/service-accounts/default/token"):
            if self.headers.get("Metadata-Flavor") != "Google" or self.headers.get("X-Forwarded-For"):
                return self.answer(403, b"", {})
            return self.answer(200, GCE, {"Metadata-Flavor": "Google"})
        return self.answer(404, b"", {})

    def answer(self, status, body, headers):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
