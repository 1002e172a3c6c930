//! The build engine: what `kiln build` does, as a library call that other
//! commands (and the coming release, sync and application builds) can make.
//!
//! Options in, a [`Report`] out: check that the Nix sandbox is on, check
//! the definitions, the lock and the fetched .debs before Nix sees them,
//! build the attributes in the sandbox, judge every image by the policies,
//! and write each image's SLSA provenance. Nothing is printed here; the
//! caller reports. A build that a policy denies moves no output link and
//! writes no provenance.

use crate::nixcmd::{self, BuildOptions};
use crate::provenance::{self, PolicyRecord};
use crate::seedbuild::{Pin, SeedError};
use crate::spec::ImageSpec;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Nix(#[from] nixcmd::NixError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    // Causes are printed inline, not also chained as `source` (which
    // `{:#}` would print a second time).
    #[error("{}: {error}", path.display())]
    Definition {
        path: PathBuf,
        error: kiln_seed::spec::SpecError,
    },
    #[error(transparent)]
    Definitions(#[from] crate::definition::DefinitionError),
    #[error(transparent)]
    Lock(Box<crate::lock::LockError>),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("{0} is not tracked by git, and a flake in a git checkout sees only tracked files: run `git add {0}`")]
    Untracked(String),
    #[error("{0} (an image may also be named with an arch suffix, such as <image>-amd64)")]
    UnknownImage(String),
    #[error("{count} pinned .deb(s) are not in the Nix store ({named}); run `kiln fetch`")]
    NotFetched { count: usize, named: String },
    #[error("evaluating the policies on {attr}: {error}")]
    Policy {
        attr: String,
        error: Box<crate::policy::PolicyError>,
    },
    #[error("writing the provenance of {attr}: {error}")]
    Provenance {
        attr: String,
        error: provenance::ProvenanceError,
    },
}

// Boxed: the lock's and the policies' errors are large, and every
// function here returns this type.
impl From<crate::lock::LockError> for BuildError {
    fn from(e: crate::lock::LockError) -> Self {
        BuildError::Lock(Box::new(e))
    }
}

/// What to build and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Flake attributes: `scratch-plus`, `scratch-plus-debug`,
    /// `scratch-plus-arm64`, or others of the flake (the seed).
    pub attrs: Vec<String>,
    /// A symlink to the first attribute's output, made only when every
    /// image passed its policies.
    pub out_link: Option<PathBuf>,
    /// Build again and fail if the output differs (`nix build --rebuild`).
    pub rebuild: bool,
    /// Build even though the Nix sandbox is off (recorded as such).
    pub allow_unsandboxed: bool,
    /// Where the provenance statements go (`<attr>.intoto.json`).
    pub provenance_dir: PathBuf,
    /// Extra policy directories, evaluated with the defaults.
    pub policies: Vec<PathBuf>,
    /// Go on when a policy denies an image (recorded in the provenance).
    pub skip_policy: bool,
    /// How many derivations Nix builds at once (`--max-jobs`); `None`
    /// keeps nix.conf's setting (setup writes `auto`: one per core).
    pub max_jobs: Option<u32>,
}

/// One built attribute.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuiltAttr {
    pub image: String,
    /// The image's root digest (none for an attribute that is not an image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub out: String,
    pub drv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<PathBuf>,
    /// The policy verdict, as text (none for an attribute that is not an image).
    #[serde(skip)]
    pub verdict: Option<String>,
}

/// An image a policy denied: the build stops there.
#[derive(Clone, Debug)]
pub struct Denied {
    pub attr: String,
    pub count: usize,
    pub verdict: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Why the sandbox check would have refused, when the build went on
    /// without it (`allow_unsandboxed`).
    pub unsandboxed: Option<String>,
    /// The attributes built and judged, in order, up to a denial.
    pub built: Vec<BuiltAttr>,
    pub denied: Option<Denied>,
    /// The checkout the images were built from, as the provenance records
    /// it (read once per build).
    pub source: Option<kiln_seed::verify::provenance::SourceParameter>,
}

