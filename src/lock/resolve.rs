//! Locking: resolving every image's package set against the signed
//! indexes into a new [`Lock`], keeping what did not change.

use super::*;

/// Which suites (and for which architectures) locking `specs` needs.
pub fn needed_suites(specs: &[&ImageSpec]) -> BTreeMap<String, BTreeSet<Arch>> {
    let mut out: BTreeMap<String, BTreeSet<Arch>> = BTreeMap::new();
    for s in specs {
        for suite in &s.suites {
            out.entry(suite.clone())
                .or_default()
                .extend(s.archs.iter().copied());
        }
    }
    out
}

/// Computes the bootstrap's NAR hash (hex) from its locked package: the
/// caller downloads and unpacks it ([`crate::toolchain::busybox_nar_hash`]).
pub type BusyboxNar<'a> = &'a mut dyn FnMut(&Package) -> Result<String, String>;

/// Builds a new lock. `specs` are all images of all definitions; `only`
/// limits resolution to those names (the others keep their entries from
/// `previous`, and their package versions are preferred so that shared
/// packages stay at one version); `indexes` must hold every suite the
/// resolved images use.
pub fn build(
    specs: &[ImageSpec],
    toolchains: &[Toolchain],
    indexes: &BTreeMap<String, SuiteIndex>,
    previous: Option<&Lock>,
    only: Option<&BTreeSet<String>>,
    busybox_nar: BusyboxNar<'_>,
) -> Result<(Lock, Summary), LockError> {
    if let Some(only) = only {
        for name in only {
            if !specs.iter().any(|s| &s.full_name() == name) {
                return Err(LockError::UnknownImage(name.clone()));
            }
        }
    }
    let targets: Vec<&ImageSpec> = specs
        .iter()
        .filter(|s| only.is_none_or(|o| o.contains(&s.full_name())))
        .collect();
    let empty = Lock::default();
    let prev = previous.unwrap_or(&empty);
    let mut lock = Lock::default();
    let mut summary = Summary::default();

    // Images kept from the previous lock (only with a partial update).
    let mut owner = Owners::new();
    let mut pins: BTreeMap<(String, Arch), BTreeMap<String, String>> = BTreeMap::new();
    if only.is_some() {
        for (name, entry) in &prev.images {
            if targets.iter().any(|t| &t.full_name() == name) {
                continue;
            }
            lock.images.insert(name.clone(), entry.clone());
            summary.kept.push(name.clone());
            let release = &entry.release;
            for (arch, plan) in &entry.archs {
                for p in &plan.packages {
                    let pkg = &prev.packages[release][arch][p];
                    lock.packages
                        .entry(release.clone())
                        .or_default()
                        .entry(*arch)
                        .or_default()
                        .insert(p.clone(), pkg.clone());
                    owner.insert(
                        (release.clone(), *arch, p.clone()),
                        (name.clone(), pkg.version.clone()),
                    );
                    pins.entry((release.clone(), *arch))
                        .or_default()
                        .insert(p.clone(), pkg.version.clone());
                    if let Some(src) = prev.sources.get(&pkg.suite) {
                        lock.sources.insert(pkg.suite.clone(), src.clone());
                    }
                }
            }
        }
    } else {
        let names: BTreeSet<String> = specs.iter().map(|s| s.full_name()).collect();
        summary.dropped = prev
            .images
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
    }

    let mut sorted = targets.clone();
    sorted.sort_by_key(|s| s.full_name());
    let mut universes: BTreeMap<(Vec<String>, Arch), Universe> = BTreeMap::new();
    for spec in sorted {
        let image = spec.full_name();
        let release = spec
            .release()
            .map_err(|e| LockError::Release {
                image: image.clone(),
                message: e.to_string(),
            })?
            .codename
            .to_string();
        let mut created = 0i64;
        let mut archs = BTreeMap::new();
        let mut changes = BTreeMap::new();
        for suite in &spec.suites {
            let idx = indexes.get(suite).ok_or_else(|| LockError::NotLoaded {
                image: image.clone(),
                suite: suite.clone(),
                arch: spec.archs[0],
            })?;
            lock.sources.insert(suite.clone(), source_entry(idx));
        }
        let mut archs_sorted = spec.archs.clone();
        archs_sorted.sort();
        for arch in archs_sorted {
            // Building a universe indexes ~63,000 packages: once per suite list and arch.
            let key = (spec.suites.clone(), arch);
            if !universes.contains_key(&key) {
                universes.insert(key.clone(), universe(spec, indexes, arch, &image)?);
            }
            let universe = &universes[&key];
            let req = Request {
                roots: spec.packages.include.iter().map(|p| p.0.clone()).collect(),
                exclude: spec.packages.exclude.iter().map(|p| p.0.clone()).collect(),
                pins: pins
                    .get(&(release.clone(), arch))
                    .cloned()
                    .unwrap_or_default(),
            };
            let resolved = match resolve(universe, &req) {
                Ok(r) => r,
                Err(ResolveError::UnknownPackage {
                    name, arch, suites, ..
                }) => {
                    let hint = other_arch_hint(spec, indexes, arch, &name, &image)?;
                    return Err(LockError::Resolve {
                        image,
                        error: Box::new(ResolveError::UnknownPackage {
                            name,
                            arch,
                            suites,
                            hint,
                        }),
                    });
                }
                Err(e) => {
                    return Err(LockError::Resolve {
                        image,
                        error: Box::new(e),
                    })
                }
            };
            summary.warnings.extend(
                resolved
                    .accepted_conflicts
                    .iter()
                    .map(|c| format!("image {image}: {c}")),
            );
            let mut sizes = BTreeMap::new();
            for (name, cand) in &resolved.packages {
                let pkg = pin(
                    &mut lock.packages,
                    &mut owner,
                    (&release, arch),
                    name,
                    cand,
                    &image,
                )?;
                sizes.insert(name.clone(), pkg.size);
                created = created.max(indexes[cand.suite].release.epoch);
            }
            let packages: Vec<String> = resolved.packages.keys().cloned().collect();
            let mut deps = resolved.deps.clone();
            for p in &packages {
                deps.entry(p.clone()).or_default();
            }
            let layers = plan_layers(&deps, &sizes, spec.layer_budget);
            let prev_image = prev.images.get(&image);
            let before = prev_image
                .and_then(|i| i.archs.get(&arch))
                .map(|a| a.packages.as_slice());
            changes.insert(
                arch,
                diff(
                    before,
                    &packages,
                    prev_image.and_then(|i| prev.table(&i.release, arch)),
                    lock.table(&release, arch),
                ),
            );
            archs.insert(arch, ImageArch { packages, layers });
        }
        // The newest index date moves every day (the security suite is
        // re-signed daily); an image whose packages did not change keeps its
        // creation time, so its digest does not move on a no-op relock.
        if unchanged(prev, &image, &release, &archs, &lock) {
            created = prev.images[&image].created;
        }
        lock.images.insert(
            image.clone(),
            Image {
                release,
                inputs: spec.lock_inputs(),
                created,
                archs,
                // Wheels are pinned by the caller (`wheels::resolve`, which
                // needs pip); it keeps these while they still fit.
                python: prev.images.get(&image).and_then(|i| i.python.clone()),
            },
        );
        summary.images.insert(image, changes);
    }
    // An application has no packages of its own: it is dated like the base
    // it is built on, so it moves exactly when the base does.
    // Its release is its base's too: the packages it runs on.
    for spec in specs.iter().filter(|s| s.base.is_some()) {
        let base = spec.base.as_deref().expect("filtered");
        let (created, release) = lock
            .images
            .get(base)
            .map(|b| (b.created, b.release.clone()))
            .ok_or_else(|| LockError::UnknownBase {
                image: spec.full_name(),
                base: base.to_string(),
            })?;
        if let Some(app) = lock.images.get_mut(&spec.full_name()) {
            app.created = created;
            app.release = release;
        }
    }
    resolve_toolchains(
        &mut lock,
        &mut summary,
        &mut owner,
        toolchains,
        indexes,
        prev,
        busybox_nar,
    )?;
    for (suite, src) in &lock.sources {
        summary.sources.insert(suite.clone(), src.date.clone());
    }
    lock.validate().map_err(|message| LockError::Invalid {
        path: PathBuf::from(FILE_NAME),
        message,
    })?;
    Ok((lock, summary))
}

