//! Kubernetes projected service-account tokens (`k8s[:PATH]`): EKS IRSA, and any cluster whose
//! issuer an IAM OIDC provider (or a workload identity pool) trusts.
//!
//! The kubelet rewrites a projected token at 80% of its lifetime (or after 24 h), so the file is
//! re-read for every exchange and the token itself is never kept. Without PATH the token is the
//! one `AWS_WEB_IDENTITY_TOKEN_FILE` names (what EKS injects for IRSA), else the pod's default
//! service-account token, whose audience is usually the API server rather than STS: that case
//! gets a warning saying how to project a token for the right audience. The credential cache
//! follows the token's identity (`iss` and `sub` read from the file), not the path, so a file
//! that starts naming another service account never gets the first one's credentials.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::private_file::{read_capped, MAX_SMALL_FILE_BYTES};
use crate::secret::Secret;
use crate::source::registry::{Argument, Registration};
use crate::source::{IdToken, SourceError, TokenFuture, TokenSource};

/// The pod's default service-account token (audience: the API server, unless projected).
pub const DEFAULT_SERVICE_ACCOUNT_TOKEN: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The variable EKS sets to the projected token's path (IRSA).
pub const WEB_IDENTITY_TOKEN_FILE_VARIABLE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";

/// `k8s[:PATH]`: a projected service-account token, re-read for every exchange.
pub const KUBERNETES: Registration = Registration {
    name: "k8s",
    argument: Argument::Optional("PATH"),
    summary: "a Kubernetes projected service-account token (default: $AWS_WEB_IDENTITY_TOKEN_FILE, then the pod's token), re-read on every use",
    build: |path, _| {
        Ok(Arc::new(KubernetesToken::resolve(path, |name| {
            std::env::var(name).ok()
        })))
    },
};

/// Where the path came from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPathOrigin {
    /// `k8s:PATH`.
    Argument,
    /// `$AWS_WEB_IDENTITY_TOKEN_FILE`.
    WebIdentityTokenFile,
    /// The pod's default service-account token.
    DefaultServiceAccount,
}

/// What can go wrong with a projected token.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// No file at the path.
    #[error("no Kubernetes service-account token at {path} ({cause}){hint}")]
    Missing {
        path: PathBuf,
        cause: String,
        hint: &'static str,
    },

    /// The kubelet stopped refreshing the file.
    #[error("the Kubernetes token in {path} expired {ago} s ago ({claims})\n  hint: the kubelet rewrites a projected token at 80% of its lifetime; a stale one means the file is not a projected volume (a copied token?) or the pod's kubelet cannot reach the API server")]
    Expired {
        path: PathBuf,
        ago: i64,
        claims: String,
    },
}

