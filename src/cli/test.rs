//! `kiln test`: run images for real (podman + runc) and probe them from
//! inside.

use anyhow::{bail, Context};
use kiln::definition;
use kiln::lock::Lock;
use kiln::runtime::{self, TestOptions};
use kiln::spec::{Arch, ImageSpec};
use std::collections::BTreeMap;
use std::path::Path;

/// Run images with podman + runc and check them from inside.
///
/// Builds the images (Nix reuses what is built), writes a test copy of each
/// platform with one extra layer holding kiln's probe (never the image
/// itself), and runs it with a read-only root, every capability dropped,
/// no-new-privileges and no network. The probe reports its uid/gid,
/// capabilities, whether / is writable, whether /bin/sh executes, whether
/// the CA bundle loads and its chains verify, whether zoneinfo resolves
/// and whether any network is reachable; each is judged against the
/// definition. Debug images must run /bin/sh as root. arm64 images run
/// under qemu-aarch64-static.
///
/// Examples:
///   kiln test scratch-plus
///   kiln test base-debug --arch arm64 --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Images to test: `name` (with its variants) or `name-variant`.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Only this platform (repeatable). Default: every platform of the image.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Vec<Arch>,
    /// Keep the test copies (.kiln/test/) and the images in podman's storage (~/.local/share/kiln/podman).
    #[arg(long)]
    pub keep: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    Arch::parse(s).ok_or_else(|| format!("{s:?} is not amd64 or arm64"))
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let defs = definition::load_project(project)?;
    let mut specs: Vec<ImageSpec> = Vec::new();
    for want in &args.images {
        let mut found = false;
        for d in &defs {
            for s in d.definition.images()? {
                if s.full_name() == *want || s.name == *want {
                    found = true;
                    if !specs.iter().any(|x| x.full_name() == s.full_name()) {
                        specs.push(s);
                    }
                }
            }
        }
        if !found {
            let known: Vec<String> = defs
                .iter()
                .flat_map(|d| d.definition.images().unwrap_or_default())
                .map(|s| s.full_name())
                .collect();
            bail!("{}", kiln::definition::unknown_image(want, &known));
        }
    }
    let lock = Lock::read(&Lock::path_in(project))?;
    let attrs: Vec<String> = specs.iter().map(|s| s.full_name()).collect();
    let built = kiln::policy::build(project, &attrs)?;
    let mut results = Vec::new();
    let all: Vec<ImageSpec> = defs
        .iter()
        .map(|d| d.definition.images())
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    for spec in &specs {
        // An application runs as its base does, with the base's packages.
        let (spec, packages_of) = match &spec.base {
            Some(base) => {
                let b = kiln::policy::base_of(spec, &all).with_context(|| {
                    format!("{}: base {base} is not an image", spec.full_name())
                })?;
                (&spec.on_base(b), b.full_name())
            }
            None => (spec, spec.full_name()),
        };
        let packages: BTreeMap<Arch, Vec<String>> = lock
            .images
            .get(&packages_of)
            .map(|i| {
                i.archs
                    .iter()
                    .map(|(a, p)| (*a, p.packages.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let r = runtime::test_image(
            project,
            spec,
            &built[&spec.full_name()],
            &packages,
            &TestOptions {
                archs: args.arch.clone(),
                keep: args.keep,
            },
        )
        .with_context(|| format!("testing {}", spec.full_name()))?;
        if !args.json {
            print!("{}", runtime::render(&r));
        }
        results.extend(r);
    }
    if args.json {
        super::output::json(&results);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{} ({})", r.image, r.arch))
        .collect();
    if results.is_empty() {
        bail!("no platform was tested (check --arch)");
    }
    if !failed.is_empty() {
        eprintln!("kiln: runtime checks failed for {}", failed.join(", "));
    }
    Ok(super::Outcome::from_passed(failed.is_empty()))
}
