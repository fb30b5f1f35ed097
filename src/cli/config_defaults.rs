//! Flag values from `keyless.toml` for every command, so a team writes a setting once and a
//! `credential_process` line stays short (`keyless aws credentials --config-profile deploy`).
//!
//! Precedence, highest first: the command line, `KEYLESS_*` variables, the profile chosen with
//! `--config-profile NAME`, the file's `[defaults]`, its top-level `log_format`,
//! `allow_remote` and `allowed_hosts`, the built-in default. The file's values become clap *default values* before the real parse, which gives
//! exactly that order (clap ranks command line over environment over default) and lets clap
//! check them like typed flags.
//!
//! `keyless serve` reads the same file itself (all profiles at once), so it is left alone here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::ArgAction;
use toml::de::{DeTable, DeValue};

use crate::config::{self, ConfigError, ReadFor};

/// Why the configuration file could not supply flag values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDefaultsError {
    /// `--config-profile` was given but there is no file to look in.
    #[error(
        "--config-profile {profile}: no configuration file at {default}\n  \
         hint: pass --config PATH (or set KEYLESS_CONFIG), or create that file"
    )]
    NoFile { profile: String, default: String },
    /// The chosen profile is not in the file.
    #[error("{path} has no [profile.{profile}]\n  hint: the profiles there are: {available}")]
    UnknownProfile {
        path: PathBuf,
        profile: String,
        available: String,
    },
    /// The file is unreadable or invalid (each problem with its line and column).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The chosen profile names the other target (`target = "gcp"` for `keyless aws ...`).
    #[error(
        "{path}: [profile.{profile}] has target = \"{target}\", but `keyless {command}` makes {makes}\n  \
         hint: use this profile with `keyless {target} ...`, or choose a profile with target = \"{command}\""
    )]
    WrongTarget {
        path: PathBuf,
        profile: String,
        target: String,
        command: String,
        makes: &'static str,
    },
    /// A value cannot become a flag value.
    #[error("{path}: `{key}` must be a single value for --{flag}, not a list or table")]
    NotAFlagValue {
        path: PathBuf,
        key: String,
        flag: String,
    },
}

/// Where one-shot commands look when neither `--config` nor `KEYLESS_CONFIG` names a file:
/// `$XDG_CONFIG_HOME/keyless/keyless.toml`, else `~/.config/keyless/keyless.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")))
        .map(|base| base.join("keyless").join("keyless.toml"))
}

/// Whether a configuration file could supply defaults: `--config`/`--config-profile` on the
/// command line, `KEYLESS_CONFIG`/`KEYLESS_CONFIG_PROFILE` set, or the default file present.
/// When none is, the forgiving first parse below is skipped: it clones and parses the whole
/// command tree, half of what a cached `credential_process` run costs (BENCHMARKS.md, "Profile").
fn may_name_a_file(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .any(|a| a.as_encoded_bytes().starts_with(b"--config"))
        || std::env::var_os("KEYLESS_CONFIG").is_some()
        || std::env::var_os("KEYLESS_CONFIG_PROFILE").is_some()
        || default_config_path().is_some_and(|p| p.is_file())
}

