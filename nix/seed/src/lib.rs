//! kiln-seed, in three visibly separate parts:
//!
//! - shared formats (this directory): digests, deterministic JSON, the
//!   image spec, OCI documents and references, attestations, SBOMs, the
//!   layer-info contract between steps, and the policy engine; used by the
//!   sandbox steps, the verifier and the driver alike;
//! - `steps/`: what runs inside the Nix sandbox, which must be
//!   deterministic (no clock, no environment, no host files beyond the
//!   declared inputs): .deb reading, tar safety and writing, the layer,
//!   image, index, link and probe steps, and the toolchain `root` step;
//! - `host/`: what runs on the host: the verifier behind `nix run .#verify`
//!   and its registry client (registries, credentials files, the clock).
//!
//! The modules are also re-exported at the crate root under their own
//! names (`kiln_seed::layer`, `kiln_seed::verify`, ...).

pub mod appspec;
pub mod attest;
pub mod date;
pub mod digest;
pub mod gobuildinfo;
pub mod gomod;
pub mod imageref;
pub mod json;
pub mod layerinfo;
pub mod oci;
pub mod policy;
pub mod release;
pub mod sbom;
pub mod spec;
pub mod tarlist;

pub mod steps {
    //! Sandbox steps: deterministic, no clock, no network, no environment.
    pub mod chroot;
    pub mod copyright;
    pub mod deb;
    pub mod image;
    pub mod index;
    pub mod layer;
    pub mod link;
    pub mod probe;
    pub mod root;
    pub mod rootfs;
    pub mod tarsafe;
    pub mod tarwrite;
    pub mod wheel;
    pub mod zstdstream;
}

pub mod host {
    //! Host-only: the verifier and its registry client.
    pub mod regclient;
    pub mod verify;
}

pub use host::{regclient, verify};
pub use steps::{
    copyright, deb, image, index, layer, link, probe, rootfs, tarsafe, tarwrite, wheel,
};