/// Fails naming the images (and the closest one) when one of `attrs` is
/// neither an image of the project (`<image>[-<variant>][-<arch>]`) nor
/// another attribute of the flake (the seed, the verifier, ...).
pub fn check_attrs(project: &Path, attrs: &[String]) -> Result<(), BuildError> {
    check_names(project, &specs_of(project)?, attrs)
}

/// Every image (definition with a variant applied) under `project/images`.
fn specs_of(project: &Path) -> Result<Vec<ImageSpec>, BuildError> {
    let mut specs = Vec::new();
    for loaded in crate::definition::load_project(project)? {
        specs.extend(
            loaded
                .definition
                .images()
                .map_err(|error| BuildError::Definition {
                    path: loaded.path.clone(),
                    error,
                })?,
        );
    }
    Ok(specs)
}

fn check_names(project: &Path, specs: &[ImageSpec], attrs: &[String]) -> Result<(), BuildError> {
    // A typo is answered with the images, not with Nix's evaluation error.
    let is_image = |a: &String| {
        specs.iter().any(|s| {
            let full = s.full_name();
            *a == full || s.archs.iter().any(|arch| *a == format!("{full}-{arch}"))
        })
    };
    if let Some(unknown) = attrs.iter().find(|a| !is_image(a)) {
        let others = nixcmd::package_names(project)?;
        if !others.contains(unknown) {
            let mut known: Vec<String> = specs.iter().map(|s| s.full_name()).collect();
            known.sort();
            known.dedup();
            return Err(BuildError::UnknownImage(crate::definition::unknown_image(
                unknown, &known,
            )));
        }
    }
    // A git flake sees only tracked files: a definition git does not know
    // passes lock and policy (which read the directory) and then is missing
    // from the flake.
    let in_git = crate::tool::git(project, &["rev-parse", "--is-inside-work-tree"])
        .is_some_and(|t| t.trim() == "true");
    if in_git {
        for spec in specs.iter().filter(|s| {
            let full = s.full_name();
            attrs
                .iter()
                .any(|a| *a == full || a.starts_with(&format!("{full}-")))
        }) {
            let file = format!("images/{}/{}", spec.name, crate::definition::FILE_NAME);
            let tracked =
                crate::tool::git(project, &["ls-files", "--error-unmatch", &file]).is_some();
            if !tracked {
                return Err(BuildError::Untracked(file));
            }
        }
    }
    Ok(())
}

