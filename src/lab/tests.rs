//! In-process tests of the lab (added below).
