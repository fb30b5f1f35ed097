//! `keyless serve`: the flags; the daemon itself is [`crate::daemon`].

use std::path::PathBuf;

use clap::Args;

// `keyless serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve /healthz and /metrics here (overrides the file's metrics_listen).
    #[arg(long, env = "KEYLESS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Write a JSON status here (atomically) once every profile has started, and again after
    /// each reload; removed on exit.
    #[arg(long, env = "KEYLESS_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    #[command(flatten)]
    pub access: super::AccessArgs,

    /// Serve the profiles that start even if others cannot (each failure is logged and listed
    /// in the ready file); without it a profile that cannot start makes keyless serve exit
    /// non-zero before it reports ready.
    #[arg(long, env = "KEYLESS_KEEP_GOING")]
    pub keep_going: bool,
}

impl ServeArgs {
    /// The daemon's options: these flags, the global `--config` and the flag names `[defaults]`
    /// may set.
    pub fn options(self, config_path: PathBuf) -> crate::daemon::Options {
        crate::daemon::Options {
            config_path,
            metrics_listen: self.metrics_listen,
            ready_file: self.ready_file,
            access: self.access.access(),
            keep_going: self.keep_going,
            known_flags: Some(super::config_defaults::flag_keys(
                &<super::Cli as clap::CommandFactory>::command(),
            )),
        }
    }
}
