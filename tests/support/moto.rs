//! A moto server of our own for one test: AWS STS, IAM, S3 and SQS on a loopback port.
//!
//! One server per test, because moto's auth switch (`/moto-api/reset-auth`) is global to the
//! server and tests run in parallel. The server is killed when the `Moto` is dropped; if the
//! test is failing, the end of moto's request log is printed first.
//!
//! Auth enforcement, as moto implements it (`moto/core/authorization.py`): `reset_auth(n)`
//! lets the next `n` requests through unchecked (counted whatever they are), after which every
//! request must carry a valid SigV4 signature from known credentials, and the caller's IAM
//! policies must allow the action. For assumed-role credentials moto evaluates the role's
//! inline and attached policies. The unsigned `AssumeRoleWithWebIdentity` is not exempt: once
//! enforcement is on it answers 500, so each exchange keyless makes needs one of the `n`.
//! A fresh server does not enforce anything (`n` is infinite).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::process::{expect_success, CommandOutput};
use super::service::Service;
use super::venv;

/// How long moto may take to answer its first request (it imports every service at start).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A running moto server.
pub struct Moto {
    service: Service,
}

impl Moto {
    /// Starts `moto_server` from the test venv on a free loopback port and waits until it
    /// answers HTTP. Panics (telling to run `tools/test`) when moto is not installed.
    pub fn start() -> Self {
        let service = Service::start(
            "moto_server",
            &venv::bin("moto_server"),
            |port| {
                ["-H", "127.0.0.1", "-p", &port.to_string()]
                    .map(String::from)
                    .to_vec()
            },
            // Any HTTP answer means the server is serving; GET on reset-auth changes nothing.
            |port| http(port, "GET", "/moto-api/reset-auth", "").is_ok(),
            READY_WITHIN,
        );
        Self { service }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        self.service.endpoint()
    }

    /// Turns auth enforcement on, letting the next `allowed_unauthenticated` requests through
    /// unchecked (see the module doc). `0` means every request from now on is checked.
    pub fn reset_auth(&self, allowed_unauthenticated: u32) {
        let (status, body) = http(
            self.service.port,
            "POST",
            "/moto-api/reset-auth",
            &allowed_unauthenticated.to_string(),
        )
        .unwrap_or_else(|e| panic!("reset-auth: {e}"));
        assert_eq!(status, 200, "reset-auth answered {status}: {body}");
    }

    /// Creates IAM roles, S3 buckets and SQS queues through boto3 (`tests/python/moto_setup.py`;
    /// `spec` is documented there). Call it before turning auth on. Returns the script's JSON:
    /// `{"roles": {name: arn}, "buckets": [...], "queues": {name: url}}`.
    pub fn create(&self, spec: &serde_json::Value) -> serde_json::Value {
        let out = self.admin_python("moto_setup.py", &[&spec.to_string()]);
        out.json()
    }

    /// Runs a `tests/python/` script with the venv's Python as an administrator of this moto
    /// (dummy root keys: fine while auth is off).
    pub fn admin_python(&self, script: &str, args: &[&str]) -> CommandOutput {
        expect_success(
            Command::new(venv::bin("python"))
                .arg(venv::script(script))
                .args(args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", self.service.dir.path())
                .env("LANG", "C.UTF-8")
                .env("AWS_ENDPOINT_URL", self.endpoint())
                .env("AWS_ACCESS_KEY_ID", "AKIAKEYLESSADMIN0000")
                .env("AWS_SECRET_ACCESS_KEY", "admin-secret")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_CONFIG_FILE", "/dev/null")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
                .env("AWS_EC2_METADATA_DISABLED", "true"),
        )
    }

    /// moto's request log so far (moto logs every request it serves, with the status).
    pub fn log(&self) -> String {
        self.service.log()
    }
}

/// A minimal HTTP/1.1 exchange with moto (`Connection: close`): enough for moto-api calls,
/// without pulling an HTTP client into the tests. Returns the status code and body.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:?}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
