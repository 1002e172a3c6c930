//! `kiln lock`: resolve every image against Debian's signed indexes and pin
//! the result in kiln.lock.

use anyhow::Context;
use kiln::debian::http::Http;
use kiln::debian::release::{self, load_suite, Keyring};
use kiln::debian::DEFAULT_KEYRING;
use kiln::lock::{self, Lock};
use kiln::spec::ImageSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Resolve package sets against Debian's signed indexes and write kiln.lock.
///
/// Finds the archive in the machine's apt sources (or --mirror), downloads
/// each suite's InRelease, verifies its OpenPGP signature against the
/// Debian archive keyring, checks every Packages index against the signed
/// hashes, resolves each image (Depends + Pre-Depends, minus
/// packages.exclude) for each architecture, and writes kiln.lock
/// atomically. The lock holds archive-relative paths and hashes, no URLs.
///
/// Examples:
///   kiln lock                      re-resolve every image
///   kiln lock scratch-plus         re-resolve one image, keep the others
///   kiln lock --check              offline: is the lock current? (CI)
///   kiln lock --update --json      relock and report what changed as JSON
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Images to resolve (`name` or `name-variant`); the others keep their
    /// entries and, where they share packages, their versions. Default: all.
    pub images: Vec<String>,

    /// Do not resolve: check offline that kiln.lock matches every
    /// definition (inputs digest, images, packages); fail naming the image.
    #[arg(long, conflicts_with_all = ["update", "images"])]
    pub check: bool,

    /// Re-resolve everything against today's indexes (what `kiln lock`
    /// does too) and report what changed; the fix for a stale lock.
    #[arg(long)]
    pub update: bool,

    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub archive: super::mirror::MirrorArgs,

    /// OpenPGP keyring that must have signed the InRelease files.
    #[arg(long, env = "KILN_KEYRING", value_name = "FILE", default_value = DEFAULT_KEYRING)]
    pub keyring: PathBuf,
}

/// `kiln lock --check --json`.
#[derive(serde::Serialize)]
struct CheckReport {
    ok: bool,
    images: Vec<String>,
}

