//! kiln-seed: the code that runs inside the Nix sandbox (and the verifier
//! that `nix run .#verify` runs). Everything here must be deterministic: no
//! clock, no environment, no host files beyond the declared inputs.

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