pub(super) fn source_entry(idx: &SuiteIndex) -> LockedSuite {
    let r = &idx.release;
    LockedSuite {
        codename: r.codename.clone(),
        suite: r.suite.clone(),
        date: r.date.clone(),
        epoch: r.epoch,
        in_release: r.in_release,
        signer: r.signer.clone(),
        indexes: idx.indexes.clone(),
    }
}

pub(super) fn universe<'a>(
    spec: &ImageSpec,
    indexes: &'a BTreeMap<String, SuiteIndex>,
    arch: Arch,
    image: &str,
) -> Result<Universe<'a>, LockError> {
    suites_universe(&spec.suites, indexes, arch, image)
}

/// The packages of `suites` for `arch`; `owner` names what needs them.
fn suites_universe<'a>(
    suites: &[String],
    indexes: &'a BTreeMap<String, SuiteIndex>,
    arch: Arch,
    image: &str,
) -> Result<Universe<'a>, LockError> {
    let mut sources = Vec::new();
    for suite in suites {
        let idx = indexes.get(suite).ok_or_else(|| LockError::NotLoaded {
            image: image.to_string(),
            suite: suite.clone(),
            arch,
        })?;
        let pkgs = idx
            .packages
            .get(&arch)
            .ok_or_else(|| LockError::NotLoaded {
                image: image.to_string(),
                suite: suite.clone(),
                arch,
            })?;
        sources.push((idx.release.name.as_str(), pkgs.as_slice()));
    }
    Ok(Universe::new(arch, &sources))
}

