//! Handing credentials to programs that know nothing about keyless.

pub mod aws_files;
pub mod aws_sdk;
pub mod credential_process;
#[cfg(feature = "servers")]
pub mod ecs_server;
pub mod env;
pub mod external_account;
#[cfg(feature = "servers")]
pub mod gce_metadata_server;
#[cfg(feature = "servers")]
pub mod imds_server;
#[cfg(feature = "servers")]
pub mod listen_fds;
#[cfg(feature = "servers")]
pub mod metrics;
pub mod record;
#[cfg(feature = "servers")]
pub mod server;
pub mod token_file;
