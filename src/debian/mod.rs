//! The Debian side of kiln: where the archive is (apt sources), what it
//! signs (InRelease against the archive keyring), what it offers (Packages
//! indexes) and what an image needs from it (dependency resolution).
//!
//! Nothing here knows a mirror's host name: the base URIs come from the
//! machine's apt configuration or from an explicit override, and what ends
//! up in the lock is archive-relative.

pub mod http;
pub mod packages;
pub mod release;
pub mod resolve;
pub mod sources;

pub use packages::{BinaryPackage, Dependency, Relation, VersionOp};
pub use release::{Keyring, Release, SuiteIndex};
pub use sources::{Mirrors, Overrides, SuiteSource};

/// Where Debian installs the archive keyring (package debian-archive-keyring).
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// apt's configuration directory.
pub const DEFAULT_APT_DIR: &str = "/etc/apt";
