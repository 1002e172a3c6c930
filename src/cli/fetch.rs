//! `kiln fetch`: download the locked .debs into the Nix store.

use anyhow::Context;
use kiln::debian::http::Http;
use kiln::debian::sources::Mirrors;
use kiln::fetch::{self, Options, DEFAULT_JOBS};
use kiln::lock::Lock;
use kiln::spec::Arch;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Download every .deb pinned in kiln.lock into the Nix store.
///
/// Each file is verified against the lock's size and sha256 and added with
/// `nix-store --add-fixed sha256` under the name of the fixed-output
/// derivation the flake declares, so `nix build` needs no network. Files
/// already in the store are skipped. Without an image filter, the
/// toolchains' packages come too, and busybox, the bootstrap, is unpacked
/// from its .deb and added under the NAR hash the lock pins; and the crates
/// of nix/seed/Cargo.lock and Cargo.lock, which the flake compiles in the
/// sandbox, are added from cargo's cache (after `cargo fetch --locked`;
/// `KILN_CARGO` names another cargo), each checked against its checksum. A file the mirror no longer has means
/// the lock is stale: every such entry is listed; run `kiln lock --update`.
///
/// Examples:
///   kiln fetch                     everything in the lock, all architectures
///   kiln fetch scratch-plus --arch arm64
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Only the packages of these images (`name` or `name-variant`). Default: all.
    pub images: Vec<String>,

    /// Only this architecture (repeatable). Default: all in the lock.
    #[arg(long, value_name = "ARCH", value_parser = parse_arch)]
    pub arch: Vec<Arch>,

    /// Concurrent downloads.
    #[arg(long, short = 'j', default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// A snapshot archive of Debian (Debian's own, or a mirror of
    /// it laid out the same way: URL/archive/debian/<YYYYMMDDTHHMMSSZ>/...)
    /// to fetch a pinned .deb from when the mirror no longer has it: the
    /// archive as it was when kiln.lock's signed index was made.
    #[arg(long, env = "KILN_SNAPSHOT", value_name = "URL")]
    pub snapshot: Option<String>,

    #[command(flatten)]
    pub archive: super::mirror::MirrorArgs,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    Arch::parse(s).ok_or_else(|| format!("unknown architecture {s:?} (amd64 or arm64)"))
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<()> {
    let path = Lock::path_in(project);
    let lock = Lock::read(&path)?;
    let images = (!args.images.is_empty()).then_some(args.images.as_slice());
    // A name that is no definition is a typo, not a stale lock (a project
    // of a lock alone has no definitions to compare with).
    if images.is_some() && project.join("images").is_dir() {
        let known = kiln::definition::image_names(&project.join("images"))?;
        if let Some(bad) = args.images.iter().find(|i| !known.contains(i)) {
            anyhow::bail!("{}", kiln::definition::unknown_image(bad, &known));
        }
    }
    let archs = (!args.arch.is_empty()).then_some(args.arch.as_slice());
    let items = fetch::items(lock.select(images, archs)?);
    let mirrors = args.archive.discover()?;
    let http = Http::new()?;
    let opts = Options {
        jobs: args.jobs,
        tmp_dir: tmp_dir(project),
        progress: !args.json && std::io::stderr().is_terminal(),
        snapshot: args
            .snapshot
            .as_deref()
            .map(|root| fetch::Snapshot::new(root, &lock)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut report = rt.block_on(fetch::fetch(&http, &mirrors, items, &opts))?;
    report.wheels = kiln::wheels::fetch(&lock, images, archs, &opts.tmp_dir)?;
    // The bootstrap comes with a whole-lock fetch (it unpacks toolchains,
    // which belong to no image).
    if images.is_none() && archs.is_none_or(|a| a.contains(&kiln::toolchain::BOOTSTRAP_ARCH)) {
        report.bootstrap = fetch::add_bootstrap(&lock, &opts.tmp_dir)?.map(|(path, _)| path);
        add_crates(project, kiln::crates::cargo_locks(project), &mut report)?;
        // A project's own flake names its kiln (a lock alone builds
        // nothing, so it needs no seed).
        if !kiln::project::is_kiln_source(project) && project.join("flake.nix").is_file() {
            let snapshot = args.snapshot.as_deref();
            report.seed = Some(seed_inputs(project, &http, &mirrors, &opts, snapshot, &rt)?);
        }
    }
    if args.json {
        super::output::json(&report);
    } else {
        println!("{}", report.line());
        for (lock_file, c) in &report.crates {
            println!(
                "{lock_file}: crates added {}, present {}",
                c.added, c.present
            );
        }
        if report.wheels.added + report.wheels.present > 0 {
            println!(
                "wheels: added {}, present {}",
                report.wheels.added, report.wheels.present
            );
        }
        if let Some(b) = &report.bootstrap {
            println!("bootstrap: {b}");
        }
        match &report.seed {
            Some(s) if s.present => println!("kiln's seed: in the store ({})", s.store_path),
            Some(s) => {
                if let Some(r) = &s.inputs {
                    println!("kiln's seed inputs: {}", r.line());
                    if let Some(b) = &r.bootstrap {
                        println!("kiln's bootstrap: {b}");
                    }
                    for (lock_file, c) in &r.crates {
                        println!(
                            "kiln's {lock_file}: crates added {}, present {}",
                            c.added, c.present
                        );
                    }
                }
            }
            None => {}
        }
    }
    Ok(())
}

/// The crates of the Cargo.lock files `locks` (relative to `dir`) that
/// exist, into the store; what was added goes into `report`.
fn add_crates(
    dir: &Path,
    locks: Vec<(String, kiln::crates::Workspace)>,
    report: &mut fetch::Report,
) -> anyhow::Result<()> {
    let cargo: Vec<String> = match std::env::var("KILN_CARGO") {
        Ok(c) if !c.trim().is_empty() => c.split_whitespace().map(String::from).collect(),
        _ => vec!["cargo".to_string()],
    };
    for (rel, workspace) in locks {
        let lock_file = dir.join(&rel);
        if lock_file.is_file() {
            let home = kiln::crates::default_cargo_home();
            let added = kiln::crates::add(&lock_file, workspace, &home, &cargo)?;
            report.crates.insert(rel, added);
        }
    }
    Ok(())
}

/// For a project whose kiln is its flake input: what compiling kiln's
/// seed in the sandbox needs, from kiln's own lock (its bootstrap, the
/// .debs of its Rust toolchain, the seed's crates), unless the pinned seed
/// is in the store already (built before, or substituted from a cache).
fn seed_inputs(
    project: &Path,
    http: &Http,
    mirrors: &Mirrors,
    opts: &Options,
    snapshot: Option<&str>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<fetch::SeedInputs> {
    let kiln_dir = kiln::project::kiln_source(project)?;
    let pin = kiln::seedbuild::Pin::read(&kiln_dir)?;
    if kiln::nixstore::is_valid(&pin.store_path) {
        return Ok(fetch::SeedInputs {
            store_path: pin.store_path,
            present: true,
            inputs: None,
        });
    }
    let lock_path = Lock::path_in(&kiln_dir);
    let lock = Lock::read(&lock_path)?;
    let items = fetch::items(lock.select_toolchain(kiln::seedbuild::TOOLCHAIN)?);
    // Snapshot times come from the lock the packages were pinned in: kiln's.
    let opts = Options {
        jobs: opts.jobs,
        tmp_dir: opts.tmp_dir.clone(),
        progress: opts.progress,
        snapshot: snapshot.map(|root| fetch::Snapshot::new(root, &lock)),
    };
    let mut report = rt.block_on(fetch::fetch(http, mirrors, items, &opts))?;
    report.bootstrap = fetch::add_bootstrap(&lock, &opts.tmp_dir)?.map(|(path, _)| path);
    let seed_lock = format!("{}/Cargo.lock", kiln::seedbuild::CRATE_DIR);
    add_crates(
        &kiln_dir,
        vec![(seed_lock, kiln::crates::Workspace::Standalone)],
        &mut report,
    )?;
    Ok(fetch::SeedInputs {
        store_path: pin.store_path,
        present: false,
        inputs: Some(Box::new(report)),
    })
}

/// `<project>/.kiln/tmp` when it can be created (same file system as the
/// project, cleaned up per run), else the system temporary directory.
pub(super) fn tmp_dir(project: &Path) -> PathBuf {
    let p = project.join(".kiln").join("tmp");
    if std::fs::create_dir_all(&p).is_ok() {
        p
    } else {
        std::env::temp_dir()
    }
}
