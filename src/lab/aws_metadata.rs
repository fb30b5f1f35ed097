//! Where AWS workloads get credentials without keys: an EC2 instance metadata service (IMDSv2
//! only) and an ECS / EKS Pod Identity style container-credentials endpoint, on one listener.
//!
//! keyless's AWS credential chain (and boto3, the aws CLI, the Rust SDK) must be testable end to
//! end against credentials the lab's STS and Google STS can verify, so both endpoints hand out
//! role sessions the lab issued and remembers — and enforce what the real ones enforce: IMDSv2's
//! session token (`PUT /latest/api/token`, TTL 1..21600, 401 without it, no `X-Forwarded-For` on
//! the PUT) and the container endpoint's `Authorization` token (compared in constant time). Both
//! hand out a role only if its trust policy admits the service (`ec2.amazonaws.com`,
//! `ecs-tasks.amazonaws.com` or `pods.eks.amazonaws.com`), as AWS does when the role is attached.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::ids;
use super::state::{Counters, IssuedAwsCredentials, LabState};
use crate::credentials::format_expiration;
use crate::policy::{self, PolicyDocument, Request, RequestPrincipal};

/// The longest IMDSv2 session (6 hours).
const MAX_IMDS_TTL: i64 = 21_600;
/// The path of the container endpoint; the role name follows.
pub(crate) const CONTAINER_PATH: &str = "/v1/credentials/";
/// The session name of container credentials (ECS uses the task id).
const CONTAINER_SESSION: &str = "keyless-lab-task";

