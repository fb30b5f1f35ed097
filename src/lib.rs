//! keyless: a workload's identity in one cloud becomes short-lived credentials in another.
//!
//! Data flows **source → exchange → delivery**, and the modules show it: [`source`] knows where
//! an identity comes from, [`exchange`] trades it at the other cloud's STS, [`deliver`] hands the
//! result to programs that know nothing about keyless. [`policy`], [`secret`] and
//! [`credentials`] are leaves every layer may use; [`lab`] is the offline emulation of the
//! clouds that the tests and `keyless demo` run against. [`refresh`] keeps credentials fresh
//! for the long-running servers and [`daemon`] (what `keyless serve` runs, from [`config`]);
//! [`setup`] generates both clouds' trust configuration, which `keyless lint` and `keyless
//! doctor` check with [`policy`]; [`cloud_audit`] reads what the clouds recorded for `keyless
//! audit`. [`cli`] is the command line only: flags, rendering, and the
//! exit code each error's [`classify::Class`] gives.
//!
//! Dependencies point one way: `cli → daemon → deliver → refresh → exchange → source → wire`;
//! [`policy`], [`types`], [`secret`], [`private_file`], [`duration`], [`credentials`] and
//! [`classify`] are leaves; nothing imports `cli`, and only `cli` starts the [`lab`]. A unit test
//! (`src/layering_tests.rs`) enforces it.
//!
//! Features: `cli` (the default) builds the binary and brings `servers` (the local endpoints) and
//! `lab`; without them the library compiles no clap, no HTTP server and no lab. `fuzzing` exposes
//! the fuzz harness to `fuzz/` and to the tests.
//!
//! A Rust program on GCP that calls AWS plugs keyless into the AWS SDK in one line with
//! [`deliver::aws_sdk::GoogleFederatedProvider`] (see `examples/aws_sdk_provider.rs`):
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use keyless::deliver::aws_sdk::GoogleFederatedProvider;
//! let provider = GoogleFederatedProvider::builder("arn:aws:iam::123456789012:role/Deploy").build()?;
//! let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
//!     .credentials_provider(provider)
//!     .load()
//!     .await;
//! # let _ = config; Ok(()) }
//! ```
//!
//! The lower layers are public for programs that need another shape:
//! [`source::TokenSource`] (see [`source::registry`]) and [`source::aws::AwsIdentitySource`] obtain an
//! identity, [`exchange::aws_sts::exchange_web_identity`] and
//! [`exchange::google_sts::exchange_subject_token`] trade it, and [`refresh::Refresher`] keeps
//! any of them fresh.

pub mod audit;
pub mod cache;
pub mod classify;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cloud_audit;
#[cfg(feature = "cli")]
pub mod config;
pub mod credentials;
#[cfg(feature = "cli")]
pub mod daemon;
pub mod deliver;
pub mod duration;
pub mod exchange;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "lab")]
pub mod lab;
pub mod policy;
pub mod private_file;
pub mod refresh;
pub mod secret;
pub mod setup;
pub mod source;
pub mod types;
pub mod wire;

#[cfg(test)]
mod layering_tests;
#[cfg(all(test, feature = "cli"))]
mod redaction_tests;