/// The clap command for `args`, with the configuration file's values as flag defaults.
pub fn command_for(args: &[OsString]) -> Result<clap::Command, ConfigDefaultsError> {
    let mut base = super::command();
    if !may_name_a_file(args) {
        return Ok(base);
    }
    // A first, forgiving parse only to learn the subcommand and the file; the real parse (which
    // reports every mistake) runs on the command this returns.
    // `--help` is left out of it so that help shows the file's values as defaults.
    let without_help = args
        .iter()
        .filter(|a| !matches!(a.to_str(), Some("--help" | "-h")));
    let Ok(lenient) = base
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(without_help)
    else {
        return Ok(base);
    };
    let mut chain = Vec::new();
    let mut at = &lenient;
    while let Some((name, sub)) = at.subcommand() {
        chain.push(name.to_string());
        at = sub;
    }
    if chain.first().map(String::as_str) == Some("serve") {
        return Ok(base);
    }
    let profile = lenient.get_one::<String>("config_profile").cloned();
    let path = match lenient.get_one::<PathBuf>("config") {
        Some(path) => path.clone(),
        None => match default_config_path() {
            Some(path) if path.is_file() => path,
            other => {
                return match profile {
                    Some(profile) => Err(ConfigDefaultsError::NoFile {
                        profile,
                        default: other.map_or("~/.config/keyless/keyless.toml".into(), |p| {
                            p.display().to_string()
                        }),
                    }),
                    None => Ok(base),
                };
            }
        },
    };
    // Every command's flags, so that the file's values can become their defaults: a command
    // adds its flags only when built (`defer`, see `cli::command`). Building the whole tree
    // also copies the global flags into each command, where `with_defaults` sets them too.
    // This path (a keyless.toml may apply) costs what every run cost before `defer`. (After
    // the lenient parse: a built tree has already handed its settings down, `ignore_errors`
    // would no longer reach the subcommands.)
    base.build();
    let reader = ReadFor {
        one_shot: true,
        known_flags: Some(flag_keys(&base)),
        // A one-shot server checks its own address when it binds (`allow_remote` below becomes
        // its --allow-remote default).
        allow_remote: true,
    };
    // One read: what is checked (ownership, mode) and validated is what supplies the values.
    let text = config::read_config_file(&path)?;
    let typed = config::parse_for(&text, &path, &reader)?;
    let doc = DeTable::parse(&text).map_err(|_| ConfigError::Read {
        path: path.clone(),
        cause: "not TOML".into(),
    })?;
    let doc = doc.get_ref();
    let chosen = match &profile {
        Some(name) => {
            let found = table(doc.get("profile")).and_then(|p| table(p.get(name.as_str())));
            match found {
                Some(t) => Some(t),
                None => {
                    return Err(ConfigDefaultsError::UnknownProfile {
                        path,
                        profile: name.clone(),
                        available: available(&typed),
                    })
                }
            }
        }
        None => None,
    };
    // A profile that names its target is for that command only.
    if let (Some(name), Some(t), Some(command)) = (&profile, chosen, chain.first()) {
        let target = t.get("target").and_then(|v| v.get_ref().as_str());
        if let (Some(target), "aws" | "gcp") = (target, command.as_str()) {
            if target != command {
                return Err(ConfigDefaultsError::WrongTarget {
                    path,
                    profile: name.clone(),
                    target: target.to_string(),
                    command: command.clone(),
                    makes: if command == "aws" {
                        "AWS credentials"
                    } else {
                        "Google tokens"
                    },
                });
            }
        }
    }
    let values = FileValues {
        path: &path,
        profile_name: profile.as_deref(),
        profile: chosen,
        defaults: table(doc.get("defaults")),
        top: doc,
    };
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    apply(base, &chain, &values)
}

/// The table `value` holds, if it is one.
fn table<'a, 'i>(value: Option<&'a toml::Spanned<DeValue<'i>>>) -> Option<&'a DeTable<'i>> {
    match value.map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => Some(t),
        _ => None,
    }
}

