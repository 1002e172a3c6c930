//! The `image` step (docs/internals.md): package layers in, a complete
//! single-platform OCI image layout and its SBOMs out.
//!
//! Input: `{definition, variant, arch, created, layers: [dir...]}`. Every
//! layer directory holds `layer.json`, `layer.tar.gz` (or `.zst`) and maybe
//! `ca-certificates.pem` (written by the `layer` step). Nothing from a layer
//! directory is trusted: the blob is checked against the digest, size and
//! diffId its layer.json claims while it is copied, and the packages'
//! architectures and files are checked before anything is built on them.
//!
//! The image is a function of the definition and the locked packages only:
//! `org.opencontainers.image.revision` is a digest of exactly those (see
//! [`definition_digest`]), not a git commit, so that a rebuild from another
//! checkout of the same definition and lock gives the same bytes. The
//! commit that was built belongs in the provenance, which is not part of
//! the image.

use crate::digest::Digest;
use crate::json;
use crate::layerinfo::{FileType, InstalledPackage, LayerInfo};
use crate::oci::{self, LayoutWriter, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, REF_NAME};
use crate::rootfs::{self, PackagePath, CA_BUNDLE_PATH};
use crate::sbom;
use crate::spec::{Arch, Definition, ImageSpec, LayerCompression, SpecError};
use crate::tarwrite;
use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, RootFsBuilder,
    ANNOTATION_CREATED, ANNOTATION_DESCRIPTION, ANNOTATION_LICENSES, ANNOTATION_REVISION,
    ANNOTATION_TITLE,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// `PATH` of every image unless the definition sets its own (Debian's and