/// `kiln lock --json`.
#[derive(serde::Serialize)]
struct LockReport<'a, S: serde::Serialize> {
    lock: String,
    written: bool,
    changed: bool,
    summary: &'a S,
    seconds: f64,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let started = Instant::now();
    let specs = load_specs(project)?;
    let toolchains = kiln::toolchain::load_all(project)?;
    let path = Lock::path_in(project);
    if args.check {
        let lock = Lock::read(&path)?;
        match lock.check(&specs, &toolchains, &path) {
            Ok(()) => {}
            // A stale lock is the check failing, not kiln failing to run.
            Err(e @ kiln::lock::LockError::Stale { .. }) => {
                eprintln!("kiln: {e}");
                return Ok(super::Outcome::ChecksFailed);
            }
            Err(e) => return Err(e.into()),
        }
        if args.json {
            super::output::json(&CheckReport {
                ok: true,
                images: specs.iter().map(|s| s.full_name()).collect(),
            });
        } else {
            println!("{} is up to date ({} images)", path.display(), specs.len());
        }
        return Ok(super::Outcome::Ok);
    }

    let only: Option<BTreeSet<String>> =
        (!args.images.is_empty()).then(|| args.images.iter().cloned().collect());
    if let Some(only) = &only {
        let known: BTreeSet<String> = specs.iter().map(|s| s.full_name()).collect();
        let listed: Vec<String> = known.iter().cloned().collect();
        for name in only {
            if !known.contains(name) {
                anyhow::bail!("{}", kiln::definition::unknown_image(name, &listed));
            }
        }
    }
    // A full relock needs the old lock only for the change report, so a
    // broken one (say, a merge conflict) is replaced; a partial one keeps
    // entries from it and cannot.
    let previous = match Lock::read_optional(&path) {
        Ok(p) => p,
        Err(e) if only.is_none() => {
            eprintln!(
                "kiln: warning: replacing the unreadable {}: {e}",
                path.display()
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    let targets: Vec<&ImageSpec> = specs
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.contains(&s.full_name())))
        .collect();
    let mut needed = lock::needed_suites(&targets);
    for t in &toolchains {
        for suite in &t.suites {
            let archs = needed.entry(suite.clone()).or_default();
            archs.extend(t.archs.iter().copied());
            archs.extend(t.foreign.keys().copied());
            archs.insert(kiln::toolchain::BOOTSTRAP_ARCH);
        }
    }

    let mirrors = args.archive.discover()?;
    let mut sources = Vec::new();
    for (suite, archs) in &needed {
        sources.push((
            suite.clone(),
            mirrors.suite(suite)?,
            archs.iter().copied().collect::<Vec<_>>(),
        ));
    }
    let keyring = Keyring::load(&args.keyring)?;
    let http = Http::new()?;
    for (suite, src, archs) in &sources {
        let archs: Vec<&str> = archs.iter().map(|a| a.debian()).collect();
        eprintln!("{suite} ({}): {src}", archs.join(", "));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let now = release::now();
    let loaded = rt.block_on(async {
        let jobs = sources
            .iter()
            .map(|(suite, src, archs)| load_suite(&http, src, suite, archs, &keyring, now));
        futures_util::future::join_all(jobs).await
    });
    let mut indexes = BTreeMap::new();
    for ((suite, _, _), r) in sources.iter().zip(loaded) {
        indexes.insert(suite.clone(), r?);
    }
    // The bootstrap's pin is the NAR hash of busybox unpacked from its
    // .deb: computed here, once per new .deb, from the verified file.
    let mut busybox_nar = |p: &lock::Package| -> Result<String, String> {
        let base = mirrors.suite(&p.suite).map_err(|e| e.to_string())?.base;
        let url = format!("{base}/{}", p.filename);
        let bytes = rt
            .block_on(http.get_bytes(&url, p.size + 1))
            .map_err(|e| e.to_string())?;
        let got = kiln::digest::Digest::of(&bytes).hex();
        if got != p.sha256 {
            return Err(format!(
                "sha256 mismatch from {url}: expected {}, got {got}",
                p.sha256
            ));
        }
        let busybox = kiln::toolchain::busybox_from_deb(kiln::toolchain::BOOTSTRAP_PACKAGE, &bytes)
            .map_err(|e| e.to_string())?;
        Ok(kiln::toolchain::busybox_nar_hash(&busybox))
    };
    let (mut new, summary) = lock::build(
        &specs,
        &toolchains,
        &indexes,
        previous.as_ref(),
        only.as_ref(),
        &mut busybox_nar,
    )?;
    lock_wheels(project, &specs, &mut new)?;
    let unchanged = previous
        .as_ref()
        .is_some_and(|p| p.to_bytes() == new.to_bytes());
    if !unchanged {
        new.write(&path)?;
    }
    if args.json {
        super::output::json(&LockReport {
            lock: path.display().to_string(),
            written: !unchanged,
            changed: summary.changed(),
            summary: &summary,
            seconds: started.elapsed().as_secs_f64(),
        });
    } else {
        print!("{}", summary.render());
        let verb = if unchanged {
            "is up to date"
        } else {
            "written"
        };
        println!(
            "{} {verb} ({} images, {:.1}s)",
            path.display(),
            new.images.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(super::Outcome::Ok)
}

/// Pins the wheels of every Python application whose entry does not fit
/// its requirements file, Python version, archs and base glibc any more
/// (pip talks to the index; see `kiln::wheels`).
fn lock_wheels(project: &Path, specs: &[ImageSpec], new: &mut Lock) -> anyhow::Result<()> {
    for spec in specs {
        let Some(read) = kiln::wheels::requirements_of(project, spec) else {
            continue;
        };
        let read = read?;
        let digest = read.2;
        let name = spec.full_name();
        let base = spec.base.as_deref().unwrap_or_default();
        let mut libc = BTreeMap::new();
        for arch in &spec.archs {
            let version = new
                .images
                .get(base)
                .filter(|b| {
                    b.archs
                        .get(arch)
                        .is_some_and(|a| a.packages.iter().any(|p| p == "libc6"))
                })
                .and_then(|b| new.table(&b.release, *arch)?.get("libc6"))
                .map(|p| p.version.clone());
            if let Some(v) = version {
                libc.insert(*arch, v);
            }
        }
        let py = spec.build.as_ref().and_then(|b| b.python.as_ref());
        let current = new
            .images
            .get(&name)
            .and_then(|i| i.python.as_ref())
            .is_some_and(|p| {
                p.requirements == digest
                    && py.is_some_and(|py| py.version == p.python)
                    && spec.archs.iter().all(|a| {
                        let newest = libc
                            .get(a)
                            .and_then(|v| kiln::wheels::glibc_minor(v))
                            .and_then(|m| kiln::wheels::platforms(*a, m).first().cloned());
                        p.wheels.contains_key(a) && newest.as_ref() == p.platforms.get(a)
                    })
                    && p.wheels.len() == spec.archs.len()
            });
        if current {
            continue;
        }
        eprintln!("{name}: locking wheels with pip");
        let locked = kiln::wheels::resolve(spec, read, &libc, &super::fetch::tmp_dir(project))?;
        if let Some(image) = new.images.get_mut(&name) {
            image.python = locked;
        }
    }
    Ok(())
}

fn load_specs(project: &Path) -> anyhow::Result<Vec<ImageSpec>> {
    let defs = kiln::definition::load_project(project)?;
    let mut specs = Vec::new();
    for d in defs {
        specs.extend(
            d.definition
                .images()
                .with_context(|| d.path.display().to_string())?,
        );
    }
    Ok(specs)
}