fn available(config: &config::Config) -> String {
    if config.profiles.is_empty() {
        "none".into()
    } else {
        config
            .profiles
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every long flag of every command, snake_case: what `[defaults]` may set.
pub(crate) fn flag_keys(command: &clap::Command) -> Vec<String> {
    // A command's own flags exist once it is built (`defer`, see `cli::command`).
    let mut built = command.clone();
    built.build();
    let mut keys = long_flags(&built);
    keys.sort();
    keys.dedup();
    keys.retain(|k| !matches!(k.as_str(), "help" | "version" | "config" | "config_profile"));
    keys
}

fn long_flags(command: &clap::Command) -> Vec<String> {
    let mut keys: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(snake)
        .collect();
    for sub in command.get_subcommands() {
        keys.extend(long_flags(sub));
    }
    keys
}

fn snake(long: &str) -> String {
    long.replace('-', "_")
}

/// The values the file offers, by key.
struct FileValues<'a> {
    path: &'a Path,
    profile_name: Option<&'a str>,
    profile: Option<&'a DeTable<'a>>,
    defaults: Option<&'a DeTable<'a>>,
    /// The whole file, for the top-level keys that are also flags (`log_format`, `allow_remote`).
    top: &'a DeTable<'a>,
}

/// A profile's channel keys, read as the flags of the one-shot command that offers the same
/// channel (`ecs_listen` is what `aws serve --listen` listens on).
const CHANNEL_FLAGS: &[(&[&str], &str, &str)] = &[
    (&["aws", "serve"], "ecs_listen", "listen"),
    (&["aws", "serve"], "imds_listen", "listen"),
    (&["aws", "token-file"], "token_file", "path"),
    (&["aws", "write-profile"], "credentials_profile", "profile"),
    (&["gcp", "serve"], "gce_metadata_listen", "listen"),
];

/// Keys whose values are paths, resolved against the file's directory like `serve` does.
const PATH_KEYS: &[&str] = &[
    "policy",
    "token_file",
    "auth_token_file",
    "credentials_file",
    "ready_file",
];

/// The keys of a profile that give `flag`'s value, in the order they are looked up: the flag's
/// name, and the other spellings the file accepts (`source` is `--token-source`).
fn key_spellings(flag: &str) -> Vec<&str> {
    match flag {
        "policy_arn" => vec!["policy_arn", "policy_arns"],
        "allowed_host" => vec!["allowed_host", "allowed_hosts"],
        "chain_role" => vec!["chain_role", "chain_roles"],
        "tag" => vec!["tag", "tags"],
        "transitive_tag_key" => vec!["transitive_tag_key", "transitive_tag_keys"],
        "token_source" => vec!["source", "token_source"],
        _ => vec![flag],
    }
}

impl FileValues<'_> {
    /// The value for `flag` (snake_case) of the command `chain`, and the key it came from.
    fn lookup(&self, chain: &[&str], flag: &str) -> Option<(String, Vec<String>)> {
        if let Some(profile) = self.profile {
            for (command, key, target) in CHANNEL_FLAGS {
                if *command == chain && *target == flag {
                    if let Some(v) = profile.get(*key) {
                        return Some((key.to_string(), self.strings(key, v.get_ref())));
                    }
                }
            }
            for key in key_spellings(flag) {
                if let Some(v) = profile.get(key) {
                    return Some((key.to_string(), self.strings(key, v.get_ref())));
                }
            }
            // Writing a profile's credentials defaults to the profile's own name, as in `serve`.
            if chain == ["aws", "write-profile"] && flag == "profile" {
                return self
                    .profile_name
                    .map(|n| (flag.into(), vec![n.to_string()]));
            }
            if chain == ["aws", "serve"] && flag == "imds" && profile.get("imds_listen").is_some() {
                return Some(("imds_listen".into(), vec!["true".into()]));
            }
        }
        if let Some(defaults) = self.defaults {
            // `[defaults]` holds flag names, and `source` for --token-source. A `[defaults]`
            // source is the `aws` commands' ID token (its meaning before `gcp` took a source);
            // `gcp` commands keep their default (`aws`) unless a profile names one.
            if flag == "token_source" && chain.first() == Some(&"gcp") {
                return None;
            }
            for key in key_spellings(flag) {
                if let Some(v) = defaults.get(key) {
                    return Some((key.to_string(), self.strings(key, v.get_ref())));
                }
            }
        }
        let top_key = match flag {
            "log_format" | "allow_remote" => flag,
            "allowed_host" => "allowed_hosts",
            _ => return None,
        };
        self.top
            .get(top_key)
            .map(|v| (top_key.to_string(), self.strings(top_key, v.get_ref())))
    }

    fn strings(&self, key: &str, value: &DeValue<'_>) -> Vec<String> {
        match value {
            DeValue::Array(items) => items
                .iter()
                .flat_map(|item| self.strings(key, item.get_ref()))
                .collect(),
            DeValue::String(s) if PATH_KEYS.contains(&key) => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                vec![dir.join(s.as_ref()).display().to_string()]
            }
            // A `file:` token source's relative path is relative to the file, as in `serve`.
            DeValue::String(s) if matches!(key, "source" | "token_source") => {
                match s.trim().strip_prefix("file:").map(Path::new) {
                    Some(path) if path.is_relative() => {
                        let dir = self.path.parent().unwrap_or(Path::new("."));
                        vec![format!("file:{}", dir.join(path).display())]
                    }
                    _ => vec![s.to_string()],
                }
            }
            DeValue::String(s) => vec![s.to_string()],
            DeValue::Integer(i) => vec![i64::from_str_radix(i.as_str(), i.radix())
                .map(|n| n.to_string())
                .unwrap_or_else(|_| i.as_str().to_string())],
            DeValue::Float(f) => vec![f.as_str().to_string()],
            DeValue::Boolean(b) => vec![b.to_string()],
            DeValue::Datetime(d) => vec![d.to_string()],
            // `tags = {K = "V"}` becomes `--tag K=V` values.
            DeValue::Table(table) if key == "tags" => table
                .iter()
                .filter_map(|(k, v)| Some(format!("{}={}", k.get_ref(), v.get_ref().as_str()?)))
                .collect(),
            DeValue::Table(_) => Vec::new(),
        }
    }
}

