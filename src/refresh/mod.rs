//! Getting a credential that is fresh enough.
//!
//! [`aws_role`] and [`gcp_token`] know *what* to fetch for each direction; the refresh engine
//! (keeping one credential per profile fresh for long-running servers) builds on them.

pub mod aws_role;
pub mod engine;
pub mod gcp_cache;
pub mod gcp_token;
pub mod in_flight;

pub use aws_role::{AwsRoleProfile, AwsRoleUpstream, GoogleIdTokenUpstream};
pub use engine::{
    Clock, RefreshError, RefreshPolicy, RefreshStatus, Refresher, ServeError, Upstream,
};
pub use gcp_token::{
    GcpFlowError, GcpIdTokenUpstream, GcpToken, GcpTokenProfile, GcpTokenUpstream,
};
