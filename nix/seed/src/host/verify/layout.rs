//! The verifier over an OCI layout: [`crate::oci::LayoutSource`], and the
//! `cosign save` annotations it knows.

pub use crate::imageref::{
    COSIGN_KIND, COSIGN_KIND_ATTS, COSIGN_KIND_IMAGE, COSIGN_KIND_IMAGE_INDEX, COSIGN_KIND_SIGS,
};
pub use crate::oci::layout_source::{chain, LayoutSource};
