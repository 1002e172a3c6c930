//! kiln-seed: the code that runs inside the Nix sandbox, which must be
//! deterministic (no clock, no environment, no host files beyond the
//! declared inputs), and, on the host, the verifier behind `nix run .#verify`
//! (`verify`, `regclient`: registries, credentials files, the clock).

pub mod digest;
pub mod imageref;
pub mod json;
pub mod layerinfo;
pub mod oci;
pub mod rootfs;
pub mod sbom;
pub mod spec;
pub mod tarwrite;

pub mod copyright;
pub mod deb;
pub mod tarsafe;

pub mod image;
pub mod index;
pub mod layer;
pub mod link;

pub mod attest;

pub mod policy;
pub mod probe;
pub mod regclient;
pub mod verify;