impl KubernetesError {
    /// A missing file may appear (the volume is mounted late); an expired one will not refresh
    /// itself quickly enough to retry.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// A projected service-account token file.
#[derive(Clone, Debug)]
pub struct KubernetesToken {
    path: PathBuf,
    origin: TokenPathOrigin,
}

impl KubernetesToken {
    /// The token at `path` when given, else where `$AWS_WEB_IDENTITY_TOKEN_FILE` points, else the
    /// pod's default token; `env` reads a variable.
    pub fn resolve(path: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(path) = path.filter(|p| !p.trim().is_empty()) {
            return Self {
                path: PathBuf::from(path),
                origin: TokenPathOrigin::Argument,
            };
        }
        match env(WEB_IDENTITY_TOKEN_FILE_VARIABLE).filter(|p| !p.trim().is_empty()) {
            Some(path) => Self {
                path: PathBuf::from(path),
                origin: TokenPathOrigin::WebIdentityTokenFile,
            },
            None => Self {
                path: PathBuf::from(DEFAULT_SERVICE_ACCOUNT_TOKEN),
                origin: TokenPathOrigin::DefaultServiceAccount,
            },
        }
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the path came from.
    pub fn origin(&self) -> TokenPathOrigin {
        self.origin
    }

    /// Reads and decodes the token now (no cache: the kubelet may have rotated it).
    pub fn read(&self, now: i64) -> Result<IdToken, SourceError> {
        let text = read_capped(&self.path, MAX_SMALL_FILE_BYTES).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SourceError::Kubernetes(KubernetesError::Missing {
                    path: self.path.clone(),
                    cause: e.to_string(),
                    hint: match self.origin {
                        TokenPathOrigin::Argument => "\n  hint: mount a projected serviceAccountToken volume there (audience: sts.amazonaws.com for AWS), or fix the path",
                        TokenPathOrigin::WebIdentityTokenFile => "\n  hint: AWS_WEB_IDENTITY_TOKEN_FILE names it; on EKS the pod's service account needs the eks.amazonaws.com/role-arn annotation (IRSA), which mounts it",
                        TokenPathOrigin::DefaultServiceAccount => "\n  hint: not in a Kubernetes pod (or automountServiceAccountToken is off); pass k8s:PATH with a projected token, or set AWS_WEB_IDENTITY_TOKEN_FILE",
                    },
                })
            } else {
                SourceError::FileUnreadable {
                    path: self.path.clone(),
                    cause: e.to_string(),
                }
            }
        })?;
        let token = IdToken::parse(
            Secret::new(text.trim()),
            &format!("the Kubernetes token file {}", self.path.display()),
        )?;
        let exp = token.claims().exp;
        if exp <= now {
            return Err(KubernetesError::Expired {
                path: self.path.clone(),
                ago: now - exp,
                claims: token.claims().summary(),
            }
            .into());
        }
        Ok(token)
    }

    /// The warning for a token that does not name the audience the target expects: the pod's
    /// default token is for the API server, so say how to project one for the target.
    fn audience_mismatch(&self, token: &IdToken, audience: &str) -> Option<String> {
        if token.claims().aud.contains(audience) {
            return None;
        }
        let projected = format!(
            "project a token for it (a serviceAccountToken volume with audience: {audience}) and pass k8s:PATH"
        );
        Some(match self.origin {
            TokenPathOrigin::DefaultServiceAccount => format!(
                "{} is the pod's default service-account token, for the API server ({}), not for {audience}: {projected}",
                self.path.display(),
                token.claims().aud
            ),
            _ => format!(
                "the token in {} is for {}, not {audience}: the target accepts it only if it trusts that audience; otherwise {projected}",
                self.path.display(),
                token.claims().aud
            ),
        })
    }
}

impl TokenSource for KubernetesToken {
    fn describe(&self) -> String {
        format!("k8s:{}", self.path.display())
    }

    /// The token's issuer and subject (`system:serviceaccount:NS:NAME`), read from the file
    /// now: a rotated file naming another service account gets another cache entry.
    fn cached_identity(&self) -> Option<String> {
        let token = self
            .read(time::OffsetDateTime::now_utc().unix_timestamp())
            .ok()?;
        let claims = token.claims();
        Some(format!("iss={} sub={}", claims.iss, claims.sub))
    }

    fn chooses_audience(&self) -> bool {
        false
    }