/// " (it exists for arm64)": an unknown package that exists for another of
/// the image's architectures is an arch-specific gap, worth saying so.
pub(super) fn other_arch_hint(
    spec: &ImageSpec,
    indexes: &BTreeMap<String, SuiteIndex>,
    arch: Arch,
    name: &str,
    image: &str,
) -> Result<String, LockError> {
    Ok(known_elsewhere(
        &spec.suites,
        &spec.archs,
        indexes,
        arch,
        name,
        image,
    ))
}

/// " (it exists for arm64: only amd64 lacks it)" when `name` is in
/// `suites` for another of `archs` (whose indexes are loaded), else "".
fn known_elsewhere(
    suites: &[String],
    archs: &[Arch],
    indexes: &BTreeMap<String, SuiteIndex>,
    arch: Arch,
    name: &str,
    owner: &str,
) -> String {
    let found: Vec<String> = archs
        .iter()
        .filter(|other| **other != arch)
        .filter(|other| {
            suites_universe(suites, indexes, **other, owner).is_ok_and(|u| u.knows(name))
        })
        .map(|a| a.to_string())
        .collect();
    if found.is_empty() {
        String::new()
    } else {
        format!(
            " (it exists for {}: only {arch} lacks it)",
            found.join(", ")
        )
    }
}

/// Whether `image` resolves to exactly the .debs (and layer plan) it had in
/// `prev`.
pub(super) fn unchanged(
    prev: &Lock,
    image: &str,
    release: &str,
    archs: &BTreeMap<Arch, ImageArch>,
    lock: &Lock,
) -> bool {
    let Some(before) = prev.images.get(image) else {
        return false;
    };
    before.archs == *archs
        && before.release == release
        && archs.iter().all(|(arch, a)| {
            a.packages.iter().all(|n| {
                let old = prev.table(release, *arch).and_then(|m| m.get(n));
                let new = lock.table(release, *arch).and_then(|m| m.get(n));
                matches!((old, new), (Some(o), Some(n)) if o.sha256 == n.sha256)
            })
        })
}