/// Sets the file's values as defaults on the command `chain` leads to, and on the root's
/// global flags.
fn apply(
    root: clap::Command,
    chain: &[&str],
    values: &FileValues<'_>,
) -> Result<clap::Command, ConfigDefaultsError> {
    let mut error = None;
    let root = with_defaults(root, &[], chain, values, &mut error);
    match error {
        Some(e) => Err(e),
        None => Ok(root),
    }
}

fn with_defaults(
    mut command: clap::Command,
    depth: &[&str],
    chain: &[&str],
    values: &FileValues<'_>,
    error: &mut Option<ConfigDefaultsError>,
) -> clap::Command {
    let is_leaf = depth.len() == chain.len();
    let ids: Vec<(String, String)> = command
        .get_arguments()
        .filter(|a| is_leaf || a.is_global_set())
        .filter_map(|a| Some((a.get_id().to_string(), snake(a.get_long()?))))
        .collect();
    for (id, flag) in ids {
        let Some((key, found)) = values.lookup(chain, &flag) else {
            continue;
        };
        if found.is_empty() {
            continue;
        }
        // In place (`mut_arg` would move the flag last): the tree is built, and a built
        // command finds its flags by position.
        command = command.mut_args(|arg| {
            if arg.get_id() != id.as_str() {
                return arg;
            }
            let many = matches!(arg.get_action(), ArgAction::Append)
                || arg.get_value_delimiter().is_some();
            let arg = arg.required(false);
            match arg.get_action() {
                ArgAction::Count => arg,
                ArgAction::SetTrue | ArgAction::SetFalse => arg.default_value(found[0].clone()),
                _ if many => arg.default_values(found.clone()),
                _ if found.len() == 1 => arg.default_value(found[0].clone()),
                _ => {
                    error.get_or_insert(ConfigDefaultsError::NotAFlagValue {
                        path: values.path.to_path_buf(),
                        key: key.clone(),
                        flag: flag.replace('_', "-"),
                    });
                    arg
                }
            }
        });
    }
    if let Some(next) = chain.get(depth.len()) {
        let mut deeper = depth.to_vec();
        deeper.push(next);
        command = command.mut_subcommand(*next, |sub| {
            with_defaults(sub, &deeper, chain, values, error)
        });
    }
    command
}