/// Builds `opts.attrs` in `project` (see the module documentation).
pub fn build(project: &Path, opts: &Options) -> Result<Report, BuildError> {
    let mut report = Report::default();
    let settings = nixcmd::settings()?;
    if let Err(e) = settings.check_isolated() {
        if !opts.allow_unsandboxed {
            return Err(e.into());
        }
        report.unsandboxed = Some(e.to_string());
    }
    precheck(project, &opts.attrs)?;
    // kiln's source is found once (a `nix flake archive` in a project of
    // its own) for the seed and for every provenance.
    let kiln_dir =
        crate::project::kiln_source(project).map_err(crate::seedbuild::SeedError::from)?;
    let pin = Pin::installed_in(&kiln_dir)?;
    let started = std::time::SystemTime::now();
    let built = nixcmd::build(
        project,
        &opts.attrs,
        &BuildOptions {
            out_link: None,
            rebuild: opts.rebuild,
            allow_unsandboxed: opts.allow_unsandboxed,
            extra_args: opts
                .max_jobs
                .map(|n| vec!["--max-jobs".to_string(), n.to_string()])
                .unwrap_or_default(),
            ..Default::default()
        },
    )?;
    let finished = std::time::SystemTime::now();
    let invocation_id = provenance::invocation_id(&|k| std::env::var(k).ok());
    let source = provenance::source_of(project);
    report.source = Some(source.clone());
    // Read with the first image that gets a provenance, then shared.
    let mut inputs: Option<provenance::BuildInputs> = None;
    for b in &built {
        let out = Path::new(b.out());
        if !out.join("image.json").is_file() {
            // Not an image (the seed, the verifier): nothing to judge or attest.
            report.built.push(BuiltAttr {
                image: b.attr.clone(),
                digest: None,
                out: b.out().to_string(),
                drv: b.drv_path.clone(),
                provenance: None,
                verdict: None,
            });
            continue;
        }
        // The policy gate: deny stops the build unless the user opts out,
        // and the opt-out goes into the provenance.
        let verdict = crate::policy::evaluate_image(project, &b.attr, out, &opts.policies)
            .map_err(|error| BuildError::Policy {
                attr: b.attr.clone(),
                error: Box::new(error),
            })?;
        if verdict.denied() > 0 && !opts.skip_policy {
            report.denied = Some(Denied {
                attr: b.attr.clone(),
                count: verdict.denied(),
                verdict: verdict.render(),
            });
            return Ok(report);
        }
        let policy = PolicyRecord {
            enforced: !opts.skip_policy,
            extra_policies: opts
                .policies
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            outcome: serde_json::json!({
                "denied": verdict.denied(),
                "warnings": verdict.warned(),
                "rules": verdict.rules.keys().collect::<Vec<_>>(),
            }),
        };
        let provenance_err = |error| BuildError::Provenance {
            attr: b.attr.clone(),
            error,
        };
        if inputs.is_none() {
            inputs = Some(
                provenance::BuildInputs::read(project, &kiln_dir, &pin).map_err(provenance_err)?,
            );
        }
        let statement = provenance::generate(&provenance::BuildRecord {
            project,
            built: b,
            settings: &settings,
            pin: &pin,
            started,
            finished,
            invocation_id: &invocation_id,
            policy: Some(&policy),
            source: &source,
            inputs: inputs.as_ref().expect("read above"),
        })
        .map_err(provenance_err)?;
        let prov_path = provenance::path_for(&opts.provenance_dir, &b.attr);
        provenance::write(&prov_path, &statement).map_err(provenance_err)?;
        let digest = provenance::BuiltImage::read(out)
            .ok()
            .and_then(|i| i.root())
            .map_or_else(|| "?".to_string(), |d| d.to_string());
        report.built.push(BuiltAttr {
            image: b.attr.clone(),
            digest: Some(digest),
            out: b.out().to_string(),
            drv: b.drv_path.clone(),
            provenance: Some(prov_path),
            verdict: Some(verdict.render()),
        });
    }
    // Only now, with every image judged: the link (and its GC root).
    if let (Some(link), Some(first)) = (&opts.out_link, built.first()) {
        nixcmd::link_output(first.out(), link)?;
    }
    Ok(report)
}

/// What would otherwise surface as a Nix evaluation or fetch error, said
/// the kiln way first: a definition error with its file, line and key, a
/// stale lock naming the image, or the .debs `kiln fetch` has not added.
fn precheck(project: &Path, attrs: &[String]) -> Result<(), BuildError> {
    if !project.join("images").is_dir() {
        return Ok(());
    }
    let specs = specs_of(project)?;
    check_names(project, &specs, attrs)?;
    let wanted: Vec<_> = specs
        .into_iter()
        .filter(|s| {
            let full = s.full_name();
            attrs
                .iter()
                .any(|a| *a == full || s.archs.iter().any(|arch| *a == format!("{full}-{arch}")))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let lock_path = crate::lock::Lock::path_in(project);
    let lock = crate::lock::Lock::read(&lock_path)?;
    lock.check_images(&wanted, false, &lock_path)?;
    let names: Vec<String> = wanted.iter().map(|s| s.full_name()).collect();
    let items = crate::fetch::items(lock.select(Some(&names), None)?);
    let paths: Vec<String> = items.iter().map(|i| i.store_path.clone()).collect();
    let missing = crate::fetch::invalid_paths(&paths)?;
    if !missing.is_empty() {
        let named: Vec<String> = items
            .iter()
            .filter(|i| missing.contains(&i.store_path))
            .take(5)
            .map(|i| format!("{} {}", i.name, i.package.version))
            .collect();
        let more = if missing.len() > named.len() {
            ", ..."
        } else {
            ""
        };
        return Err(BuildError::NotFetched {
            count: missing.len(),
            named: format!("{}{more}", named.join(", ")),
        });
    }
    Ok(())
}