/// What changed between the package list an image or toolchain had
/// (`before`, with the old lock's `old` packages of that arch) and has now.
pub(super) fn diff(
    before: Option<&[String]>,
    now: &[String],
    old: Option<&BTreeMap<String, Package>>,
    pkgs: Option<&BTreeMap<String, Package>>,
) -> ArchChange {
    let version = |m: Option<&BTreeMap<String, Package>>, n: &str| {
        m.and_then(|m| m.get(n))
            .map(|p| p.version.clone())
            .unwrap_or_default()
    };
    let before: BTreeSet<&String> = before.map(|b| b.iter().collect()).unwrap_or_default();
    let after: BTreeSet<&String> = now.iter().collect();
    let mut c = ArchChange {
        packages: now.len(),
        ..Default::default()
    };
    for n in after.difference(&before) {
        c.added.push(Versioned {
            name: (*n).clone(),
            version: version(pkgs, n),
        });
    }
    for n in before.difference(&after) {
        c.removed.push(Versioned {
            name: (*n).clone(),
            version: version(old, n),
        });
    }
    for n in after.intersection(&before) {
        let (from, to) = (version(old, n), version(pkgs, n));
        if from != to {
            let up = match (
                from.parse::<debversion::Version>(),
                to.parse::<debversion::Version>(),
            ) {
                (Ok(a), Ok(b)) => b > a,
                _ => true,
            };
            let ch = Changed {
                name: (*n).clone(),
                from,
                to,
            };
            if up {
                c.upgraded.push(ch);
            } else {
                c.downgraded.push(ch);
            }
        }
    }
    c
}

/// Who pinned each (release, arch, package) first, and at which version:
/// what a conflict names.
type Owners = BTreeMap<(String, Arch, String), (String, String)>;

/// Records `cand` as `name`'s entry in `packages.<release>.<arch>` for `who`
/// (an image or toolchain), unless another already pinned another .deb
/// under that name: a lock holds one version per package, arch and
/// release. The same .deb may be offered by two suites; which one it came
/// from does not matter.
fn pin(
    packages: &mut BTreeMap<String, PackageTable>,
    owner: &mut Owners,
    (release, arch): (&str, Arch),
    name: &str,
    cand: &crate::debian::resolve::Candidate<'_>,
    who: &str,
) -> Result<Package, LockError> {
    let pkg = Package {
        version: cand.pkg.version_text.clone(),
        architecture: cand.pkg.architecture.clone(),
        source: cand.pkg.source.clone(),
        source_version: cand.pkg.source_version.clone(),
        suite: cand.suite.to_string(),
        filename: cand.pkg.filename.clone(),
        sha256: cand.pkg.sha256.clone(),
        size: cand.pkg.size,
    };
    let slot = packages
        .entry(release.to_string())
        .or_default()
        .entry(arch)
        .or_default();
    let key = (release.to_string(), arch, name.to_string());
    match slot.get(name) {
        Some(existing) if (&existing.version, &existing.sha256) != (&pkg.version, &pkg.sha256) => {
            let (other, version_a) = owner.get(&key).cloned().unwrap_or_default();
            Err(LockError::Conflict(Box::new(Conflict {
                release: release.to_string(),
                arch,
                name: name.to_string(),
                image_a: other,
                version_a,
                image_b: who.to_string(),
                version_b: pkg.version,
            })))
        }
        Some(_) => Ok(pkg),
        None => {
            slot.insert(name.to_string(), pkg.clone());
            owner.insert(key, (who.to_string(), pkg.version.clone()));
            Ok(pkg)
        }
    }
}

