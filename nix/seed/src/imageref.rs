//! One way to name an image and one way to resolve the name, shared by
//! every command that reads an image (the verifier here; push, pull, diff
//! in the driver), so that what is verified is exactly what is pushed, run
//! or compared.
//!
//! References are written as skopeo writes them: `oci:DIR[:NAME]` for an
//! OCI image layout, `docker://HOST/REPO[:TAG|@DIGEST]` for a registry, and,
//! as shorthands, a layout directory (`DIR`, `DIR:NAME`) or a bare
//! registry reference (`HOST/REPO[:TAG]`).
//!
//! In a layout, `NAME` is matched against the
//! `org.opencontainers.image.ref.name` annotation of the entries of
//! `index.json`, as the OCI image-layout specification defines it. Tools
//! disagree when a name appears twice (skopeo takes the first match, umoci
//! refuses), so a name that appears twice is an error here: a name leads to
//! one digest or to none.

use crate::oci::REF_NAME;
use crate::regclient::{RegError, RegistryRef};
use oci_spec::image::{Descriptor, ImageIndex};
use std::fmt;
use std::path::{Path, PathBuf};

/// `index.json` annotation `cosign save` puts on what it saved: the image
/// (`dev.cosignproject.cosign/image`), an image index (`.../imageIndex`),
/// signatures (`.../sigs`) or attestations (`.../atts`).
pub const COSIGN_KIND: &str = "kind";
pub const COSIGN_KIND_IMAGE: &str = "dev.cosignproject.cosign/image";
pub const COSIGN_KIND_IMAGE_INDEX: &str = "dev.cosignproject.cosign/imageIndex";
pub const COSIGN_KIND_SIGS: &str = "dev.cosignproject.cosign/sigs";
pub const COSIGN_KIND_ATTS: &str = "dev.cosignproject.cosign/atts";

/// Transports of containers-image (skopeo, podman) that kiln does not read.
const OTHER_TRANSPORTS: &[&str] = &[
    "oci-archive",
    "docker-archive",
    "docker-daemon",
    "containers-storage",
    "dir",
    "sif",
    "tarball",
];

/// What a reference names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// An OCI image layout directory, and the ref name of one of its
    /// entries (none: the layout's one image, see [`resolve_layout`]).
    Layout { dir: PathBuf, name: Option<String> },
    /// An image in a registry.
    Registry(RegistryRef),
}

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("{given:?}: kiln reads OCI layouts (oci:DIR[:NAME], or DIR[:NAME]) and registries (docker://HOST/REPO[:TAG], or HOST/REPO[:TAG]); the {transport}: transport is not supported")]
    Transport { given: String, transport: String },
    #[error("{}: no such layout directory", .0.display())]
    NoLayout(PathBuf),
    #[error("{}: not an OCI image layout (it has no oci-layout file)", .0.display())]
    NotALayout(PathBuf),
    #[error("{given:?}: an empty name after the layout directory")]
    EmptyName { given: String },
    #[error(transparent)]
    Registry(#[from] RegError),
}

fn layout_dir(dir: &str) -> Result<PathBuf, RefError> {
    let path = PathBuf::from(dir);
    if !path.is_dir() {
        return Err(RefError::NoLayout(path));
    }
    if !path.join("oci-layout").is_file() {
        return Err(RefError::NotALayout(path));
    }
    Ok(path)
}

fn is_layout(dir: &str) -> bool {
    !dir.is_empty() && Path::new(dir).join("oci-layout").is_file()
}

/// Strings that can only be paths: a registry reference starts with a host.
fn looks_like_a_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s == "." || s == ".."
}

