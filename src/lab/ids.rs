//! Random identifiers shaped like the real ones (key ids, tokens, request ids), so clients that
//! validate shapes, and humans reading logs, see what they would see in the clouds.

use base64::Engine;
use rand::distributions::{Alphanumeric, Distribution, Uniform};
use rand::Rng;
use sha2::{Digest, Sha256};

const BASE32ISH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn from_alphabet(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    let pick = Uniform::from(0..alphabet.len());
    (0..len)
        .map(|_| alphabet[pick.sample(&mut rng)] as char)
        .collect()
}

/// A temporary access key id: `ASIA` + 16 uppercase letters and digits.
pub fn temporary_access_key_id() -> String {
    format!("ASIA{}", from_alphabet(BASE32ISH, 16))
}

/// A 40-character secret access key.
pub fn secret_access_key() -> String {
    from_alphabet(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        40,
    )
}

/// A session token as long as real ones (several hundred base64 characters).
pub fn session_token() -> String {
    let mut bytes = [0u8; 300];
    rand::thread_rng().fill(&mut bytes[..]);
    format!(
        "IQoJb3JpZ2luX2VjE{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A role's unique id (`AROA` + 17 characters), stable for a given role so repeated sessions
/// report the same `AssumedRoleId` prefix, as AWS does.
pub fn role_unique_id(account_id: &str, role_name: &str) -> String {
    let digest = Sha256::digest(format!("{account_id}/{role_name}").as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| BASE32ISH[(*b as usize) % 32] as char)
        .collect();
    format!("AROA{tail}")
}

/// An IAM user's unique id (`AIDA` + 17 characters), stable per user.
pub fn user_unique_id(account_id: &str, user_name: &str) -> String {
    let digest = Sha256::digest(format!("{account_id}/user/{user_name}").as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| BASE32ISH[(*b as usize) % 32] as char)
        .collect();
    format!("AIDA{tail}")
}

/// The token the container-credentials endpoint requires (what ECS / EKS Pod Identity put in
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
pub fn container_authorization_token() -> String {
    let b: [u8; 32] = rand::thread_rng().gen();
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// An IMDSv2 session token (opaque; real ones are base64 of 56 bytes).
pub fn imds_token() -> String {
    let mut b = [0u8; 42];
    rand::thread_rng().fill(&mut b[..]);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A request id in UUID form, as AWS puts in `ResponseMetadata/RequestId`.
pub fn request_id() -> String {
    let b: [u8; 16] = rand::thread_rng().gen();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// An opaque Google OAuth access token.
pub fn google_access_token() -> String {
    let tail: String = Alphanumeric
        .sample_iter(rand::thread_rng())
        .take(80)
        .map(char::from)
        .collect();
    format!("ya29.lab-{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_aws() {
        let akid = temporary_access_key_id();
        assert_eq!(akid.len(), 20);
        assert!(akid.starts_with("ASIA"));
        assert!(akid
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(secret_access_key().len(), 40);
        assert!(session_token().len() > 300);
        assert_ne!(temporary_access_key_id(), temporary_access_key_id());
        let rid = role_unique_id("123456789012", "gcp-deploy");
        assert_eq!(rid.len(), 21);
        assert_eq!(rid, role_unique_id("123456789012", "gcp-deploy"));
        assert_ne!(rid, role_unique_id("123456789012", "ci-deploy"));
        assert_eq!(request_id().len(), 36);
    }
}
