//! Tokens something else keeps: a file (`file:PATH`, re-read on every use, so another tool
//! can keep it fresh) and a command (`command:CMD`, run on every use, its standard output the
//! token). Neither can choose the token's audience.
//!
//! Either may also hold google-auth's executable-source answer (the `executable` credential
//! source of an `external_account` config): `{"version": 1, "success": true, "token_type":
//! "urn:ietf:params:oauth:token-type:id_token" | "…:jwt", "id_token": JWT, "expiration_time":
//! EPOCH}`, or `{"success": false, "code", "message"}`; tools written for google-auth work
//! unchanged. A SAML answer (`…:saml2`) is refused: AWS and Google STS trade it differently.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::private_file::{read_capped, MAX_SMALL_FILE_BYTES};
use crate::secret::Secret;
use crate::source::registry::{Argument, Registration};
use crate::source::{IdToken, SourceError, TokenFuture, TokenSource};
use crate::wire::truncate;

/// `file:PATH`: a token file another tool keeps fresh.
pub const FILE: Registration = Registration {
    name: "file",
    argument: Argument::Required("PATH"),
    summary: "a JWT in a file, re-read on every use",
    build: |path, _| Ok(Arc::new(TokenFile(PathBuf::from(path.unwrap_or_default())))),
};

/// `command:CMD`: a command whose standard output is the token.
pub const COMMAND: Registration = Registration {
    name: "command",
    argument: Argument::Required("CMD"),
    summary: "a JWT printed by a command (run with sh -c on every use)",
    build: |command, _| {
        Ok(Arc::new(TokenCommand(
            command.unwrap_or_default().to_string(),
        )))
    },
};

/// A file holding the token.
#[derive(Clone, Debug)]
pub struct TokenFile(pub PathBuf);

impl TokenSource for TokenFile {
    fn describe(&self) -> String {
        format!("file:{}", self.0.display())
    }

    /// The token's `iss` and `sub`, decoded from the file (not verified: the target verifies,
    /// and a forged token buys nothing there).
    fn cached_identity(&self) -> Option<String> {
        read_token_file(&self.0).ok().map(|token| {
            let claims = token.claims();
            format!("iss={} sub={}", claims.iss, claims.sub)
        })
    }

    fn chooses_audience(&self) -> bool {
        false
    }

    fn fetch<'a>(&'a self, _: &'a reqwest::Client, _: &'a str) -> TokenFuture<'a> {
        Box::pin(async move { read_token_file(&self.0) })
    }
}

/// A command whose standard output is the token.
#[derive(Clone, Debug)]
pub struct TokenCommand(pub String);

impl TokenSource for TokenCommand {
    fn describe(&self) -> String {
        format!("command:{}", self.0)
    }

    /// The command's text only. Who the command's token names cannot be known without running
    /// it; a command whose identity changes (`gcloud auth print-identity-token` after `gcloud
    /// config set account`) needs `--no-cache`.
    fn cached_identity(&self) -> Option<String> {
        Some("command".to_string())
    }

    fn chooses_audience(&self) -> bool {
        false
    }

    fn fetch<'a>(&'a self, _: &'a reqwest::Client, _: &'a str) -> TokenFuture<'a> {
        Box::pin(run_token_command(&self.0))
    }
}

