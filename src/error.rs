//! The library's typed errors. The binary turns them into messages for people (anyhow).

use std::path::PathBuf;

/// Everything that can go wrong inside gpumf, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },

    #[error("{path}: is a directory, expected a file")]
    IsDirectory { path: PathBuf },

    #[error("{path}: the file is empty (no ratings)")]
    EmptyFile { path: PathBuf },

    /// The reason is in the message, not also the error's `source()`: the binary prints each
    /// error with its chain of sources, which would say it twice.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: std::io::Error },

    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: u64, message: String },

    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    #[error("invalid setting: {0}")]
    InvalidParameter(String),

    /// A setting that cannot train, named as each front end names it: the CLI's flag
    /// (`--rank`) in this message, Python's argument (`rank=0`) in Python's.
    #[error("invalid setting: {flag} {problem}")]
    Setting { flag: &'static str, argument: &'static str, value: String, problem: String },

    #[error("{0}")]
    Data(String),

    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },

    #[error("{0}")]
    TooLarge(String),

    #[error("model file {path}: {message}")]
    ModelFile { path: PathBuf, message: String },

    /// A DSGD cluster that cannot start or lost a member.
    #[error("cluster: {0}")]
    Cluster(String),

    #[error("GPU: {0}")]
    Gpu(String),

    #[error("no GPU adapter found (wgpu saw none on Vulkan, Metal or DX12); use --backend cpu, or install a Vulkan driver such as Mesa's lavapipe (mesa-vulkan-drivers)")]
    NoAdapter,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A bad setting, by its CLI flag and Python argument: `problem` says what is wrong with
    /// `value` ("must be at least 1").
    pub(crate) fn setting(flag: &'static str, argument: &'static str, value: impl std::fmt::Display, problem: impl Into<String>) -> Error {
        Error::Setting { flag, argument, value: value.to_string(), problem: problem.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { path },
            _ => Error::Io { path, reason: source },
        }
    }
}
