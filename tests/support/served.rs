//! A long-running delivery (`keyless aws serve`'s ECS-style endpoint or `keyless gcp serve`'s
//! GCE-metadata endpoint) whose upstream sits behind a [`FaultProxy`], and one client's view of
//! what it serves: the fault and soak tests break the upstream and watch the endpoint.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Background, FaultProxy, LabWorld};

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
/// Time allowed for the binary to start and print its export lines.
const STARTUP: Duration = Duration::from_secs(30);

/// Which endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `keyless aws serve`: the ECS-style container endpoint, upstream AWS STS.
    Ecs,
    /// `keyless gcp serve`: the GCE metadata endpoint, upstream Google STS and IAM Credentials.
    Gce,
}

impl Delivery {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ecs => "aws serve (ECS)",
            Self::Gce => "gcp serve (GCE)",
        }
    }
}

/// What one request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A credential: an identifier (the access key id, or the end of the access token) and its
    /// expiry as the answer states it (GCE's `expires_in` counted from when the request left).
    Credential {
        id: String,
        expires_at: OffsetDateTime,
    },
    /// 503: no valid credential can be had now (the message says why).
    Unavailable(String),
    /// Anything else: a failure of the endpoint.
    Unexpected(String),
}

/// The endpoint, the proxy in front of its upstream, and the process serving it.
pub struct Served {
    pub delivery: Delivery,
    pub proxy: FaultProxy,
    pub server: Background,
    /// What the server exported (the URL, token or host clients use).
    pub vars: HashMap<String, String>,
    client: reqwest::Client,
}

impl Served {
    /// Starts the delivery against `w`'s lab with its upstream behind a new proxy, `env` added
    /// to the server's environment; returns once it has announced where it listens.
    pub async fn start(w: &LabWorld, delivery: Delivery, env: &[(&str, &str)]) -> Self {
        let (upstream, names) = match delivery {
            Delivery::Ecs => (
                w.lab.aws_sts_url(),
                &[
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                ][..],
            ),
            Delivery::Gce => (w.lab.google_apis_url(), &["GCE_METADATA_HOST"][..]),
        };
        let proxy = FaultProxy::start(delivery.name(), &upstream).await;
        let role = w.role("gcp-deploy");
        let audience = w.lab.workload_identity_audience();
        let token_url = format!("{}/v1/token", proxy.url());
        let proxy_url = proxy.url();
        let args = match delivery {
            Delivery::Ecs => vec![
                "aws",
                "serve",
                "--role-arn",
                &role,
                "--sts-endpoint",
                &proxy_url,
            ],
            Delivery::Gce => vec![
                "gcp",
                "serve",
                "--audience",
                &audience,
                "--service-account",
                COPYCAT,
                "--token-url",
                &token_url,
                "--iamcredentials-url",
                &proxy_url,
            ],
        };
        // The AWS identity comes from the lab's container endpoint, which issues fresh sessions
        // (the lab's lifetime cap applies to AWS sessions too).
        let token_file = w
            .home
            .write_token("container-token", &w.lab.container_authorization_token());
        let aws = [
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                w.lab.container_credentials_uri("aws-workload"),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ];
        let mut all_env: Vec<(&str, &str)> = env.to_vec();
        if delivery == Delivery::Gce {
            all_env.extend(aws.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut server = w.spawn_keyless(&args, &all_env);
        let vars = server.exports(names, STARTUP).await;
        Self {
            delivery,
            proxy,
            server,
            vars,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// One request, as an SDK would make it.
    pub async fn fetch(&self) -> Answer {
        let request = match self.delivery {
            Delivery::Ecs => self
                .client
                .get(&self.vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
                .header(
                    "Authorization",
                    &self.vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
                ),
            Delivery::Gce => self
                .client
                .get(format!(
                    "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
                    self.vars["GCE_METADATA_HOST"]
                ))
                .header("Metadata-Flavor", "Google"),
        };
        let sent = OffsetDateTime::now_utc();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Answer::Unexpected(format!("no answer: {e}")),
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if status == 503 {
            return Answer::Unavailable(body);
        }
        let doc: serde_json::Value = match serde_json::from_str(&body) {
            Ok(doc) if status == 200 => doc,
            _ => return Answer::Unexpected(format!("{status}: {body:.300}")),
        };
        let credential = match self.delivery {
            Delivery::Ecs => doc["AccessKeyId"]
                .as_str()
                .zip(doc["Expiration"].as_str().and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                })),
            // Counted from when the request left: never later than the real expiry, however
            // long the answer took.
            Delivery::Gce => doc["access_token"].as_str().zip(
                doc["expires_in"]
                    .as_i64()
                    .map(|s| sent + time::Duration::seconds(s)),
            ),
        };
        match credential {
            // Only the end of a token: enough to tell two apart, nothing to replay.
            Some((id, expires_at)) => Answer::Credential {
                id: id[id.len().saturating_sub(8)..].to_string(),
                expires_at,
            },
            None => Answer::Unexpected(format!("200 without a credential: {body:.100}")),
        }
    }

    /// Waits (at most `within`) until the endpoint serves a credential other than `not`;
    /// returns it.
    pub async fn next_credential(&self, not: &str, within: Duration) -> Result<Answer, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let answer = self.fetch().await;
            if matches!(&answer, Answer::Credential { id, .. } if id != not) {
                return Ok(answer);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{}: no new credential within {within:?}; last answer {answer:?}\n{}",
                    self.delivery.name(),
                    self.server.stderr()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
