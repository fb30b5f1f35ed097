//! keyless: a workload's identity in one cloud becomes short-lived credentials in another.
//!
//! Data flows **source → exchange → delivery**, and the modules show it: [`source`] knows where
//! an identity comes from, [`exchange`] trades it at the other cloud's STS, [`deliver`] hands the
//! result to programs that know nothing about keyless. [`policy`], [`secret`] and
//! [`credentials`] are leaves every layer may use; [`lab`] is the offline emulation of the
//! clouds that the tests and `keyless demo` run against. [`refresh`] keeps credentials fresh
//! for the long-running servers and `keyless serve` ([`config`]); [`setup`] generates both
//! clouds' trust configuration, which `keyless lint` and `keyless doctor` check with [`policy`].

pub mod cache;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod deliver;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod http_client;
pub mod lab;
pub mod policy;
pub mod private_file;
pub mod refresh;
pub mod secret;
pub mod setup;
pub mod source;