impl ImageRef {
    pub fn parse(given: &str) -> Result<ImageRef, RefError> {
        if let Some(rest) = given.strip_prefix("oci:") {
            // skopeo splits `oci:` references at the first colon.
            let (dir, name) = match rest.split_once(':') {
                Some((_, "")) => {
                    return Err(RefError::EmptyName {
                        given: given.into(),
                    })
                }
                Some((d, n)) => (d, Some(n.to_string())),
                None => (rest, None),
            };
            return Ok(ImageRef::Layout {
                dir: layout_dir(dir)?,
                name,
            });
        }
        if let Some(rest) = given.strip_prefix("docker://") {
            return Ok(ImageRef::Registry(RegistryRef::parse(rest)?));
        }
        if let Some((transport, _)) = given.split_once(':') {
            if OTHER_TRANSPORTS.contains(&transport) {
                return Err(RefError::Transport {
                    given: given.into(),
                    transport: transport.into(),
                });
            }
        }
        if Path::new(given).is_dir() {
            return Ok(ImageRef::Layout {
                dir: layout_dir(given)?,
                name: None,
            });
        }
        if let Some((dir, name)) = given.rsplit_once(':') {
            if !name.contains('/') && is_layout(dir) {
                if name.is_empty() {
                    return Err(RefError::EmptyName {
                        given: given.into(),
                    });
                }
                return Ok(ImageRef::Layout {
                    dir: PathBuf::from(dir),
                    name: Some(name.to_string()),
                });
            }
        }
        if looks_like_a_path(given) {
            return Err(RefError::NoLayout(PathBuf::from(given)));
        }
        Ok(ImageRef::Registry(RegistryRef::parse(given)?))
    }

    /// The same reference with `name` as the layout entry (`--tag`, `--ref`);
    /// a different name in the reference itself is an error.
    pub fn with_name(self, name: Option<&str>) -> Result<ImageRef, String> {
        match (self, name) {
            (r, None) => Ok(r),
            (ImageRef::Layout { dir, name: None }, Some(n)) => Ok(ImageRef::Layout {
                dir,
                name: Some(n.to_string()),
            }),
            (ImageRef::Layout { dir, name: Some(m) }, Some(n)) if m == n => {
                Ok(ImageRef::Layout { dir, name: Some(m) })
            }
            (ImageRef::Layout { name: Some(m), .. }, Some(n)) => Err(format!(
                "the reference names {m:?} and the flag names {n:?}: give one"
            )),
            (ImageRef::Registry(r), Some(n)) => Err(format!(
                "{r} is a registry reference; a layout name ({n:?}) applies only to layouts"
            )),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Layout { dir, name: None } => write!(f, "oci:{}", dir.display()),
            ImageRef::Layout { dir, name: Some(n) } => write!(f, "oci:{}:{n}", dir.display()),
            ImageRef::Registry(r) => write!(f, "{r}"),
        }
    }
}

/// The ref name of an `index.json` entry.
pub fn ref_name(desc: &Descriptor) -> Option<&str> {
    annotation(desc, REF_NAME)
}

fn annotation<'a>(desc: &'a Descriptor, key: &str) -> Option<&'a str> {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// A cosign tag (`sha256-<hex>.sig`, `.att`, `.sbom`) or a referrers
/// fallback tag (`sha256-<hex>`): the digest it is about and the suffix.
pub fn attachment_name(name: &str) -> Option<(crate::digest::Digest, &str)> {
    let rest = name.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.').unwrap_or((rest, ""));
    Some((crate::digest::Digest::from_hex(hex)?, suffix))
}