/// Reads the token in `path` (capped: a device or a huge file is refused, not read whole).
pub fn read_token_file(path: &Path) -> Result<IdToken, SourceError> {
    let text =
        read_capped(path, MAX_SMALL_FILE_BYTES).map_err(|e| SourceError::FileUnreadable {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
    token_from_text(text.trim(), &format!("the file {}", path.display()))
}

/// The executable-source JSON's token types keyless trades.
const ID_TOKEN_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
];
const SAML_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:saml2";

/// What a file or command's executable-source JSON says went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ExecutableError {
    /// `"success": false`.
    #[error("{origin} reported a failure (code {code}): {message}")]
    Failed {
        origin: String,
        code: String,
        message: String,
    },

    /// `expiration_time` has passed.
    #[error("the token from {origin} expired at {expired_at} (its expiration_time)\n  hint: whatever writes it has stopped refreshing it")]
    Expired { origin: String, expired_at: i64 },

    /// A SAML assertion: not a JWT.
    #[error("{origin} gave a SAML assertion ({SAML_TOKEN_TYPE}); keyless trades OIDC tokens only\n  hint: make it answer token_type urn:ietf:params:oauth:token-type:id_token (or :jwt) with an id_token")]
    Saml { origin: String },

    /// Not the shape google-auth documents.
    #[error("{origin} answered JSON that is not an executable-source response: {reason}\n  hint: expected {{\"version\": 1, \"success\": true, \"token_type\": \"urn:ietf:params:oauth:token-type:id_token\", \"id_token\": JWT, \"expiration_time\": EPOCH}}, or a bare JWT")]
    Unsupported { origin: String, reason: String },
}

/// google-auth's executable-source response.
#[derive(serde::Deserialize)]
struct ExecutableResponse {
    version: Option<i64>,
    success: Option<bool>,
    token_type: Option<String>,
    id_token: Option<String>,
    saml_response: Option<serde::de::IgnoredAny>,
    expiration_time: Option<i64>,
    code: Option<serde_json::Value>,
    message: Option<String>,
}

/// A bare JWT, or google-auth's executable-source JSON holding one.
pub(crate) fn token_from_text(text: &str, origin: &str) -> Result<IdToken, SourceError> {
    token_from_text_at(
        text,
        origin,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
}

pub(crate) fn token_from_text_at(
    text: &str,
    origin: &str,
    now: i64,
) -> Result<IdToken, SourceError> {
    if !text.starts_with('{') {
        return IdToken::parse(Secret::new(text), origin);
    }
    let unsupported = |reason: &str| ExecutableError::Unsupported {
        origin: origin.to_string(),
        reason: reason.to_string(),
    };
    // The text holds the token: a parse error must not quote it.
    let response: ExecutableResponse = serde_json::from_str(text).map_err(|e| {
        unsupported(&format!(
            "invalid JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    match response.version {
        Some(1) => {}
        Some(v) => {
            return Err(unsupported(&format!("version {v} is not supported (only 1)")).into())
        }
        None => return Err(unsupported("no version").into()),
    }
    match response.success {
        Some(true) => {}
        Some(false) => {
            let code = match response.code {
                Some(serde_json::Value::String(code)) => code,
                Some(other) => other.to_string(),
                None => "none".to_string(),
            };
            return Err(ExecutableError::Failed {
                origin: origin.to_string(),
                code,
                message: response
                    .message
                    .map_or_else(|| "(no message)".to_string(), |m| truncate(&m, 500)),
            }
            .into());
        }
        None => return Err(unsupported("no success field").into()),
    }
    let token_type = response.token_type.unwrap_or_default();
    if token_type == SAML_TOKEN_TYPE || response.saml_response.is_some() {
        return Err(ExecutableError::Saml {
            origin: origin.to_string(),
        }
        .into());
    }
    if !ID_TOKEN_TYPES.contains(&token_type.as_str()) {
        return Err(unsupported(&format!(
            "token_type {token_type:?} is not an id_token or jwt type"
        ))
        .into());
    }
    if let Some(expired_at) = response.expiration_time.filter(|exp| *exp <= now) {
        return Err(ExecutableError::Expired {
            origin: origin.to_string(),
            expired_at,
        }
        .into());
    }
    let token = response
        .id_token
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| unsupported("success without an id_token"))?;
    IdToken::parse(Secret::new(token.trim()), origin)
}

pub(crate) async fn run_token_command(command: &str) -> Result<IdToken, SourceError> {
    let failed = |status: String, stderr: String| SourceError::CommandFailed {
        command: command.to_string(),
        status,
        stderr,
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("could not start: {e}"), String::new()))?;
    let output = tokio::time::timeout(Duration::from_secs(60), capped_output(&mut child))
        .await
        .map_err(|_| failed("timed out after 60 s".into(), String::new()))?
        .map_err(|e| failed(e.to_string(), String::new()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let stderr = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {}", truncate(stderr, 500))
        };
        return Err(failed(output.status.to_string(), stderr));
    }
    token_from_command_output(command, &output.stdout)
}

/// Waits for `child`, keeping at most [`MAX_SMALL_FILE_BYTES`] of each of its outputs: more on
/// standard output is an error (the child is killed when dropped), more on standard error is
/// read and dropped so the child never blocks on it.
async fn capped_output(child: &mut tokio::process::Child) -> std::io::Result<std::process::Output> {
    use tokio::io::AsyncReadExt;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("the command's output is not piped"));
    };
    let stderr = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut limited = stderr.take(MAX_SMALL_FILE_BYTES);
        limited.read_to_end(&mut kept).await?;
        tokio::io::copy(&mut limited.into_inner(), &mut tokio::io::sink()).await?;
        Ok::<_, std::io::Error>(kept)
    });
    let mut out = Vec::new();
    stdout
        .take(MAX_SMALL_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .await?;
    if out.len() as u64 > MAX_SMALL_FILE_BYTES {
        stderr.abort();
        return Err(std::io::Error::other(format!(
            "it printed more than {} KiB, more than any token",
            MAX_SMALL_FILE_BYTES / 1024
        )));
    }
    let status = child.wait().await?;
    let stderr = stderr
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)?;
    Ok(std::process::Output {
        status,
        stdout: out,
        stderr,
    })
}

