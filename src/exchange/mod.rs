//! Trading one cloud's identity for the other's credentials, and classifying what goes wrong.

pub mod aws_sts;
