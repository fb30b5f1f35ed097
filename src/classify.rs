//! What kind of failure an error is, decided once beside each error type, and the exit code each
//! kind gets.
//!
//! Scripts and supervisors act on the exit code (DESIGN.md): retry later, fix the configuration,
//! or fix the trust policy. This module is a leaf so every layer can say which its errors are.

/// Process exit codes, so scripts can tell a refusal from an outage.
pub mod exit_code {
    /// Something else failed (bad input, unreadable files).
    pub const FAILURE: i32 = 1;
    /// The command line or configuration is wrong (clap uses 2 as well).
    pub const USAGE: i32 = 2;
    /// The other cloud refused the identity (trust policy, token rejected).
    pub const REFUSED: i32 = 3;
    /// An endpoint was unreachable or kept failing; trying later may work.
    pub const UNAVAILABLE: i32 = 4;
}