    fn fetch<'a>(&'a self, _: &'a reqwest::Client, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let token = self.read(time::OffsetDateTime::now_utc().unix_timestamp())?;
            if self.origin == TokenPathOrigin::DefaultServiceAccount {
                if let Some(warning) = self.audience_mismatch(&token, audience) {
                    tracing::warn!(source = %self.describe(), "{warning}");
                }
            }
            Ok(token)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.c2ln",
            enc(&serde_json::json!({"alg":"RS256"})),
            enc(&claims)
        )
    }

    fn token(sub: &str, aud: serde_json::Value, exp: i64) -> String {
        jwt(serde_json::json!({
            "iss": "https://oidc.eks.us-east-1.amazonaws.com/id/ABC", "aud": aud, "sub": sub,
            "exp": exp, "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "x"}}
        }))
    }

    #[test]
    fn the_path_is_the_argument_then_the_irsa_variable_then_the_pods_token() {
        let none = |_: &str| None;
        let irsa = |name: &str| {
            (name == WEB_IDENTITY_TOKEN_FILE_VARIABLE).then(|| "/var/run/irsa/token".to_string())
        };
        let given = KubernetesToken::resolve(Some("/t"), irsa);
        assert_eq!(
            (given.path(), given.origin()),
            (Path::new("/t"), TokenPathOrigin::Argument)
        );
        let from_env = KubernetesToken::resolve(None, irsa);
        assert_eq!(from_env.path(), Path::new("/var/run/irsa/token"));
        assert_eq!(from_env.describe(), "k8s:/var/run/irsa/token");
        let default = KubernetesToken::resolve(None, none);
        assert_eq!(default.path(), Path::new(DEFAULT_SERVICE_ACCOUNT_TOKEN));
        assert_eq!(default.origin(), TokenPathOrigin::DefaultServiceAccount);
        assert!(!default.chooses_audience());
    }

    /// Every read sees the file as it is now, and the cache identity follows the token's `sub`.
    #[test]
    fn a_rotated_file_is_read_again_and_changes_the_cache_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let source = KubernetesToken::resolve(Some(path.to_str().unwrap()), |_| None);
        let err = source.read(1).unwrap_err().to_string();
        assert!(
            err.contains("projected serviceAccountToken volume"),
            "{err}"
        );
        assert_eq!(source.cached_identity(), None);

        std::fs::write(
            &path,
            token(
                "system:serviceaccount:default:a",
                serde_json::json!(["sts.amazonaws.com"]),
                4_000_000_000,
            ),
        )
        .unwrap();
        let first = source.read(1).unwrap();
        assert!(first.claims().aud.contains("sts.amazonaws.com"));
        let identity_a = source.cached_identity().unwrap();
        assert!(
            identity_a.ends_with("sub=system:serviceaccount:default:a"),
            "{identity_a}"
        );

        std::fs::write(
            &path,
            token(
                "system:serviceaccount:default:b",
                serde_json::json!(["sts.amazonaws.com"]),
                4_000_000_000,
            ),
        )
        .unwrap();
        assert_eq!(
            source.read(1).unwrap().claims().sub,
            "system:serviceaccount:default:b"
        );
        assert_ne!(source.cached_identity().unwrap(), identity_a);
    }

    #[test]
    fn a_stale_token_says_the_kubelet_stopped_refreshing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(
            &path,
            token(
                "system:serviceaccount:ns:n",
                serde_json::json!("sts.amazonaws.com"),
                100,
            ),
        )
        .unwrap();
        let source = KubernetesToken::resolve(Some(path.to_str().unwrap()), |_| None);
        let err = source.read(160).unwrap_err();
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(
            text.contains("expired 60 s ago") && text.contains("kubelet"),
            "{text}"
        );
    }

    #[test]
    fn the_pods_default_token_is_explained_when_its_audience_does_not_fit() {
        let api_server = IdToken::parse(
            Secret::new(token(
                "system:serviceaccount:ns:n",
                serde_json::json!(["https://kubernetes.default.svc"]),
                4_000_000_000,
            )),
            "test",
        )
        .unwrap();
        let default = KubernetesToken::resolve(None, |_| None);
        let warning = default
            .audience_mismatch(&api_server, "sts.amazonaws.com")
            .unwrap();
        assert!(
            warning.contains("default service-account token, for the API server"),
            "{warning}"
        );
        assert!(warning.contains("audience: sts.amazonaws.com"), "{warning}");
        assert!(default
            .audience_mismatch(&api_server, "https://kubernetes.default.svc")
            .is_none());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    const SIGNATURE: &str = "azhzLXNpZ25hdHVyZS1uZXZlci1zaG93bg";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any file: a token unexpired at `now`, or an error that never shows the token's
        /// signature; an expired token says how long ago, a bad one is not a JWT.
        #[test]
        fn any_token_file_is_a_live_token_or_an_error_without_it(
            content in prop_oneof![any::<String>(), "[A-Za-z0-9_.-]{0,60}"],
            sub in "system:serviceaccount:[a-z]{1,8}:[a-z]{1,8}",
            exp in 0i64..4_000,
            as_token in any::<bool>(),
            space in "[ \n\t]{0,3}",
        ) {
            let encode = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            let token = format!(
                "{}.{}.{SIGNATURE}",
                encode(serde_json::json!({"alg": "RS256"})),
                encode(serde_json::json!({"iss": "https://k8s.example", "aud": ["sts.amazonaws.com"], "sub": sub, "exp": exp})),
            );
            let written = if as_token { format!("{space}{token}{space}") } else { content };
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("token");
            std::fs::write(&path, &written).unwrap();
            let source = KubernetesToken::resolve(path.to_str(), |_| None);
            match source.read(2_000) {
                Ok(read) => {
                    prop_assert!(read.claims().exp > 2_000);
                    if as_token {
                        prop_assert_eq!(read.secret().expose(), token.as_str());
                    }
                }
                Err(error) => {
                    let text = error.to_string();
                    prop_assert!(!text.contains(SIGNATURE), "{}", text);
                    if as_token {
                        prop_assert!(exp <= 2_000, "{}", text);
                        let is_expired = matches!(&error, SourceError::Kubernetes(KubernetesError::Expired { ago, .. }) if *ago == 2_000 - exp);
                        prop_assert!(is_expired, "{}", text);
                    }
                }
            }
        }
    }
}