/// An entry that is something attached to an image rather than an image:
/// named with a cosign or referrers tag, marked as signatures or
/// attestations by `cosign save`, or listed with an `artifactType` (a
/// referrer).
pub fn is_attachment(desc: &Descriptor) -> bool {
    ref_name(desc).is_some_and(|n| attachment_name(n).is_some())
        || matches!(
            annotation(desc, COSIGN_KIND),
            Some(COSIGN_KIND_SIGS) | Some(COSIGN_KIND_ATTS)
        )
        || desc.artifact_type().is_some()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("index.json has no entry named {name:?} (its names: {known})")]
    NoSuchName { name: String, known: String },
    #[error("index.json names {} entries {name:?} ({}): a name must lead to one image (skopeo would take the first, umoci refuses), so kiln refuses too", digests.len(), digests.join(", "))]
    Ambiguous { name: String, digests: Vec<String> },
    #[error("index.json lists no image")]
    Empty,
    #[error("index.json lists {images} images and {indexes} image indexes; name the one you mean (DIR:NAME, or --tag/--ref NAME; its names: {known})")]
    Unnamed {
        images: usize,
        indexes: usize,
        known: String,
    },
}

fn known_names(index: &ImageIndex) -> String {
    let names: Vec<&str> = index
        .manifests()
        .iter()
        .filter_map(ref_name)
        .filter(|n| attachment_name(n).is_none())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The entries of `index` named `name`, in order.
pub fn named<'a>(index: &'a ImageIndex, name: &str) -> Vec<&'a Descriptor> {
    index
        .manifests()
        .iter()
        .filter(|d| ref_name(d) == Some(name))
        .collect()
}

