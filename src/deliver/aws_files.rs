//! TEMPORARY stub until the INI editor lands.
use std::path::{Path, PathBuf};

use crate::credentials::AwsCredentials;

/// Stub.
#[derive(Debug, thiserror::Error)]
#[error("not yet")]
pub struct AwsFilesError;

/// Stub.
pub fn default_credentials_path() -> Result<PathBuf, AwsFilesError> {
    Err(AwsFilesError)
}
/// Stub.
pub fn write_credentials_profile(
    _: &Path,
    _: &str,
    _: &AwsCredentials,
) -> Result<(), AwsFilesError> {
    Err(AwsFilesError)
}
/// Stub.
pub fn read_credentials_profile(
    _: &Path,
    _: &str,
) -> Result<Option<AwsCredentials>, AwsFilesError> {
    Err(AwsFilesError)
}
