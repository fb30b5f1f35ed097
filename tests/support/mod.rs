//! What every integration test shares: the Python clients' venv, a moto server per test, and a
//! throwaway home in which the real `keyless` binary and the real AWS clients run.
//!
//! Each test file says `mod support;`. Not every file uses every helper, hence the allow.
#![allow(dead_code, unused_imports)]

pub mod aws_home;
pub mod background;
pub mod fault_proxy;
pub mod gcs_emulator;
pub mod google;
pub mod lab_world;
pub mod moto;
pub mod process;
pub mod served;
pub mod service;
pub mod tools;
pub mod unread_roots;
pub mod venv;

pub use aws_home::AwsHome;
pub use background::Background;
pub use fault_proxy::{Fault, FaultProxy};
pub use gcs_emulator::GcsEmulator;
pub use google::GoogleIdentity;
pub use lab_world::LabWorld;
pub use moto::Moto;
pub use process::{expect_failure, expect_success, CommandOutput};
pub use served::{Answer, Delivery, Served};
pub use unread_roots::UnreadRoots;