/// Resolves `name` in a layout's `index.json` to the one entry it names.
/// Without a name: the layout's only entry; else the entry `cosign save`
/// marks as the image; else the only image index that is not an
/// attachment; else the only manifest that is not one.
pub fn resolve_layout(index: &ImageIndex, name: Option<&str>) -> Result<Descriptor, ResolveError> {
    if let Some(n) = name {
        return match named(index, n).as_slice() {
            [] => Err(ResolveError::NoSuchName {
                name: n.into(),
                known: known_names(index),
            }),
            [one] => Ok((*one).clone()),
            many => Err(ResolveError::Ambiguous {
                name: n.into(),
                digests: many.iter().map(|d| d.digest().to_string()).collect(),
            }),
        };
    }
    let all = index.manifests();
    match all.as_slice() {
        [] => return Err(ResolveError::Empty),
        [one] => return Ok(one.clone()),
        _ => {}
    }
    let marked: Vec<&Descriptor> = all
        .iter()
        .filter(|d| {
            matches!(
                annotation(d, COSIGN_KIND),
                Some(COSIGN_KIND_IMAGE) | Some(COSIGN_KIND_IMAGE_INDEX)
            )
        })
        .collect();
    if let [one] = marked.as_slice() {
        return Ok((*one).clone());
    }
    let images: Vec<&Descriptor> = all.iter().filter(|d| !is_attachment(d)).collect();
    let indexes: Vec<&Descriptor> = images
        .iter()
        .copied()
        .filter(|d| d.media_type().as_ref() == crate::oci::INDEX_MEDIA_TYPE)
        .collect();
    match (indexes.as_slice(), images.as_slice()) {
        ([one], _) | ([], [one]) => Ok((*one).clone()),
        ([], []) => Err(ResolveError::Empty),
        _ => Err(ResolveError::Unnamed {
            images: images.len(),
            indexes: indexes.len(),
            known: known_names(index),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::oci::{self, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
    use std::collections::BTreeMap;

    fn entry(media_type: &str, byte: u8, name: Option<&str>) -> Descriptor {
        let mut d = oci::descriptor(media_type, &Digest([byte; 32]), 10);
        if let Some(n) = name {
            oci::set_annotations(&mut d, &BTreeMap::from([(REF_NAME.into(), n.into())]));
        }
        d
    }

    fn index(entries: Vec<Descriptor>) -> ImageIndex {
        oci::new_index(entries, &BTreeMap::new())
    }

    #[test]
    fn names_resolve_to_exactly_one_entry() {
        let sig = format!("sha256-{}.sig", Digest([1; 32]).hex());
        let i = index(vec![
            entry(INDEX_MEDIA_TYPE, 1, Some("latest")),
            entry(MANIFEST_MEDIA_TYPE, 2, Some("latest-amd64")),
            entry(MANIFEST_MEDIA_TYPE, 3, Some(&sig)),
        ]);
        assert_eq!(
            resolve_layout(&i, Some("latest-amd64")).unwrap().digest(),
            entry(MANIFEST_MEDIA_TYPE, 2, None).digest()
        );
        // Without a name: the one image index that is not an attachment.
        assert_eq!(
            resolve_layout(&i, None).unwrap().digest(),
            entry(INDEX_MEDIA_TYPE, 1, None).digest()
        );
        let e = resolve_layout(&i, Some("nope")).unwrap_err();
        assert!(e.to_string().contains("latest, latest-amd64"), "{e}");
        assert!(!e.to_string().contains(".sig"), "{e}");

        // The same name twice is refused, whichever comes first.
        let dup = index(vec![
            entry(INDEX_MEDIA_TYPE, 9, Some("latest")),
            entry(INDEX_MEDIA_TYPE, 1, Some("latest")),
        ]);
        let e = resolve_layout(&dup, Some("latest")).unwrap_err();
        assert!(matches!(&e, ResolveError::Ambiguous { digests, .. } if digests.len() == 2));
        assert!(e.to_string().contains(&Digest([9; 32]).to_string()), "{e}");
        // And without a name two images are two images.
        assert!(matches!(
            resolve_layout(&dup, None),
            Err(ResolveError::Unnamed { indexes: 2, .. })
        ));
        assert_eq!(
            resolve_layout(&index(vec![]), None),
            Err(ResolveError::Empty)
        );
    }

    #[test]
    fn references_are_written_as_skopeo_writes_them() {
        let dir = tempfile_dir();
        let d = dir.to_str().unwrap();
        assert_eq!(
            ImageRef::parse(d).unwrap(),
            ImageRef::Layout {
                dir: dir.clone(),
                name: None
            }
        );
        for given in [format!("oci:{d}:latest"), format!("{d}:latest")] {
            assert_eq!(
                ImageRef::parse(&given).unwrap(),
                ImageRef::Layout {
                    dir: dir.clone(),
                    name: Some("latest".into())
                },
                "{given}"
            );
        }
        assert_eq!(
            ImageRef::parse(&format!("oci:{d}")).unwrap().to_string(),
            format!("oci:{d}")
        );
        for given in [
            "docker://127.0.0.1:5000/kiln/x:latest",
            "127.0.0.1:5000/kiln/x:latest",
        ] {
            match ImageRef::parse(given).unwrap() {
                ImageRef::Registry(r) => {
                    assert_eq!(r.to_string(), "127.0.0.1:5000/kiln/x:latest")
                }
                other => panic!("{given}: {other:?}"),
            }
        }
        let e = ImageRef::parse("docker-archive:/tmp/x.tar").unwrap_err();
        assert!(e.to_string().contains("docker-archive: transport"), "{e}");
        assert!(matches!(
            ImageRef::parse("oci:/nonexistent/kiln:latest"),
            Err(RefError::NoLayout(_))
        ));
        assert!(matches!(
            ImageRef::parse("/nonexistent/kiln"),
            Err(RefError::NoLayout(_))
        ));
        let plain = dir.parent().unwrap();
        assert!(matches!(
            ImageRef::parse(plain.to_str().unwrap()),
            Err(RefError::NotALayout(_))
        ));
        assert!(ImageRef::parse(&format!("oci:{d}:")).is_err());
        let r = ImageRef::parse(d).unwrap();
        assert!(r.clone().with_name(Some("a")).is_ok());
        let named = r.with_name(Some("a")).unwrap();
        assert!(named.clone().with_name(Some("a")).is_ok());
        assert!(named.with_name(Some("b")).is_err());
    }

    fn tempfile_dir() -> PathBuf {
        let dir = crate::oci::tests::scratch("imageref").join("layout");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        dir
    }
}
