//! GitHub Actions OIDC tokens (`github`): the identity of the workflow job keyless runs in.
//!
//! The runner gives a job with `permissions: id-token: write` two variables:
//! `ACTIONS_ID_TOKEN_REQUEST_URL` (which already holds a query) and
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN`. `GET URL&audience=AUD` with `Authorization: Bearer TOKEN`
//! answers `{"count": …, "value": JWT}`. Tokens live about five minutes, so none is kept: each
//! exchange (and each refresh of the refresh engine) asks for a new one, and a long job never
//! holds an expired credential. The request URL receives the bearer token, so it is checked as
//! every endpoint override is ([`UpstreamUrl`]: https, or http to loopback only).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secret::Secret;
use crate::source::registry::{Argument, Registration};
use crate::source::{IdToken, TokenFuture, TokenSource};
use crate::types::UpstreamUrl;
use crate::wire::{error_chain, truncate};

/// The variable holding the token service's URL.
pub const REQUEST_URL_VARIABLE: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
/// The variable holding the bearer token for it.
pub const REQUEST_TOKEN_VARIABLE: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// `github`: the running GitHub Actions job's OIDC token, minted for the target's audience.
pub const GITHUB: Registration = Registration {
    name: "github",
    argument: Argument::None,
    summary:
        "a GitHub Actions OIDC token for the running job (needs `permissions: id-token: write`)",
    build: |_, _| {
        Ok(Arc::new(GithubActions::from_env(|name| {
            std::env::var(name).ok()
        })?))
    },
};

/// What can go wrong asking GitHub for a token.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// Not in a job, or the job may not request tokens.
    #[error("GitHub Actions OIDC is not available: {missing} not set\n  hint: the job needs `permissions: id-token: write` (in the workflow or the job) to get these variables; outside GitHub Actions use another --token-source")]
    MissingVariables { missing: String },

    /// `ACTIONS_ID_TOKEN_REQUEST_URL` is not an acceptable endpoint.
    #[error("{REQUEST_URL_VARIABLE} is not usable: {reason}")]
    InvalidRequestUrl { reason: String },

    /// The token service could not be reached.
    #[error("could not reach the GitHub Actions token service at {host}: {cause}")]
    Unreachable { host: String, cause: String },

    /// The token service refused (or failed).
    #[error("the GitHub Actions token service at {host} answered {status}: {message}{hint}")]
    Refused {
        host: String,
        status: u16,
        message: String,
        hint: &'static str,
    },

    /// It answered, but not with a token.
    #[error("the GitHub Actions token service at {host} did not answer a token: {reason}")]
    Malformed { host: String, reason: String },
}

impl GithubError {
    /// Not in a job that may request tokens, or its request URL is unusable: configuration to
    /// fix, not a failure of GitHub.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::MissingVariables { .. } | Self::InvalidRequestUrl { .. }
        )
    }

    /// Network trouble and 5xx/429 answers may pass; the rest will not change by itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// The token service of the running job.
#[derive(Clone, Debug)]
pub struct GithubActions {
    request_url: UpstreamUrl,
    request_token: Secret,
    /// `GITHUB_REPOSITORY`, `GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT` and a fingerprint of the URL.
    job: String,
}

impl GithubActions {
    /// The job's token service, from the runner's variables (`env` reads one).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, GithubError> {
        let read = |name| env(name).filter(|v| !v.trim().is_empty());
        let (url, token) = (read(REQUEST_URL_VARIABLE), read(REQUEST_TOKEN_VARIABLE));
        let missing: Vec<&str> = [
            (REQUEST_URL_VARIABLE, url.is_none()),
            (REQUEST_TOKEN_VARIABLE, token.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        let (Some(url), Some(token)) = (url, token) else {
            return Err(GithubError::MissingVariables {
                missing: missing.join(" and "),
            });
        };
        let request_url = UpstreamUrl::parse(&url).map_err(|e| GithubError::InvalidRequestUrl {
            reason: e.to_string(),
        })?;
        let fingerprint = hex::encode(&Sha256::digest(request_url.as_str().as_bytes())[..8]);
        let job = format!(
            "repository={} run={} attempt={} url-sha256={fingerprint}",
            read("GITHUB_REPOSITORY").unwrap_or_default(),
            read("GITHUB_RUN_ID").unwrap_or_default(),
            read("GITHUB_RUN_ATTEMPT").unwrap_or_default(),
        );
        Ok(Self {
            request_url,
            request_token: Secret::new(token.trim()),
            job,
        })
    }

    fn host(&self) -> String {
        url::Url::parse(self.request_url.as_str())
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(port) => format!("{h}:{port}"),
                    None => h.to_string(),
                })
            })
            .unwrap_or_default()
    }

    /// `URL&audience=AUD` (`?` when the URL has no query yet).
    fn url_for(&self, audience: &str) -> String {
        let url = self.request_url.as_str();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!(
            "{url}{separator}audience={}",
            percent_encoding::utf8_percent_encode(audience, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    /// A new token for `audience`.
    pub async fn fetch_token(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<IdToken, GithubError> {
        let host = self.host();
        let response = http
            .get(self.url_for(audience))
            .bearer_auth(self.request_token.expose())
            .header("Accept", "application/json; api-version=2.0")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| GithubError::Unreachable {
                host: host.clone(),
                cause: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let body =
            crate::wire::http::read_body(response)
                .await
                .map_err(|e| GithubError::Unreachable {
                    host: host.clone(),
                    cause: e.to_string(),
                })?;
        read_answer(host, status, &body)
    }
}

impl TokenSource for GithubActions {
    fn describe(&self) -> String {
        format!("github({})", self.host())
    }

    /// Who the token will name is unknown without asking for one, so the cache key is the job:
    /// the repository, the run and its attempt, and a fingerprint of the request URL (which
    /// GitHub makes per job). Another job, or a re-run, never reads this job's credentials.
    fn cached_identity(&self) -> Option<String> {
        Some(self.job.clone())
    }

    fn fetch<'a>(&'a self, http: &'a reqwest::Client, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move { Ok(self.fetch_token(http, audience).await?) })
    }
}

/// Reads the token service's answer: `{"value": JWT}` with status 200, else the refusal. The
/// body holds the token: an answer that cannot be read is described, never quoted.
pub(crate) fn read_answer(host: String, status: u16, body: &str) -> Result<IdToken, GithubError> {
    if status != 200 {
        return Err(GithubError::Refused {
            host,
            status,
            message: truncate(body.trim(), 300),
            hint: match status {
                401 | 403 => "\n  hint: the request token is valid only while its job runs, and only for a job with `permissions: id-token: write`",
                _ => "",
            },
        });
    }
    #[derive(Deserialize)]
    struct Answer {
        value: Option<serde_json::Value>,
    }
    let malformed = |got: String| GithubError::Malformed {
        host: host.clone(),
        reason: format!("expected {{\"value\": JWT}}, got {got}"),
    };
    let value = match serde_json::from_str::<Answer>(body) {
        Ok(Answer {
            value: Some(serde_json::Value::String(value)),
        }) if !value.trim().is_empty() => value,
        Ok(Answer {
            value: Some(serde_json::Value::String(_)),
        }) => return Err(malformed("an empty value".into())),
        Ok(_) => return Err(malformed("JSON without a \"value\" string".into())),
        Err(_) if body.trim().is_empty() => return Err(malformed("an empty body".into())),
        Err(_) if body.trim_start().starts_with('<') => {
            return Err(malformed(format!(
                "HTML or XML ({} bytes; a proxy or a login page?)",
                body.len()
            )))
        }
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(malformed(format!(
                "invalid JSON at line {} column {} ({} bytes)",
                e.line(),
                e.column(),
                body.len()
            )))
        }
        Err(_) => return Err(malformed("JSON of another shape".into())),
    };
    IdToken::parse(
        Secret::new(value.trim()),
        "the GitHub Actions token service",
    )
    .map_err(|e| GithubError::Malformed {
        host,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceError;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn missing_variables_name_the_permission() {
        let err = GithubActions::from_env(env(&[])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("permissions: id-token: write"), "{text}");
        assert!(
            text.contains("ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
            "{text}"
        );
        let err =
            GithubActions::from_env(env(&[(REQUEST_URL_VARIABLE, "https://x/?a=1")])).unwrap_err();
        assert!(
            err.to_string()
                .contains(": ACTIONS_ID_TOKEN_REQUEST_TOKEN not set"),
            "{err}"
        );
    }

    /// The bearer token goes to the request URL, so plain http goes to loopback only.
    #[test]
    fn the_request_url_is_an_endpoint() {
        let err = GithubActions::from_env(env(&[
            (
                REQUEST_URL_VARIABLE,
                "http://evil.example/idtoken?api-version=2.0",
            ),
            (REQUEST_TOKEN_VARIABLE, "bearer-secret"),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, GithubError::InvalidRequestUrl { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("bearer-secret"));
        let ok = GithubActions::from_env(env(&[
            (
                REQUEST_URL_VARIABLE,
                "https://pipelines.actions.githubusercontent.com/abc/idtoken?api-version=2.0",
            ),
            (REQUEST_TOKEN_VARIABLE, "bearer-secret"),
            ("GITHUB_REPOSITORY", "octo/app"),
            ("GITHUB_RUN_ID", "42"),
        ]))
        .unwrap();
        assert_eq!(
            ok.url_for("sts.amazonaws.com"),
            "https://pipelines.actions.githubusercontent.com/abc/idtoken?api-version=2.0&audience=sts%2Eamazonaws%2Ecom"
        );
        assert_eq!(
            ok.describe(),
            "github(pipelines.actions.githubusercontent.com)"
        );
        assert!(!format!("{ok:?}").contains("bearer-secret"));
        let identity = ok.cached_identity().unwrap();
        assert!(
            identity.starts_with("repository=octo/app run=42 attempt= url-sha256="),
            "{identity}"
        );
    }

    /// Another job (another request URL) gets another cache entry.
    #[test]
    fn the_cache_identity_changes_with_the_job() {
        let identity = |url: &str, run: &str| {
            GithubActions::from_env(env(&[
                (REQUEST_URL_VARIABLE, url),
                (REQUEST_TOKEN_VARIABLE, "t"),
                ("GITHUB_REPOSITORY", "octo/app"),
                ("GITHUB_RUN_ID", run),
            ]))
            .unwrap()
            .cached_identity()
        };
        let a = identity("https://h/jobs/1/idtoken?v=2", "7");
        assert_ne!(a, identity("https://h/jobs/2/idtoken?v=2", "7"));
        assert_ne!(a, identity("https://h/jobs/1/idtoken?v=2", "8"));
        assert_eq!(a, identity("https://h/jobs/1/idtoken?v=2", "7"));
    }

    #[test]
    fn refusals_are_classified() {
        let refused = |status| GithubError::Refused {
            host: "h".into(),
            status,
            message: String::new(),
            hint: "",
        };
        assert!(refused(503).is_transient() && refused(429).is_transient());
        assert!(!refused(403).is_transient());
        assert!(SourceError::from(refused(502)).is_transient());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    const SIGNATURE: &str = "Z2l0aHViLXNpZ25hdHVyZS1uZXZlci1zaG93bg";

    fn token() -> String {
        let encode = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.{SIGNATURE}",
            encode(serde_json::json!({"alg": "RS256"})),
            encode(
                serde_json::json!({"iss": "https://token.actions.githubusercontent.com", "aud": "a", "sub": "repo:o/r:ref:refs/heads/main", "exp": 2000000000})
            ),
        )
    }

    /// An answer that cannot be read used to be quoted (its first 100 characters), and a
    /// cut-short `{"value": JWT` holds the token: now it is described, never quoted.
    #[test]
    fn an_unreadable_answer_is_described_not_quoted() {
        let token = token();
        for (body, says) in [
            (format!("{{\"value\":\"{token}\""), "invalid JSON at line 1"),
            (
                format!("{{\"value\":[\"{token}\"]}}"),
                "without a \"value\" string",
            ),
            ("<html>login</html>".to_string(), "HTML or XML"),
            (String::new(), "an empty body"),
            ("{\"value\":\" \"}".to_string(), "an empty value"),
        ] {
            let error = read_answer("h".into(), 200, &body).unwrap_err();
            let text = error.to_string();
            assert!(text.contains(says), "{text}");
            assert!(!text.contains(&token[..20]), "{text}");
            assert!(!error.is_transient());
        }
    }

    proptest! {
        /// Any status and body: a token only from a 200 `{"value": JWT}`, else an error
        /// classified by its status; an answer around a token never has the token quoted.
        #[test]
        fn any_answer_is_its_token_or_an_error_without_it(
            status in prop_oneof![Just(200u16), 100u16..600],
            body in prop_oneof![any::<String>(), "[{}\\[\\]\",:a-z0-9 ]{0,30}"],
            shape in 0usize..5,
        ) {
            let token = token();
            let answer = match shape {
                0 => body.clone(),
                1 => format!("{{\"value\":\"{token}\"{body}"),
                2 => format!("{body}{{\"value\":\"{token}\"}}"),
                3 => format!("{{\"value\":\"{token}{body}\"}}"),
                _ => serde_json::json!({"count": 1, "value": token}).to_string(),
            };
            match read_answer("h".into(), status, &answer) {
                Ok(read) => {
                    prop_assert_eq!(status, 200);
                    if shape == 4 {
                        prop_assert_eq!(read.secret().expose(), token.as_str());
                    }
                }
                Err(error) => {
                    prop_assert!(status != 200 || shape != 4, "{}", error);
                    prop_assert_eq!(error.is_transient(), status >= 500 || status == 429, "{}", status);
                    if status == 200 {
                        prop_assert!(!error.to_string().contains(SIGNATURE), "{}", error);
                    }
                }
            }
        }
    }
}
