//! kiln, the driver: locks Debian package sets against the signed archive,
//! fetches them into the Nix store, runs the hermetic builds and describes,
//! signs, pushes and verifies what they produce.
//!
//! Each module owns one concern and its error type; the `kiln` binary is a
//! thin CLI over them.

pub use kiln_seed::{digest, json, release, spec};

pub mod appsource;
pub mod build;
pub mod cache;
pub mod crates;
pub mod debian;
pub mod definition;
pub mod diff;
pub mod digests;
pub mod fetch;
pub mod fsutil;
pub mod init;
pub mod interrupt;
pub mod lock;
pub mod nixcmd;
pub mod nixstore;
pub mod policy;
pub mod project;
pub mod provenance;
pub mod registry;
pub mod repro;
pub mod runtime;
pub mod seedbuild;

pub mod keys;
pub mod sign;
pub mod signstore;
pub mod sigstore;
pub mod tool;
pub mod toolchain;
pub mod wheels;
