//! Handing credentials to programs that know nothing about keyless.

pub mod aws_files;
pub mod aws_sdk;
pub mod credential_process;
pub mod ecs_server;
pub mod env;
pub mod external_account;
pub mod gce_metadata_server;
pub mod imds_server;
pub mod listen_fds;
pub mod metrics;
pub mod record;
pub mod server;
pub mod token_file;