/// What a successful token command printed: the JWT, surrounded by white space at most.
pub(crate) fn token_from_command_output(
    command: &str,
    stdout: &[u8],
) -> Result<IdToken, SourceError> {
    let token = String::from_utf8_lossy(stdout).trim().to_string();
    if token.is_empty() {
        return Err(SourceError::CommandFailed {
            command: command.to_string(),
            status: "printed nothing".into(),
            stderr: String::new(),
        });
    }
    token_from_text(&token, &format!("the command `{command}`"))
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

    /// Kubernetes projected service-account tokens (EKS IRSA) carry `aud` as an array.
    #[test]
    fn an_array_aud_is_a_jwt_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(
            &path,
            jwt(serde_json::json!({
                "iss": "https://oidc.eks.us-east-1.amazonaws.com/id/ABC", "aud": ["sts.amazonaws.com"],
                "sub": "system:serviceaccount:default:deployer", "exp": 2000000000,
                "kubernetes.io": {"namespace": "default"}
            })),
        )
        .unwrap();
        let token = read_token_file(&path).unwrap();
        assert!(token.claims().aud.contains("sts.amazonaws.com"));
        assert_eq!(
            token.claims().summary(),
            "iss=https://oidc.eks.us-east-1.amazonaws.com/id/ABC aud=[sts.amazonaws.com] azp=(none) sub=system:serviceaccount:default:deployer"
        );
        let printed = std::fs::read(&path).unwrap();
        assert!(token_from_command_output("cat token", &printed).is_ok());
    }

    /// google-auth's executable-source answers: the token when successful and unexpired, the
    /// tool's own code and message when not, and a clear refusal of SAML.
    #[test]
    fn executable_source_json_is_understood() {
        let token = jwt(
            serde_json::json!({"iss": "https://issuer.example", "aud": "a", "sub": "s", "exp": 2000}),
        );
        let answer = |extra: serde_json::Value| {
            let mut doc = serde_json::json!({"version": 1, "success": true});
            doc.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            doc.to_string()
        };
        let at = |text: &str| token_from_text_at(text, "the command `t`", 1000);
        for token_type in ID_TOKEN_TYPES {
            let ok = at(&answer(serde_json::json!({"token_type": token_type, "id_token": token, "expiration_time": 1500}))).unwrap();
            assert_eq!(ok.claims().sub, "s");
            assert_eq!(ok.secret().expose(), token);
        }
        // expiration_time is optional, as in google-auth's executable output without a file
        assert!(at(&answer(
            serde_json::json!({"token_type": ID_TOKEN_TYPES[1], "id_token": token})
        ))
        .is_ok());

        let expired = at(&answer(serde_json::json!({"token_type": ID_TOKEN_TYPES[0], "id_token": token, "expiration_time": 999}))).unwrap_err();
        assert!(
            matches!(
                expired,
                SourceError::Executable(ExecutableError::Expired {
                    expired_at: 999,
                    ..
                })
            ),
            "{expired}"
        );

        let failed = at(r#"{"version": 1, "success": false, "code": "401", "message": "Caller not authorized."}"#).unwrap_err();
        let text = failed.to_string();
        assert!(
            text.contains("code 401") && text.contains("Caller not authorized."),
            "{text}"
        );
        assert!(!failed.is_transient());

        let saml = at(&answer(serde_json::json!({"token_type": SAML_TOKEN_TYPE, "saml_response": "PHNhbWw+", "expiration_time": 1500}))).unwrap_err();
        assert!(saml.to_string().contains("SAML assertion"), "{saml}");
        assert!(!saml.to_string().contains("PHNhbWw+"), "{saml}");

        for (bad, says) in [
            (
                r#"{"version": 2, "success": true}"#,
                "version 2 is not supported",
            ),
            (r#"{"success": true}"#, "no version"),
            (
                &answer(serde_json::json!({"token_type": "urn:x"})),
                "not an id_token or jwt type",
            ),
            (
                &answer(serde_json::json!({"token_type": ID_TOKEN_TYPES[0]})),
                "without an id_token",
            ),
            (r#"{"version": 1, "id_token": "secret-ish"#, "invalid JSON"),
        ] {
            let text = at(bad).unwrap_err().to_string();
            assert!(
                text.contains(says) && !text.contains("secret-ish"),
                "{bad}: {text}"
            );
        }
        // the same through the command path
        let printed =
            answer(serde_json::json!({"token_type": ID_TOKEN_TYPES[0], "id_token": token}));
        assert!(token_from_command_output("t", printed.as_bytes()).is_ok());
    }

    #[tokio::test]
    async fn command_source_reports_stderr_and_exit_status() {
        let err = run_token_command("echo boom >&2; exit 3")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("boom") && text.contains('3'), "{text}");
    }

    /// A command that never stops printing is stopped at the cap, not read into memory; one
    /// that floods standard error still has its token read.
    #[tokio::test]
    async fn command_output_is_capped() {
        let err = run_token_command("yes").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("more than 64 KiB"), "{text}");
        let err = run_token_command("head -c 1000000 /dev/zero >&2; echo not-a-jwt")
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::NotAJwt { .. }), "{err}");
    }

    /// A token file that is a device (or far too large) is refused, not read whole.
    #[cfg(unix)]
    #[test]
    fn an_endless_token_file_is_refused() {
        let err = read_token_file(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, SourceError::FileUnreadable { .. }), "{err}");
        assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::source::{Audience, IdTokenClaims};
    use base64::Engine;
    use proptest::prelude::*;

    fn encode(value: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn claims() -> impl Strategy<Value = IdTokenClaims> {
        (
            any::<String>(),
            prop_oneof![
                any::<String>().prop_map(Audience::One),
                proptest::collection::vec(any::<String>(), 0..4).prop_map(Audience::Many),
            ],
            proptest::option::of(any::<String>()),
            any::<String>(),
            proptest::option::of(any::<String>()),
            any::<i64>(),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(iss, aud, azp, sub, email, exp, iat)| IdTokenClaims {
                iss,
                aud,
                azp,
                sub,
                email,
                exp,
                iat,
            })
    }

    proptest! {
        /// Encode the claims as a JWT, decode them: the same claims, whatever their text.
        #[test]
        fn claims_round_trip_through_a_jwt(claims in claims(), extra in any::<bool>()) {
            let mut json = serde_json::json!({
                "iss": claims.iss, "aud": serde_json::to_value(&claims.aud).unwrap(), "sub": claims.sub, "exp": claims.exp,
            });
            if let Some(azp) = &claims.azp { json["azp"] = azp.clone().into(); }
            if let Some(email) = &claims.email { json["email"] = email.clone().into(); }
            if let Some(iat) = claims.iat { json["iat"] = iat.into(); }
            if extra { json["google"] = serde_json::json!({"compute_engine": {"zone": "z"}}); }
            let token = format!("{}.{}.c2lnbmF0dXJl", encode(&serde_json::json!({"alg": "RS256"})), encode(&json));
            let parsed = IdToken::parse(Secret::new(token.clone()), "test").unwrap();
            prop_assert_eq!(parsed.claims(), &claims);
            prop_assert_eq!(parsed.secret().expose(), token.as_str());
            let _ = parsed.claims().expires_at();
        }

        /// Any executable-source answer around a token: the token only from a successful
        /// version-1 id_token/jwt answer that has not expired, else an error that never shows
        /// the token (nor a SAML assertion).
        #[test]
        fn executable_answers_yield_their_token_or_an_error_without_it(
            version in proptest::option::of(prop_oneof![Just(1i64), any::<i64>()]),
            success in proptest::option::of(any::<bool>()),
            token_type in proptest::option::of(prop_oneof![
                Just(ID_TOKEN_TYPES[0].to_string()), Just(ID_TOKEN_TYPES[1].to_string()),
                Just(SAML_TOKEN_TYPE.to_string()), any::<String>(),
            ]),
            with_token in any::<bool>(),
            saml in any::<bool>(),
            expiration_time in proptest::option::of(900i64..1100),
            code in proptest::option::of(prop_oneof![any::<String>().prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from)]),
            message in proptest::option::of(any::<String>()),
        ) {
            let signature = "dGhlLXNpZ25hdHVyZS1uZXZlci1zaG93bg";
            let token = format!(
                "{}.{}.{signature}",
                encode(&serde_json::json!({"alg": "RS256"})),
                encode(&serde_json::json!({"iss": "https://i.example", "aud": "a", "sub": "s", "exp": 2000})),
            );
            let mut answer = serde_json::json!({});
            let fields: [(&str, Option<serde_json::Value>); 8] = [
                ("version", version.map(Into::into)),
                ("success", success.map(Into::into)),
                ("token_type", token_type.clone().map(Into::into)),
                ("id_token", with_token.then(|| token.clone().into())),
                ("saml_response", saml.then(|| "PHNhbWw+c2VjcmV0PC9zYW1sPg".into())),
                ("expiration_time", expiration_time.map(Into::into)),
                ("code", code),
                ("message", message.map(Into::into)),
            ];
            for (name, value) in fields {
                if let Some(value) = value { answer[name] = value; }
            }
            let read = token_from_text_at(&answer.to_string(), "the command `t`", 1000);
            let usable = version == Some(1)
                && success == Some(true)
                && token_type.as_deref().is_some_and(|t| ID_TOKEN_TYPES.contains(&t))
                && !saml
                && expiration_time.is_none_or(|exp| exp > 1000)
                && with_token;
            match read {
                Ok(read) => {
                    prop_assert!(usable, "{}", answer);
                    prop_assert_eq!(read.secret().expose(), token.as_str());
                }
                Err(error) => {
                    prop_assert!(!usable, "{}: {}", answer, error);
                    let text = error.to_string();
                    prop_assert!(!text.contains(signature) && !text.contains("PHNhbWw+c2VjcmV0"), "{}", text);
                }
            }
        }

        /// Any text, any bytes from a command: a token or an error, never a panic, and the
        /// error never repeats the text.
        #[test]
        fn any_text_is_a_token_or_an_error(text in any::<String>(), bytes in any::<Vec<u8>>()) {
            if let Err(e) = IdToken::parse(Secret::new(text.clone()), "the file x") {
                if text.trim().len() >= 8 {
                    prop_assert!(!e.to_string().contains(text.trim()));
                }
            }
            let _ = token_from_command_output("cmd", &bytes);
        }
    }
}