/// The IMDS and container-credentials routes.
pub(crate) fn router(state: Arc<LabState>) -> Router {
    Router::new()
        .route("/latest/api/token", put(imds_token))
        .route("/v1/credentials/{role}", get(container_credentials))
        .fallback(imds_get)
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

/// `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`.
async fn imds_token(State(state): State<Arc<LabState>>, headers: HeaderMap) -> Response {
    if headers.contains_key("x-forwarded-for") {
        // IMDS refuses token requests relayed by a proxy (the SSRF guard of IMDSv2).
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=MAX_IMDS_TTL).contains(t)) else {
        return text(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let token = ids::imds_token();
    state.remember_imds_token(
        &token,
        OffsetDateTime::now_utc() + time::Duration::seconds(ttl),
    );
    let mut response = text(StatusCode::OK, token);
    if let Ok(v) = HeaderValue::from_str(&ttl.to_string()) {
        response
            .headers_mut()
            .insert("x-aws-ec2-metadata-token-ttl-seconds", v);
    }
    response
}

/// Every IMDS `GET`: requires a valid session token, then walks the path tree.
async fn imds_get(State(state): State<Arc<LabState>>, uri: Uri, headers: HeaderMap) -> Response {
    let token = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !state.imds_token_is_valid(token) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let Some(instance) = state.config.ec2_instance.clone() else {
        return text(StatusCode::NOT_FOUND, "Not Found");
    };
    let config = &state.config;
    let account = &config.account_id;
    let path = uri.path();
    let now = OffsetDateTime::now_utc();
    let role_path = "/latest/meta-data/iam/security-credentials/";
    match path {
        "/latest/meta-data/" | "/latest/meta-data" => text(
            StatusCode::OK,
            "ami-id\nhostname\niam/\ninstance-id\ninstance-type\nlocal-ipv4\nplacement/",
        ),
        "/latest/meta-data/instance-id" => text(StatusCode::OK, instance.instance_id.clone()),
        "/latest/meta-data/instance-type" => text(StatusCode::OK, "t3.micro"),
        "/latest/meta-data/placement/region" => text(StatusCode::OK, instance.region.clone()),
        "/latest/meta-data/placement/availability-zone" => {
            text(StatusCode::OK, instance.availability_zone.clone())
        }
        "/latest/meta-data/iam/security-credentials" | "/latest/meta-data/iam/security-credentials/" => {
            text(StatusCode::OK, instance.role.clone())
        }
        "/latest/meta-data/iam/info" => Json(json!({
            "Code": "Success",
            "LastUpdated": format_expiration(now),
            "InstanceProfileArn": format!("arn:aws:iam::{account}:instance-profile/{}", instance.role),
            "InstanceProfileId": ids::role_unique_id(account, &format!("instance-profile/{}", instance.role)).replacen("AROA", "AIPA", 1),
        }))
        .into_response(),
        "/latest/dynamic/instance-identity/document" => Json(json!({
            "accountId": account,
            "architecture": "x86_64",
            "availabilityZone": instance.availability_zone,
            "imageId": "ami-0123456789abcdef0",
            "instanceId": instance.instance_id,
            "instanceType": "t3.micro",
            "pendingTime": "2024-01-01T00:00:00Z",
            "privateIp": "10.0.0.42",
            "region": instance.region,
            "version": "2017-09-30",
        }))
        .into_response(),
        p if p.starts_with(role_path) => {
            let role = &p[role_path.len()..];
            if role != instance.role {
                return text(StatusCode::NOT_FOUND, "Not Found");
            }
            match role_session(&state, role, &instance.instance_id, &["ec2.amazonaws.com"]) {
                Ok((access_key_id, creds)) => Json(json!({
                    "Code": "Success",
                    "LastUpdated": format_expiration(now),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": access_key_id,
                    "SecretAccessKey": creds.secret_access_key.expose(),
                    "Token": creds.session_token.as_ref().map(|t| t.expose()),
                    "Expiration": creds.expiration.map(format_expiration),
                }))
                .into_response(),
                Err(why) => Json(json!({
                    "Code": "AssumeRoleUnauthorizedAccess",
                    "Message": why,
                    "LastUpdated": format_expiration(now),
                }))
                .into_response(),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `GET /v1/credentials/{role}` with `Authorization: <the lab's container token>`.
async fn container_credentials(
    State(state): State<Arc<LabState>>,
    Path(role): Path<String>,
    headers: HeaderMap,
) -> Response {
    let error = |status: StatusCode, code: &str, message: &str| {
        (status, Json(json!({"Code": code, "Message": message}))).into_response()
    };
    let Some(sent) = headers.get(header::AUTHORIZATION) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "AccessDenied",
            "The Authorization header is missing; send the value of AWS_CONTAINER_AUTHORIZATION_TOKEN.",
        );
    };
    let expected = state.container_authorization_token.expose().as_bytes();
    if !bool::from(sent.as_bytes().ct_eq(expected)) {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "The Authorization header does not carry the container authorization token.",
        );
    }
    if state.config.role(&role).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("No role {role} is attached to this task or pod."),
        );
    }
    let services = ["ecs-tasks.amazonaws.com", "pods.eks.amazonaws.com"];
    match role_session(&state, &role, CONTAINER_SESSION, &services) {
        Ok((access_key_id, creds)) => Json(json!({
            "AccessKeyId": access_key_id,
            "SecretAccessKey": creds.secret_access_key.expose(),
            "Token": creds.session_token.as_ref().map(|t| t.expose()),
            "Expiration": creds.expiration.map(format_expiration),
            "AccountId": state.config.account_id,
            "RoleArn": format!("arn:aws:iam::{}:role/{role}", state.config.account_id),
        }))
        .into_response(),
        Err(why) => error(StatusCode::INTERNAL_SERVER_ERROR, "AccessDenied", &why),
    }
}

/// A session of `role` for a compute service, if the role's trust admits one of `services`.
fn role_session(
    state: &LabState,
    role: &str,
    session: &str,
    services: &[&str],
) -> Result<(String, IssuedAwsCredentials), String> {
    let role_config = state
        .config
        .role(role)
        .ok_or_else(|| format!("the role {role} does not exist"))?;
    let trust = PolicyDocument::parse(&role_config.trust_policy)
        .map_err(|e| format!("the trust policy of {role} cannot be read: {e}"))?;
    let context = policy::ConditionContext::new("the service");
    let trusted = services.iter().any(|service| {
        policy::evaluate(
            &trust,
            &Request {
                principal: RequestPrincipal::Service(service.to_string()),
                action: "sts:AssumeRole",
                context: &context,
            },
        )
        .is_allowed()
    });
    if !trusted {
        let why = format!(
            "the trust policy of role {role} does not allow {} to assume it",
            services.join(" or ")
        );
        state.set_last_denial(why.clone());
        return Err(why);
    }
    Counters::bump(&state.counters.aws_metadata_credentials);
    Ok(state.role_session_for_endpoint(role, session))
}
