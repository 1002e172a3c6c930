//! `layer.json`: what a layer step tells the image step (docs/internals.md).

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_MEDIA_TYPE_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerInfo {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub packages: Vec<InstalledPackage>,
}

/// A package as installed in a layer: its lock entry, what its control file
/// and copyright file say, and the files it put into the layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    pub suite: String,
    pub filename: String,
    /// sha256 (hex) of the .deb.
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub maintainer: Option<String>,
    #[serde(default)]
    pub homepage: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub installed_size: Option<u64>,
    /// SPDX license expression, or `NOASSERTION`.
    pub license: String,
    /// `Copyright:` lines of the copyright file, or `NOASSERTION`.
    pub copyright_text: String,
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    File,
    Directory,
    Symlink,
    Hardlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileInfo {
    /// Absolute path in the image.
    pub path: String,
    #[serde(rename = "type")]
    pub file_type: FileType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Symlink target, or the absolute path a hard link points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}
