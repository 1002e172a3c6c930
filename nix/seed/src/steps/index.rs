//! The `index` step (docs/internals.md): the per-architecture image layouts
//! in, one multi-platform OCI image layout out.
//!
//! Input: `{name, variant, images: [dir...]}`. Each image directory is the
//! output of the `image` step; its blobs are verified against their digests
//! while they are copied, so a tampered per-arch output never reaches the
//! index. The result's `index.json` lists the image index (ref name = the
//! tag) and, for tools that cannot read nested indexes (umoci), every
//! platform manifest again under `<tag>-<arch>`.

use crate::image::{self, Summary as ImageSummary};
use crate::json;
use crate::oci::{self, Layout, LayoutWriter, INDEX_MEDIA_TYPE, REF_NAME};
use crate::spec::Arch;
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub const SUMMARY_FILE: &str = "image.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the input is not a valid index step input")]
    Input(#[source] serde_json::Error),
    #[error("no images to index")]
    NoImages,
    #[error("image {}: {message}", dir.display())]
    Image { dir: PathBuf, message: String },
    #[error("image {}", dir.display())]
    Layout {
        dir: PathBuf,
        #[source]
        source: oci::Error,
    },
    #[error("images {} and {} are both for {arch}", first.display(), second.display())]
    DuplicateArch {
        arch: Arch,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(transparent)]
    Oci(#[from] oci::Error),
}

fn image_err(dir: &Path, message: impl Into<String>) -> Error {
    Error::Image {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub name: String,
    #[serde(default)]
    pub variant: Option<String>,
    /// Outputs of the image step, one per architecture.
    pub images: Vec<PathBuf>,
    /// An application's base: that image's index step output. Its index
    /// digest becomes the application index's
    /// `org.opencontainers.image.base.digest` (each platform manifest
    /// carries its base platform's).
    #[serde(default)]
    pub base: Option<PathBuf>,
}

/// `image.json` of the multi-platform layout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub name: String,
    pub variant: Option<String>,
    pub tag: String,
    /// The image index blob.
    pub index: Descriptor,
    /// Each platform's manifest, with its platform.
    pub manifests: BTreeMap<Arch, Descriptor>,
}

/// Runs the step into `out`, which must not exist. On error nothing is left
/// at `out`.
pub fn run(input: &[u8], out: &Path) -> Result<(), Error> {
    let input: Input = serde_json::from_slice(input).map_err(Error::Input)?;
    build(&input, out).map(|_| ())
}

/// Builds the multi-platform layout into `out` (which must not exist) and
/// returns its summary. On error nothing is left at `out`.
pub fn build(input: &Input, out: &Path) -> Result<Summary, Error> {
    oci::fresh_output(out, || build_into(input, out))
}

/// One architecture's image as verified and copied.
struct Platform {
    dir: PathBuf,
    manifest: Descriptor,
    annotations: BTreeMap<String, String>,
}

fn build_into(input: &Input, out: &Path) -> Result<Summary, Error> {
    if input.images.is_empty() {
        return Err(Error::NoImages);
    }
    let tag = input.variant.as_deref().unwrap_or("latest").to_string();
    let writer = LayoutWriter::create(out)?;

    let mut platforms: BTreeMap<Arch, Platform> = BTreeMap::new();
    for dir in &input.images {
        let (arch, platform) = copy_image(dir, input, &tag, &writer)?;
        if let Some(first) = platforms.get(&arch) {
            return Err(Error::DuplicateArch {
                arch,
                first: first.dir.clone(),
                second: dir.clone(),
            });
        }
        platforms.insert(arch, platform);
    }

    // Annotations every platform agrees on describe the index too.
    let mut common = platforms
        .values()
        .next()
        .expect("at least one image")
        .annotations
        .clone();
    for p in platforms.values() {
        common.retain(|k, v| p.annotations.get(k) == Some(v));
    }
    if let Some(base) = &input.base {
        let file = base.join(SUMMARY_FILE);
        let text = fs::read(&file).map_err(|e| Error::Image {
            dir: base.clone(),
            message: format!("reading {SUMMARY_FILE}: {e}"),
        })?;
        let summary: Summary = serde_json::from_slice(&text).map_err(|e| Error::Image {
            dir: base.clone(),
            message: format!("{SUMMARY_FILE}: {e}"),
        })?;
        common.insert(
            image::app::BASE_DIGEST.into(),
            summary.index.digest().to_string(),
        );
    }
    // A BTreeMap over Arch iterates amd64 before arm64.
    let manifests: Vec<Descriptor> = platforms.values().map(|p| p.manifest.clone()).collect();
    let index = oci::new_index(manifests.clone(), &common);
    let (index_desc, _) = writer.put_document(INDEX_MEDIA_TYPE, &index)?;

    let mut entries = Vec::new();
    let mut top = index_desc.clone();
    oci::set_annotations(
        &mut top,
        &BTreeMap::from([(REF_NAME.to_string(), tag.clone())]),
    );
    entries.push(top);
    for (arch, p) in &platforms {
        let mut d = p.manifest.clone();
        oci::set_annotations(
            &mut d,
            &BTreeMap::from([(REF_NAME.to_string(), format!("{tag}-{}", arch.debian()))]),
        );
        entries.push(d);
    }
    writer.write_index(entries)?;

    let summary = Summary {
        name: input.name.clone(),
        variant: input.variant.clone(),
        tag,
        index: index_desc,
        manifests: platforms
            .into_iter()
            .map(|(a, p)| (a, p.manifest))
            .collect(),
    };
    writer.write_file(SUMMARY_FILE, &json::pretty(&summary))?;
    Ok(summary)
}

/// Checks one image step output against its own summary and the input,
/// copies its blobs (verifying each) and its SBOMs.
fn copy_image(
    dir: &Path,
    input: &Input,
    tag: &str,
    writer: &LayoutWriter,
) -> Result<(Arch, Platform), Error> {
    let summary_path = dir.join(image::SUMMARY_FILE);
    let bytes = fs::read(&summary_path)
        .map_err(|e| image_err(dir, format!("reading {}: {e}", image::SUMMARY_FILE)))?;
    let summary: ImageSummary = serde_json::from_slice(&bytes)
        .map_err(|e| image_err(dir, format!("{} is invalid: {e}", image::SUMMARY_FILE)))?;
    if summary.name != input.name || summary.variant != input.variant || summary.tag != tag {
        return Err(image_err(
            dir,
            format!(
                "is {} variant {:?} (tag {}), not {} variant {:?}",
                summary.name, summary.variant, summary.tag, input.name, input.variant
            ),
        ));
    }
    let arch = summary.arch;
    let layout_err = |source| Error::Layout {
        dir: dir.to_path_buf(),
        source,
    };
    let layout = Layout::open(dir).map_err(layout_err)?;
    if layout.index().manifests().len() != 1 {
        return Err(image_err(
            dir,
            format!(
                "index.json lists {} manifests, an image step output has one",
                layout.index().manifests().len()
            ),
        ));
    }
    let desc = layout
        .find(tag)
        .ok_or_else(|| image_err(dir, format!("index.json has no manifest named {tag}")))?;
    if desc.digest() != summary.manifest.digest() || desc.size() != summary.manifest.size() {
        return Err(image_err(
            dir,
            format!(
                "index.json names manifest {}, {} says {}",
                desc.digest(),
                image::SUMMARY_FILE,
                summary.manifest.digest()
            ),
        ));
    }
    let manifest = layout.read_manifest(desc).map_err(layout_err)?;
    let config = layout.read_config(manifest.config()).map_err(layout_err)?;
    if config.architecture().to_string() != arch.debian() || config.os().to_string() != "linux" {
        return Err(image_err(
            dir,
            format!(
                "its config is for {}/{}, {} says linux/{arch}",
                config.os(),
                config.architecture(),
                image::SUMMARY_FILE
            ),
        ));
    }
    if config.variant().as_deref() != arch.oci_variant() {
        return Err(image_err(
            dir,
            format!(
                "its config has variant {:?}, linux/{arch} needs {:?}",
                config.variant(),
                arch.oci_variant()
            ),
        ));
    }
    let what = format!("image {}", dir.display());
    for d in std::iter::once(desc)
        .chain(std::iter::once(manifest.config()))
        .chain(manifest.layers())
    {
        let digest = oci::kiln_digest(d.digest()).map_err(|m| image_err(dir, m))?;
        writer.copy_blob(&layout.blob_path(&digest), &digest, d.size(), &what)?;
    }

    // The SBOMs must describe this manifest (they name it by digest).
    let hex = desc.digest().digest().to_string();
    let (spdx_bytes, spdx) = read_json(dir, image::SPDX_FILE)?;
    let described = spdx["packages"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["SPDXID"] == crate::sbom::spdx::IMAGE_ID)
        })
        .and_then(|p| p["checksums"][0]["checksumValue"].as_str());
    if described != Some(hex.as_str()) {
        return Err(image_err(
            dir,
            format!(
                "{} does not describe manifest {}",
                image::SPDX_FILE,
                desc.digest()
            ),
        ));
    }
    let (cdx_bytes, cdx) = read_json(dir, image::CYCLONEDX_FILE)?;
    if cdx["metadata"]["component"]["version"].as_str() != Some(desc.digest().to_string().as_str())
    {
        return Err(image_err(
            dir,
            format!(
                "{} does not describe manifest {}",
                image::CYCLONEDX_FILE,
                desc.digest()
            ),
        ));
    }
    for (bytes, ext) in [(spdx_bytes, "spdx.json"), (cdx_bytes, "cdx.json")] {
        writer.write_file(&format!("sbom/{}.{ext}", arch.debian()), &bytes)?;
    }

    let mut manifest_desc = oci::descriptor(
        oci::MANIFEST_MEDIA_TYPE,
        &oci::kiln_digest(desc.digest()).map_err(|m| image_err(dir, m))?,
        desc.size(),
    );
    manifest_desc.set_platform(Some(oci::platform(arch)));
    let annotations = manifest
        .annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((
        arch,
        Platform {
            dir: dir.to_path_buf(),
            manifest: manifest_desc,
            annotations,
        },
    ))
}

