//! The one error type of the core. Every fallible public function returns it; nothing in the
//! decoders panics on untrusted input.

use std::fmt;

/// What went wrong, classified so bindings can map each kind to one exception type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not a tensorpress stream of a version we read (magic, version, flags,
    /// impossible header fields).
    Format(String),
    /// The header is well formed but the payload cannot be what an encoder wrote.
    Corrupt(String),
    /// A stored checksum does not match the bytes.
    Checksum(String),
    /// The caller asked for something impossible (bad option, wrong output size).
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn format(msg: impl Into<String>) -> Self {
        Self::Format(msg.into())
    }
    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        Self::Corrupt(msg.into())
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::Format(m) | Self::Corrupt(m) | Self::Checksum(m) | Self::InvalidArgument(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Format(_) => "format error",
            Self::Corrupt(_) => "corrupt data",
            Self::Checksum(_) => "checksum mismatch",
            Self::InvalidArgument(_) => "invalid argument",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for Error {}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;