/// distroless's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const SPDX_FILE: &str = "sbom.spdx.json";
pub const CYCLONEDX_FILE: &str = "sbom.cdx.json";
pub const SUMMARY_FILE: &str = "image.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the input is not a valid image step input")]
    Input(#[source] serde_json::Error),
    #[error("invalid definition")]
    Spec(#[from] SpecError),
    #[error("architecture {arch} is not among the definition's archs ({archs})")]
    ArchNotDeclared { arch: Arch, archs: String },
    #[error("kiln.lock is stale for image {image}: it was resolved for other packages, suites or archs than images/{name}/image.toml now declares (lock inputs {locked}, definition {current}); run `kiln lock`")]
    StaleLock {
        image: String,
        name: String,
        locked: Digest,
        current: Digest,
    },
    #[error("annotations: {0} is written by kiln into index.json only and cannot be declared")]
    ReservedAnnotation(String),
    #[error("layer {}: {message}", dir.display())]
    Layer { dir: PathBuf, message: String },
    #[error("build output {}: {message}", dir.display())]
    Build { dir: PathBuf, message: String },
    #[error("layer {}", dir.display())]
    LayerBlob {
        dir: PathBuf,
        #[source]
        source: oci::Error,
    },
    #[error("package {package} {version} (layer {}) is for architecture {architecture}, not {arch} or all", layer.display())]
    PackageArch {
        package: String,
        version: String,
        architecture: String,
        arch: Arch,
        layer: PathBuf,
    },
    #[error("package {package} is installed twice: by layer {} and by layer {}", first.display(), second.display())]
    DuplicatePackage {
        package: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "file collision: {path} is shipped by package {first} (layer {}) and by package {second} (layer {}); \
         declare it in packages.allow_collisions if the later layer should win",
        first_layer.display(),
        second_layer.display()
    )]
    Collision {
        path: String,
        first: String,
        first_layer: PathBuf,
        second: String,
        second_layer: PathBuf,
    },
    #[error("packages.allow_collisions: {pattern:?} is not a valid pattern: {message}")]
    Pattern { pattern: String, message: String },
    #[error("generated layer")]
    Rootfs(#[from] rootfs::Error),
    #[error("writing the generated layer")]
    Tar(#[source] io::Error),
    #[error("SBOM")]
    Sbom(#[from] sbom::Error),
    #[error(transparent)]
    Oci(#[from] oci::Error),
}

fn layer_err(dir: &Path, message: impl Into<String>) -> Error {
    Error::Layer {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// image.toml as JSON.
    pub definition: Definition,
    #[serde(default)]
    pub variant: Option<String>,
    pub arch: Arch,
    /// Epoch seconds.
    pub created: u64,
    /// The lock's `inputs` digest for this image: the build refuses a lock
    /// that was resolved for a different definition.
    #[serde(default)]
    pub inputs: Option<Digest>,
    /// Layer directories in stacking order.
    pub layers: Vec<PathBuf>,
    /// Set for an application image: the input above is its base's, and
    /// this is what the application adds ([`app`]).
    #[serde(default)]
    pub app: Option<app::AppInput>,
}

/// `image.json`: what the index step and the driver read about the image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub name: String,
    pub variant: Option<String>,
    pub tag: String,
    pub arch: Arch,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<LayerSummary>,
    pub annotations: BTreeMap<String, String>,
    pub created: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerSummary {
    #[serde(flatten)]
    pub descriptor: Descriptor,
    /// Names of the packages in the layer (empty for the generated layer).
    pub packages: Vec<String>,
}

/// Runs the step: builds the image into `out`, which must not exist. On
/// error nothing is left at `out`.
pub fn run(input: &[u8], out: &Path) -> Result<(), Error> {
    let input: Input = serde_json::from_slice(input).map_err(Error::Input)?;
    build(&input, out).map(|_| ())
}

/// Builds the image described by `input` into `out` (which must not exist)
/// and returns its summary. On error nothing is left at `out`.
pub fn build(input: &Input, out: &Path) -> Result<Summary, Error> {
    oci::fresh_output(out, || build_into(input, out))
}

/// A package layer as read and verified.
struct Layer {
    dir: PathBuf,
    info: LayerInfo,
    ca_pem: Option<Vec<u8>>,
}

/// The definition with `variant` applied, validated, and checked against
/// the lock's `inputs` digest: a lock resolved for another definition is
/// refused.
pub(crate) fn checked_spec(
    definition: &Definition,
    variant: Option<&str>,
    inputs: Option<Digest>,
) -> Result<ImageSpec, Error> {
    definition.validate(None)?;
    let spec = definition.image(variant)?;
    if let Some(locked) = inputs {
        let current = spec.lock_inputs();
        if locked != current {
            return Err(Error::StaleLock {
                image: spec.full_name(),
                name: spec.name.clone(),
                locked,
                current,
            });
        }
    }
    Ok(spec)
}

fn build_into(input: &Input, out: &Path) -> Result<Summary, Error> {
    let spec = checked_spec(&input.definition, input.variant.as_deref(), input.inputs)?;
    let arch = input.arch;
    if !spec.archs.contains(&arch) {
        let archs: Vec<&str> = spec.archs.iter().map(|a| a.debian()).collect();
        return Err(Error::ArchNotDeclared {
            arch,
            archs: archs.join(", "),
        });
    }
    if spec.annotations.contains_key(REF_NAME) {
        return Err(Error::ReservedAnnotation(REF_NAME.into()));
    }
    let created = oci::rfc3339(input.created);
    // Phase times go to the build log only (scripts/bench reads them);
    // nothing of the clock reaches the output.
    let started = std::time::Instant::now();
    let writer = LayoutWriter::create(out)?;

    let layers = input
        .layers
        .iter()
        .map(|dir| load_layer(dir, &writer))
        .collect::<Result<Vec<_>, _>>()?;
    check_packages(&layers, arch)?;
    let paths = package_paths(&layers, &spec)?;

    let has_libc = layers
        .iter()
        .flat_map(|l| &l.info.packages)
        .any(|p| p.name == "libc6");
    let pems: Vec<u8> = layers
        .iter()
        .filter_map(|l| l.ca_pem.as_deref())
        .flatten()
        .copied()
        .collect();
    let ca_bundle = (!pems.is_empty()).then_some(pems);
    let package_paths: BTreeMap<String, PackagePath> = paths
        .iter()
        .map(|(k, (p, _))| (k.clone(), p.clone()))
        .collect();
    let generated = rootfs::generate(&rootfs::Context {
        spec: &spec,
        created: input.created,
        package_paths: &package_paths,
        has_libc,
        ca_bundle: ca_bundle.clone(),
    })?;
    let gen_blob = tarwrite::write_layer_compressed(generated.entries.clone(), spec.compression)
        .map_err(Error::Tar)?;
    writer.put_blob(&gen_blob.bytes)?;

    let layered: Vec<&InstalledPackage> = layers.iter().flat_map(|l| &l.info.packages).collect();
    // Licenses a layer could not see: behind doc directory symlinks into
    // other layers' packages.
    let inherited = sbom::doc_link_licenses(&layered);
    let resolved: Vec<Cow<InstalledPackage>> = layered
        .iter()
        .map(|p| match inherited.get(&p.name) {
            Some(i) => Cow::Owned(InstalledPackage {
                license: i.license.clone(),
                copyright_text: i.copyright_text.clone(),
                ..(*p).clone()
            }),
            None => Cow::Borrowed(*p),
        })
        .collect();
    let installed: Vec<&InstalledPackage> = resolved.iter().map(|p| p.as_ref()).collect();
    let licenses = sbom::combined_license(installed.iter().map(|p| p.license.as_str()));
    let mut annotations = spec.annotations.clone();
    annotations
        .entry(ANNOTATION_TITLE.into())
        .or_insert_with(|| spec.full_name());
    annotations
        .entry(ANNOTATION_DESCRIPTION.into())
        .or_insert_with(|| spec.description.clone());
    annotations
        .entry(ANNOTATION_CREATED.into())
        .or_insert_with(|| created.clone());
    annotations
        .entry(ANNOTATION_REVISION.into())
        .or_insert_with(|| definition_digest(&spec, &installed).to_string());
    annotations
        .entry(ANNOTATION_LICENSES.into())
        .or_insert_with(|| licenses.clone());

    // Config.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    if ca_bundle.is_some() {
        // What distroless sets: OpenSSL and Go find the bundle without the
        // hashed /etc/ssl/certs links update-ca-certificates would make.
        env.insert("SSL_CERT_FILE".into(), CA_BUNDLE_PATH.into());
    }
    env.extend(spec.config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let (uid, gid) = spec.user()?;
    let mut cb = ConfigBuilder::default()
        .user(format!("{uid}:{gid}"))
        .env(
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .labels(
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    if let Some(e) = &spec.config.entrypoint {
        cb = cb.entrypoint(e.clone());
    }
    if let Some(c) = &spec.config.cmd {
        cb = cb.cmd(c.clone());
    }
    if let Some(w) = &spec.config.workdir {
        cb = cb.working_dir(w.0.clone());
    }
    if let Some(s) = &spec.config.stop_signal {
        cb = cb.stop_signal(s.clone());
    }
    let mut diff_ids: Vec<String> = layers.iter().map(|l| l.info.diff_id.to_string()).collect();
    diff_ids.push(gen_blob.diff_id.to_string());
    let mut history = Vec::new();
    for l in &layers {
        let pkgs: Vec<String> = l
            .info
            .packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect();
        history.push(
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("kiln: {}", pkgs.join(" ")))
                .build()
                .expect("history"),
        );
    }
    history.push(
        HistoryBuilder::default()
            .created(created.clone())
            .created_by("kiln: generated files")
            .build()
            .expect("history"),
    );
    let mut ib = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(oci_spec::image::Arch::from(arch.debian()))
        .os(oci_spec::image::Os::Linux)
        .config(cb.build().expect("config fields are set"))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .expect("rootfs"),
        )
        .history(history);
    if let Some(v) = arch.oci_variant() {
        ib = ib.variant(v);
    }
    let config = ib.build().expect("image config fields are set");
    let mut layer_descs: Vec<Descriptor> = layers
        .iter()
        .map(|l| oci::descriptor(&l.info.media_type, &l.info.digest, l.info.size))
        .collect();
    layer_descs.push(oci::descriptor(
        gen_blob.compression.media_type(),
        &gen_blob.digest,
        gen_blob.size(),
    ));

    // An application: the base as built so far (never written), then its
    // own layer, config and annotations.
    let (spec, config, annotations, app_layer) = match &input.app {
        None => (spec, config, annotations, None),
        Some(app_input) => {
            let (app_spec, build) = app_input.spec()?;
            let config_bytes = oci::document_bytes(&config);
            let base_config = oci::descriptor_of(CONFIG_MEDIA_TYPE, &config_bytes);
            let base_manifest = oci::new_manifest(base_config, layer_descs.clone(), &annotations);
            let base_digest = Digest::of(&oci::document_bytes(&base_manifest));
            let layer = app::layer(
                &app_spec,
                &build,
                &app_input.files,
                &app_input.wheels,
                &app_input.crates,
                app_input.created,
                // The application's layer is compressed as its base's are.
                spec.compression,
            )?;
            writer.put_blob(&layer.blob.bytes)?;
            let app_created = oci::rfc3339(app_input.created);
            let mut app_annotations = app_spec.annotations.clone();
            for (k, v) in [
                (ANNOTATION_TITLE, app_spec.full_name()),
                (ANNOTATION_DESCRIPTION, app_spec.description.clone()),
                (ANNOTATION_CREATED, app_created.clone()),
                (
                    ANNOTATION_REVISION,
                    app::revision(&app_spec, &base_digest, &layer.blob).to_string(),
                ),
                (
                    app::BASE_NAME,
                    format!("{}:{}", spec.full_name(), spec.tag()),
                ),
                (app::BASE_DIGEST, base_digest.to_string()),
            ] {
                app_annotations.entry(k.into()).or_insert(v);
            }
            let mut app_config = config.clone();
            app_config.set_created(Some(app_created.clone()));
            let mut runtime = app_config.config().clone().unwrap_or_default();
            let mut env: BTreeMap<String, String> = runtime
                .env()
                .iter()
                .flatten()
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            env.extend(app_spec.config.env.clone());
            runtime.set_env(Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()));
            let entrypoint = app_spec
                .config
                .entrypoint
                .clone()
                .or_else(|| build.default_entrypoint(&app_spec.name));
            if entrypoint.is_some() {
                runtime.set_entrypoint(entrypoint);
                // A new entrypoint does not take the base's arguments.
                runtime.set_cmd(None);
            }
            if let Some(c) = &app_spec.config.cmd {
                runtime.set_cmd(Some(c.clone()));
            }
            if let Some(w) = &app_spec.config.workdir {
                runtime.set_working_dir(Some(w.0.clone()));
            }
            if let Some(sig) = &app_spec.config.stop_signal {
                runtime.set_stop_signal(Some(sig.clone()));
            }
            runtime.set_labels(Some(
                app_annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ));
            app_config.set_config(Some(runtime));
            let mut rootfs = app_config.rootfs().clone();
            let mut diff_ids = rootfs.diff_ids().clone();
            diff_ids.push(layer.blob.diff_id.to_string());
            rootfs.set_diff_ids(diff_ids);
            app_config.set_rootfs(rootfs);
            let mut history = app_config.history().clone().unwrap_or_default();
            history.push(
                HistoryBuilder::default()
                    .created(app_created)
                    .created_by(match &build.toolchain {
                        Some(toolchain) => format!(
                            "kiln: {} build of {} with toolchain {toolchain}",
                            build.builder(),
                            build.source,
                        ),
                        None => format!(
                            "kiln: {} build of {} with {} wheels",
                            build.builder(),
                            build.source,
                            app_input.wheels.len()
                        ),
                    })
                    .build()
                    .expect("history"),
            );
            app_config.set_history(Some(history));
            layer_descs.push(oci::descriptor(
                layer.blob.compression.media_type(),
                &layer.blob.digest,
                layer.blob.size(),
            ));
            (app_spec, app_config, app_annotations, Some(layer))
        }
    };
    let image_created = input.app.as_ref().map_or(input.created, |a| a.created);
    let (config_desc, _) = writer.put_document(CONFIG_MEDIA_TYPE, &config)?;

    // Manifest and layout.
    let manifest = oci::new_manifest(config_desc.clone(), layer_descs.clone(), &annotations);
    let (mut manifest_desc, _) = writer.put_document(MANIFEST_MEDIA_TYPE, &manifest)?;
    manifest_desc.set_platform(Some(oci::platform(arch)));
    let mut index_entry = manifest_desc.clone();
    oci::set_annotations(
        &mut index_entry,
        &BTreeMap::from([(REF_NAME.to_string(), spec.tag().to_string())]),
    );
    writer.write_index(vec![index_entry])?;

    // SBOMs.
    let sbom_started = std::time::Instant::now();
    let manifest_digest =
        oci::kiln_digest(manifest_desc.digest()).expect("kiln writes sha256 digests");
    let generated_paths: BTreeSet<String> = generated.paths().collect();
    let mut sorted = installed.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let packages = sorted
        .into_iter()
        .map(|p| {
            let mut package = sbom::Package::new(p, |path| {
                !generated_paths.contains(path)
                    && paths
                        .get(path)
                        .is_some_and(|(winner, _)| winner.package == p.name)
            })?;
            package.license_source = inherited.get(&p.name).map(|i| {
                format!(
                    "/usr/share/doc/{} is a symlink to the documentation of {}: license and copyright are those stated in {}",
                    p.name, i.from, i.source
                )
            });
            Ok(package)
        })
        .collect::<Result<Vec<_>, sbom::Error>>()?;
    let full_name = spec.full_name();
    let distro = spec.release()?.distro();
    let sbom_input = sbom::Image {
        name: &full_name,
        distro: &distro,
        tag: spec.tag(),
        arch,
        created: image_created,
        manifest: manifest_digest,
        licenses: &licenses,
        packages,
        generated: &generated.files,
        applications: app_layer.as_ref().map_or(&[][..], |l| &l.applications),
    };
    writer.write_file(
        SPDX_FILE,
        &json::pretty(&sbom::spdx::document(&sbom_input)?),
    )?;
    writer.write_file(
        CYCLONEDX_FILE,
        &json::pretty(&sbom::cyclonedx::bom(&sbom_input)),
    )?;
    let sbom_time = sbom_started.elapsed();

    let mut layer_summaries: Vec<LayerSummary> = layers
        .iter()
        .zip(&layer_descs)
        .map(|(l, d)| LayerSummary {
            descriptor: d.clone(),
            packages: l.info.packages.iter().map(|p| p.name.clone()).collect(),
        })
        .collect();
    // The generated layer and, for an application, its layer.
    let extra = 1 + usize::from(app_layer.is_some());
    for d in &layer_descs[layers.len()..layers.len() + extra] {
        layer_summaries.push(LayerSummary {
            descriptor: d.clone(),
            packages: vec![],
        });
    }
    let summary = Summary {
        name: spec.name.clone(),
        variant: spec.variant.clone(),
        tag: spec.tag().to_string(),
        arch,
        manifest: manifest_desc,
        config: config_desc,
        layers: layer_summaries,
        annotations,
        created: image_created,
    };
    writer.write_file(SUMMARY_FILE, &json::pretty(&summary))?;
    eprintln!(
        "kiln-seed image: {} ({arch}): {} packages in {} layers; SBOMs (SPDX + CycloneDX) {:.1} ms of the step's {:.1} ms",
        full_name,
        installed.len(),
        summary.layers.len(),
        sbom_time.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(summary)
}

/// The definition digest written as `org.opencontainers.image.revision`:
/// sha256 of the canonical JSON of the variant-applied definition and the
/// installed packages (name, version, architecture, .deb sha256), sorted.
/// Two builds share it exactly when they are built from the same inputs.
pub fn definition_digest(spec: &ImageSpec, packages: &[&InstalledPackage]) -> Digest {
    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    struct Pinned<'a> {
        name: &'a str,
        version: &'a str,
        architecture: &'a str,
        sha256: &'a str,
    }
    #[derive(Serialize)]
    struct Revision<'a> {
        definition: &'a ImageSpec,
        packages: Vec<Pinned<'a>>,
    }
    let mut pinned: Vec<Pinned> = packages
        .iter()
        .map(|p| Pinned {
            name: &p.name,
            version: &p.version,
            architecture: &p.architecture,
            sha256: &p.sha256,
        })
        .collect();
    pinned.sort();
    Digest::of(&json::canonical(&Revision {
        definition: spec,
        packages: pinned,
    }))
}

/// Reads a layer directory, copying its blob into the layout while checking
/// it against layer.json's digest and size. The diffId is layer.json's: the
/// layer step computed it from the very tar it compressed, in the same
/// output as the digest checked here, so decompressing the blob again
/// would only repeat that step (`kiln verify` recomputes every diffId on
/// the consumer's side, from the blobs it pulled).
fn load_layer(dir: &Path, writer: &LayoutWriter) -> Result<Layer, Error> {
    let info_path = dir.join("layer.json");
    let bytes =
        fs::read(&info_path).map_err(|e| layer_err(dir, format!("reading layer.json: {e}")))?;
    let info: LayerInfo = serde_json::from_slice(&bytes)
        .map_err(|e| layer_err(dir, format!("layer.json is invalid: {e}")))?;
    let Some(compression) = LayerCompression::of_media_type(&info.media_type) else {
        return Err(layer_err(
            dir,
            format!(
                "layer.json: media type {} is not {} or {}",
                info.media_type,
                LayerCompression::Gzip.media_type(),
                LayerCompression::Zstd.media_type()
            ),
        ));
    };
    for p in &info.packages {
        if let Some(f) = p.files.iter().find(|f| !f.path.starts_with('/')) {
            return Err(layer_err(
                dir,
                format!(
                    "layer.json: package {}: file path {:?} is not absolute",
                    p.name, f.path
                ),
            ));
        }
    }
    writer
        .copy_blob(
            &dir.join(compression.blob_file()),
            &info.digest,
            info.size,
            &format!("layer {}", dir.display()),
        )
        .map_err(|source| Error::LayerBlob {
            dir: dir.to_path_buf(),
            source,
        })?;
    let pem_path = dir.join("ca-certificates.pem");
    let ca_pem = match fs::read(&pem_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(layer_err(dir, format!("reading ca-certificates.pem: {e}"))),
    };
    Ok(Layer {
        dir: dir.to_path_buf(),
        info,
        ca_pem,
    })
}

/// Every package is for `arch` (or `all`) and installed once.
fn check_packages(layers: &[Layer], arch: Arch) -> Result<(), Error> {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for l in layers {
        for p in &l.info.packages {
            if p.architecture != arch.debian() && p.architecture != "all" {
                return Err(Error::PackageArch {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    arch,
                    layer: l.dir.clone(),
                });
            }
            if let Some(first) = seen.insert(&p.name, &l.dir) {
                return Err(Error::DuplicatePackage {
                    package: p.name.clone(),
                    first: first.to_path_buf(),
                    second: l.dir.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Every path the package layers put into the image, with the entry the
/// container sees (the last layer's) and that layer's index. Two packages
/// shipping the same path is an error unless both ship a directory or the
/// path matches `packages.allow_collisions`.
fn package_paths(
    layers: &[Layer],
    spec: &ImageSpec,
) -> Result<BTreeMap<String, (PackagePath, usize)>, Error> {
    let patterns = spec
        .packages
        .allow_collisions
        .iter()
        .map(|g| {
            glob::Pattern::new(&g.0).map_err(|e| Error::Pattern {
                pattern: g.0.clone(),
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut paths: BTreeMap<String, (PackagePath, usize)> = BTreeMap::new();
    for (i, l) in layers.iter().enumerate() {
        for p in &l.info.packages {
            for f in &p.files {
                let entry = PackagePath {
                    kind: f.file_type,
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                    package: p.name.clone(),
                };
                if let Some((prev, j)) = paths.get(&f.path) {
                    let both_dirs =
                        prev.kind == FileType::Directory && f.file_type == FileType::Directory;
                    if prev.package != p.name
                        && !both_dirs
                        && !patterns.iter().any(|pat| pat.matches_with(&f.path, opts))
                    {
                        return Err(Error::Collision {
                            path: f.path.clone(),
                            first: prev.package.clone(),
                            first_layer: layers[*j].dir.clone(),
                            second: p.name.clone(),
                            second_layer: l.dir.clone(),
                        });
                    }
                }
                paths.insert(f.path.clone(), (entry, i));
            }
        }
    }
    Ok(paths)
}

pub mod app;

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod app_tests;

#[cfg(test)]
mod stale_lock_tests;