/// The bytes of a JSON file of a per-arch output, and what they parse to.
fn read_json(dir: &Path, file: &str) -> Result<(Vec<u8>, serde_json::Value), Error> {
    let bytes =
        fs::read(dir.join(file)).map_err(|e| image_err(dir, format!("reading {file}: {e}")))?;
    let value = serde_json::from_slice(&bytes)
        .map_err(|e| image_err(dir, format!("{file} is not JSON: {e}")))?;
    Ok((bytes, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::{definition, input, standard_layers};
    use crate::oci::tests::{chain, scratch};
    use std::process::Command;

    /// Image step outputs for amd64 and arm64 of the standard fixtures.
    fn per_arch(root: &Path, variant: Option<&str>) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for arch in Arch::ALL {
            let layers = standard_layers(root, arch.debian());
            let out = root.join(format!("image-{}", arch.debian()));
            image::build(&input(definition(), variant, arch, layers), &out).unwrap();
            dirs.push(out);
        }
        dirs
    }

    fn index_input(images: Vec<PathBuf>) -> Input {
        Input {
            name: "scratch-plus".into(),
            variant: None,
            images,
            base: None,
        }
    }

    #[test]
    fn index_lists_both_platforms_and_common_annotations() {
        let root = scratch("index-basic");
        let mut images = per_arch(&root, None);
        images.reverse(); // the order of the input does not matter
        let out = root.join("out");
        let s = build(&index_input(images), &out).unwrap();

        let layout = Layout::open(&out).unwrap();
        let names: Vec<_> = layout
            .index()
            .manifests()
            .iter()
            .map(|d| d.annotations().as_ref().unwrap()[REF_NAME].clone())
            .collect();
        assert_eq!(names, vec!["latest", "latest-amd64", "latest-arm64"]);
        let top = layout.find("latest").unwrap();
        assert_eq!(top.media_type().as_ref(), INDEX_MEDIA_TYPE);
        let index = layout.read_image_index(top).unwrap();
        let archs: Vec<_> = index
            .manifests()
            .iter()
            .map(|d| d.platform().as_ref().unwrap().architecture().to_string())
            .collect();
        assert_eq!(archs, vec!["amd64", "arm64"]);
        assert_eq!(
            index.manifests()[1]
                .platform()
                .as_ref()
                .unwrap()
                .variant()
                .as_deref(),
            Some("v8")
        );
        let ann = index.annotations().as_ref().unwrap();
        assert_eq!(ann["org.opencontainers.image.title"], "scratch-plus");
        assert!(!ann.contains_key(REF_NAME));
        // The packages differ per arch, so does the definition digest.
        assert!(!ann.contains_key("org.opencontainers.image.revision"));
        // Every blob is there and verifies (walk reads them all).
        // The index, two manifests, two configs, two libc layers, and the
        // ca-certificates (arch: all) and generated layers both share.
        assert_eq!(layout.walk().unwrap().len(), 9);
        for f in [
            "sbom/amd64.spdx.json",
            "sbom/amd64.cdx.json",
            "sbom/arm64.spdx.json",
            "sbom/arm64.cdx.json",
        ] {
            assert!(out.join(f).exists(), "{f}");
        }
        let read: Summary =
            serde_json::from_slice(&fs::read(out.join(SUMMARY_FILE)).unwrap()).unwrap();
        assert_eq!(read, s);
        assert_eq!(s.manifests.len(), 2);
    }

    #[test]
    fn index_is_deterministic() {
        let root = scratch("index-determinism");
        let images = per_arch(&root, None);
        let a = build(&index_input(images.clone()), &root.join("a")).unwrap();
        let b = build(&index_input(images), &root.join("b")).unwrap();
        assert_eq!(a.index, b.index);
        assert_eq!(
            fs::read(root.join("a/index.json")).unwrap(),
            fs::read(root.join("b/index.json")).unwrap()
        );
    }

    #[test]
    fn tampered_per_arch_blob_is_refused() {
        let root = scratch("index-tamper");
        let images = per_arch(&root, None);
        let summary: ImageSummary =
            serde_json::from_slice(&fs::read(images[1].join(image::SUMMARY_FILE)).unwrap())
                .unwrap();
        let layer = &summary.layers[1].descriptor;
        let path = images[1].join("blobs/sha256").join(layer.digest().digest());
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let msg = chain(&build(&index_input(images), &root.join("out")).unwrap_err());
        assert!(
            msg.contains(&layer.digest().to_string()) && msg.contains("image-arm64"),
            "{msg}"
        );
        assert!(!root.join("out").exists());
    }

    #[test]
    fn duplicate_arch_and_wrong_variant_are_refused() {
        let root = scratch("index-dup");
        let images = per_arch(&root, None);
        let msg = chain(
            &build(
                &index_input(vec![images[0].clone(), images[0].clone()]),
                &root.join("out"),
            )
            .unwrap_err(),
        );
        assert!(msg.contains("amd64"), "{msg}");
        let mut wrong = index_input(images);
        wrong.variant = Some("debug".into());
        let msg = chain(&build(&wrong, &root.join("out2")).unwrap_err());
        assert!(msg.contains("variant"), "{msg}");
    }

    fn have(tool: &str) -> bool {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn ok(cmd: &mut Command) -> String {
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// image (amd64, arm64) → index, then the real consumers: skopeo, umoci
    /// and the SBOM validators, where installed.
    #[test]
    fn end_to_end_with_real_tools() {
        let root = scratch("index-e2e");
        let images = per_arch(&root, None);
        let out = root.join("layout");
        let s = build(&index_input(images), &out).unwrap();
        let layout = format!("oci:{}:latest", out.display());

        if have("skopeo") {
            let raw: serde_json::Value = serde_json::from_str(&ok(
                Command::new("skopeo").args(["inspect", "--raw", &layout])
            ))
            .unwrap();
            assert_eq!(raw["mediaType"], INDEX_MEDIA_TYPE);
            assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);
            for arch in ["amd64", "arm64"] {
                let info: serde_json::Value = serde_json::from_str(&ok(Command::new("skopeo")
                    .args([
                        "inspect",
                        "--override-os",
                        "linux",
                        "--override-arch",
                        arch,
                        &layout,
                    ])))
                .unwrap();
                assert_eq!(info["Architecture"], arch);
                // skopeo reports the digest of what the reference names: the index.
                assert_eq!(info["Digest"], s.index.digest().to_string());
                assert_eq!(
                    info["Labels"]["org.opencontainers.image.title"],
                    "scratch-plus"
                );
            }
        } else {
            eprintln!("skopeo not installed: skipping its checks");
        }

        if have("umoci") {
            let bundle = root.join("bundle");
            ok(Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:latest-amd64", out.display()))
                .arg(&bundle));
            let rootfs = bundle.join("rootfs");
            let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
            assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
            assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
            assert!(rootfs.join("usr/lib/libc.so.6").is_file());
            assert!(rootfs.join("etc/nsswitch.conf").is_file());
            let config: serde_json::Value =
                serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
            assert_eq!(config["process"]["cwd"], "/home/nonroot");
            let arm = root.join("bundle-arm64");
            ok(Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:latest-arm64", out.display()))
                .arg(&arm));
        } else {
            eprintln!("umoci not installed: skipping its checks");
        }

        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/validate_sbom.py");
        let python = Command::new("python3")
            .args(["-c", "import spdx_tools, cyclonedx"])
            .output();
        if script.exists() && python.is_ok_and(|o| o.status.success()) {
            for arch in ["amd64", "arm64"] {
                ok(Command::new("python3")
                    .arg(&script)
                    .arg(out.join(format!("sbom/{arch}.spdx.json")))
                    .arg(out.join(format!("sbom/{arch}.cdx.json"))));
            }
        } else {
            eprintln!("spdx-tools / cyclonedx-python-lib or tests/validate_sbom.py missing: skipping SBOM validation");
        }
    }
}
