//! The image source the verifier reads: [`crate::oci::Source`], shared
//! with every other reader of images.

pub use crate::oci::source::*;
