//! Where an identity comes from: a Google ID token (GCP → AWS) or AWS credentials (AWS → GCP).

pub mod aws;
pub mod google;
