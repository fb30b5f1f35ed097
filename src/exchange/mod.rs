//! Trading one cloud's identity for the other's credentials, and classifying what goes wrong.

pub mod aws_chain;
pub mod aws_iam;
pub mod aws_sts;
pub mod clock_skew;
pub mod google_iam;
pub mod google_sts;
pub mod retry;
pub mod throttle;