/// Resolves every toolchain (after the images, whose versions it keeps:
/// a lock holds one version per package and arch) and the bootstrap
/// package. The bootstrap's NAR hash is carried over from `prev` when its
/// .deb did not change, else computed by `busybox_nar` from the package.
fn resolve_toolchains(
    lock: &mut Lock,
    summary: &mut Summary,
    owner: &mut Owners,
    toolchains: &[Toolchain],
    indexes: &BTreeMap<String, SuiteIndex>,
    prev: &Lock,
    busybox_nar: BusyboxNar<'_>,
) -> Result<(), LockError> {
    use crate::toolchain::{BOOTSTRAP_ARCH, BOOTSTRAP_PACKAGE};
    // The bootstrap is resolved like a toolchain of one package, from the
    // first toolchain's suites.
    let bootstrap = toolchains.first().map(|first| Toolchain {
        name: "bootstrap".to_string(),
        description: String::new(),
        archs: vec![BOOTSTRAP_ARCH],
        suites: first.suites.clone(),
        packages: vec![crate::spec::PackageName(BOOTSTRAP_PACKAGE.to_string())],
        exclude: Vec::new(),
        versions: BTreeMap::new(),
        links: BTreeMap::new(),
        foreign: BTreeMap::new(),
    });
    let wanted = toolchains
        .iter()
        .map(|t| (t, true))
        .chain(bootstrap.iter().map(|t| (t, false)));
    for (t, is_toolchain) in wanted {
        let name = t.name.clone();
        let (suites, archs) = (&t.suites, &t.archs);
        let include: Vec<String> = t.packages.iter().map(|p| p.0.clone()).collect();
        let exclude: Vec<String> = t.exclude.iter().map(|p| p.0.clone()).collect();
        let what = format!("toolchain {name}");
        let release = Release::of_suites(suites)
            .map_err(|e| LockError::Release {
                image: what.clone(),
                message: e.to_string(),
            })?
            .codename
            .to_string();
        for suite in suites {
            let idx = indexes.get(suite).ok_or_else(|| LockError::NotLoaded {
                image: what.clone(),
                suite: suite.clone(),
                arch: archs[0],
            })?;
            lock.sources.insert(suite.clone(), source_entry(idx));
        }
        let mut locked_archs = BTreeMap::new();
        let mut changes = BTreeMap::new();
        let mut sorted = archs.clone();
        sorted.sort();
        for arch in sorted {
            let universe = suites_universe(suites, indexes, arch, &what)?;
            // The images' versions, then the toolchain's own holds.
            let mut pins: BTreeMap<String, String> = lock
                .table(&release, arch)
                .map(|m| {
                    m.iter()
                        .map(|(n, p)| (n.clone(), p.version.clone()))
                        .collect()
                })
                .unwrap_or_default();
            pins.extend(t.versions.clone());
            let req = Request {
                roots: include.clone(),
                exclude: exclude.clone(),
                pins,
            };
            let resolved = resolve(&universe, &req).map_err(|e| {
                // Say when only the build machine's arch lacks it (a
                // package the suites build for other archs only).
                let e = match e {
                    ResolveError::UnknownPackage {
                        name: pkg,
                        arch,
                        suites: searched,
                        ..
                    } => {
                        let hint = known_elsewhere(
                            suites,
                            &[Arch::Amd64, Arch::Arm64],
                            indexes,
                            arch,
                            &pkg,
                            &what,
                        );
                        ResolveError::UnknownPackage {
                            name: pkg,
                            arch,
                            suites: searched,
                            hint,
                        }
                    }
                    e => e,
                };
                LockError::ResolveToolchain {
                    toolchain: name.clone(),
                    error: Box::new(e),
                }
            })?;
            for (pkg_name, cand) in &resolved.packages {
                pin(
                    &mut lock.packages,
                    owner,
                    (&release, arch),
                    pkg_name,
                    cand,
                    &what,
                )?;
            }
            for (held, version) in &t.versions {
                let got = resolved
                    .packages
                    .get(held)
                    .map(|c| c.pkg.version_text.as_str());
                if got != Some(version.as_str()) {
                    return Err(LockError::Held {
                        toolchain: name.clone(),
                        arch,
                        package: held.clone(),
                        version: version.clone(),
                        got: got.unwrap_or("nothing (not in the closure)").to_string(),
                    });
                }
            }
            let packages: Vec<String> = resolved.packages.keys().cloned().collect();
            let prev_toolchain = prev.toolchains.get(&name);
            let before = prev_toolchain
                .and_then(|t| t.archs.get(&arch))
                .map(|p| p.as_slice());
            changes.insert(
                arch,
                diff(
                    before,
                    &packages,
                    prev_toolchain.and_then(|t| prev.table(&t.release, arch)),
                    lock.table(&release, arch),
                ),
            );
            locked_archs.insert(arch, packages);
        }
        let mut foreign = BTreeMap::new();
        for (farch, names) in &t.foreign {
            let universe = suites_universe(suites, indexes, *farch, &what)?;
            // The build machine's source versions: a target library must
            // be the very build of the compiler it goes with.
            let sources: BTreeMap<String, String> = locked_archs
                .iter()
                .flat_map(|(a, pkgs)| pkgs.iter().map(move |p| (*a, p)))
                .filter_map(|(a, p)| lock.table(&release, a)?.get(p))
                .map(|p| (p.source.clone(), p.source_version.clone()))
                .collect();
            let mut pinned = Vec::new();
            for n in names {
                let versions = universe.versions(&n.0);
                let cand = versions
                    .iter()
                    .find(|c| {
                        sources
                            .get(&c.pkg.source)
                            .is_none_or(|v| *v == c.pkg.source_version)
                    })
                    .ok_or_else(|| LockError::ResolveToolchain {
                        toolchain: name.clone(),
                        error: Box::new(ResolveError::UnknownPackage {
                            name: n.0.clone(),
                            arch: *farch,
                            suites: suites.join(", "),
                            hint: if versions.is_empty() {
                                String::new()
                            } else {
                                " (foreign: no version is built from the same source version as the toolchain's own packages)".into()
                            },
                        }),
                    })?;
                pin(
                    &mut lock.packages,
                    owner,
                    (&release, *farch),
                    &n.0,
                    cand,
                    &what,
                )?;
                pinned.push(n.0.clone());
            }
            pinned.sort();
            foreign.insert(*farch, pinned);
        }
        if is_toolchain {
            let def = toolchains
                .iter()
                .find(|t| t.name == name)
                .expect("listed above");
            lock.toolchains.insert(
                name.clone(),
                LockedToolchain {
                    release,
                    inputs: def.lock_inputs(),
                    archs: locked_archs,
                    foreign,
                },
            );
            summary.toolchains.insert(name, changes);
        } else {
            let same_deb = |l: &Lock, release: &str| {
                l.table(release, BOOTSTRAP_ARCH)
                    .and_then(|m| m.get(BOOTSTRAP_PACKAGE))
                    .map(|p| p.sha256.clone())
            };
            let nar_hash = match &prev.bootstrap {
                Some(b)
                    if same_deb(prev, &b.release) == same_deb(lock, &release)
                        && b.package == BOOTSTRAP_PACKAGE =>
                {
                    b.nar_hash.clone()
                }
                _ => {
                    let p = &lock.packages[&release][&BOOTSTRAP_ARCH][BOOTSTRAP_PACKAGE];
                    busybox_nar(p).map_err(|message| LockError::Bootstrap {
                        package: format!("{BOOTSTRAP_PACKAGE} {}", p.version),
                        message,
                    })?
                }
            };
            lock.bootstrap = Some(Bootstrap {
                release,
                arch: BOOTSTRAP_ARCH,
                package: BOOTSTRAP_PACKAGE.to_string(),
                nar_hash,
            });
        }
    }
    Ok(())
}
