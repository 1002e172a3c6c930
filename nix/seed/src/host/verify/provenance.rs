//! kiln's SLSA provenance: the parameter types `kiln build` writes
//! (docs/provenance.md) and the checks the verifier runs on a verified
//! provenance statement: build type, isolation, builder id, age, archs,
//! and that the recorded .debs are exactly the lock's for the image.

use super::checks::VerifiedStatement;
use super::report::Report;
use super::walk::Image;
use crate::attest::statement::Provenance;
use crate::release::{self, Release};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `buildDefinition.buildType` of a kiln build (docs/provenance.md).
pub const KILN_BUILD_TYPE: &str = "https://kiln.dev/buildtypes/nix-oci/v1";
/// `runDetails.builder.id` prefix of a build on a developer machine.
pub const LOCAL_BUILDER_PREFIX: &str = "https://kiln.dev/builders/local@";
/// How far in the future a `finishedOn` may be (clock skew between the
/// build machine and the verifier) before it is refused.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// `buildDefinition.externalParameters`: everything the person starting
/// the build chose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    /// The definition's name (`images/<image>/image.toml`).
    pub image: String,
    pub variant: Option<String>,
    /// The flake attribute built (`<image>[-<variant>][-<arch>]`).
    pub flake_attribute: String,
    pub archs: Vec<String>,
    pub source: SourceParameter,
    pub lock: FileParameter,
    pub definition: FileParameter,
    /// Whether the policies were enforced (`kiln build --skip-policy` turns
    /// them off, and that choice is recorded here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyParameter>,
}

/// The policy choices of a build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyParameter {
    /// False when the build was told to go on despite denied rules.
    pub enforced: bool,
    /// The user's policy directories besides kiln's defaults.
    #[serde(default)]
    pub extra_policies: Vec<String>,
}

impl ExternalParameters {
    /// The key of the image in kiln.lock's `images`.
    pub fn full_name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}-{v}", self.image),
            None => self.image.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceParameter {
    /// `git+<origin URL>` or `git+file://<checkout>`.
    pub uri: String,
    /// The commit checked out (`None` outside a git checkout).
    pub revision: Option<String>,
    /// Whether the work tree had uncommitted changes (then the revision
    /// alone does not reproduce the build).
    pub dirty: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileParameter {
    /// Relative to the source tree.
    pub path: String,
    /// `sha256:<hex>` of the file as built.
    pub digest: String,
}

/// `buildDefinition.internalParameters`: what the build platform set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    /// Nix's version and effective sandbox settings.
    pub nix: Value,
    /// True only when the driver checked that the Nix sandbox was on
    /// (sandbox = true, sandbox-fallback = false, no sandbox-paths).
    pub isolated: bool,
    /// How the build was isolated, or why it was not.
    pub isolation: String,
    /// The seed (the only builder inside the sandbox).
    pub seed: String,
    /// The outcome of the policy evaluation: `{denied, warnings, rules}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
}

/// Epoch seconds of an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if !crate::attest::statement::is_rfc3339(s) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let days = crate::date::days_from_civil(y, mo, d);
    let mut t = days * 86_400 + h * 3600 + mi * 60 + se;
    let tz = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(sign) = tz.chars().next().filter(|c| *c == '+' || *c == '-') {
        let off = n(s.len() - 5..s.len() - 3)? * 3600 + n(s.len() - 2..s.len())? * 60;
        t -= if sign == '+' { off } else { -off };
    }
    Some(t)
}

/// `30d`, `12h`, `90m`, `45s` or plain seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num.parse().ok().filter(|n| *n >= 0)?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn duration_text(secs: i64) -> String {
    if secs >= 86_400 {
        format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600)
    } else if secs >= 3600 {
        format!("{}h{}m", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{secs}s")
    }
}

/// What the provenance checks need besides the statement.
pub struct Expectations<'a> {
    pub builder_id: Option<&'a str>,
    pub source: Option<&'a Path>,
    pub max_age: Option<i64>,
    pub now: i64,
}

/// The purl kiln records for a locked .deb: the SBOMs' own.
pub use crate::sbom::deb_purl_of as deb_purl;

/// (purl, sha256 hex) of every .deb kiln.lock pins for `image` on `archs`.
pub fn locked_debs(
    lock: &Value,
    image: &str,
    archs: &[String],
) -> Result<BTreeSet<(String, String)>, String> {
    let entry = lock["images"]
        .get(image)
        .ok_or_else(|| format!("kiln.lock has no image {image}"))?;
    let what = format!("image {image}");
    let mut out = BTreeSet::new();
    for arch in archs {
        let names = entry["archs"][arch]["packages"]
            .as_array()
            .ok_or_else(|| format!("kiln.lock has no {arch} package set for {image}"))?;
        out.extend(pinned_debs(lock, entry, &what, arch, names)?);
    }
    Ok(out)
}

/// (purl, sha256 hex) of every .deb kiln.lock pins for toolchain `name` on `arch`.
pub fn toolchain_debs(
    lock: &Value,
    name: &str,
    arch: &str,
) -> Result<BTreeSet<(String, String)>, String> {
    let entry = &lock["toolchains"][name];
    let names = entry["archs"][arch]
        .as_array()
        .ok_or_else(|| format!("kiln.lock has no {arch} packages for toolchain {name}"))?;
    pinned_debs(lock, entry, &format!("toolchain {name}"), arch, names)
}

/// (purl, sha256 hex) of the locked packages `names` of `entry` (an image
/// or a toolchain) on `arch`. The lock keys its packages by the entry's
/// release; a lock of format 1 had one table, of the default release.
fn pinned_debs(
    lock: &Value,
    entry: &Value,
    what: &str,
    arch: &str,
    names: &[Value],
) -> Result<BTreeSet<(String, String)>, String> {
    let (table, release) = match entry.get("release") {
        None => (&lock["packages"][arch], release::DEFAULT),
        Some(r) => {
            let codename = r.as_str().unwrap_or_default();
            let release = Release::by_codename(codename).ok_or_else(|| {
                format!("kiln.lock: {what}: {r} is not a Debian release kiln knows")
            })?;
            (&lock["packages"][codename][arch], release)
        }
    };
    let distro = release.distro();
    let mut out = BTreeSet::new();
    for name in names {
        let name = name.as_str().unwrap_or_default();
        let p = &table[name];
        let field = |f: &str| {
            p[f].as_str().map(String::from).ok_or_else(|| {
                format!(
                    "kiln.lock: {} {arch} package {name} has no {f}",
                    release.codename
                )
            })
        };
        out.insert((
            deb_purl(name, &field("version")?, &field("architecture")?, &distro),
            field("sha256")?,
        ));
    }
    Ok(out)
}

/// The annotation that marks what the seed was compiled from (the image's
/// own packages carry none).
pub const SEED_ROLE: &str = "seed";

/// (purl, sha256 hex) of the .debs in the provenance's resolvedDependencies
/// with annotation `role` equal to `role` (`None`: without one, the image's).
pub fn recorded_debs(p: &Provenance, role: Option<&str>) -> BTreeSet<(String, String)> {
    p.build_definition
        .resolved_dependencies
        .iter()
        .filter(|d| d.uri.starts_with("pkg:deb/"))
        .filter(|d| d.annotations.get("role").and_then(|r| r.as_str()) == role)
        .map(|d| {
            (
                d.uri.clone(),
                d.digest.get("sha256").cloned().unwrap_or_default(),
            )
        })
        .collect()
}

fn compare_debs(
    recorded: &BTreeSet<(String, String)>,
    locked: &BTreeSet<(String, String)>,
) -> Result<(), String> {
    let by_purl = |s: &BTreeSet<(String, String)>| -> BTreeMap<String, String> {
        s.iter().cloned().collect()
    };
    let (rec, lck) = (by_purl(recorded), by_purl(locked));
    let mut problems = Vec::new();
    for (purl, sha) in &rec {
        match lck.get(purl) {
            None => problems.push(format!("{purl} is not in the lock")),
            Some(l) if l != sha => {
                problems.push(format!("{purl} has sha256 {sha}, the lock pins {l}"))
            }
            _ => {}
        }
    }
    for purl in lck.keys().filter(|p| !rec.contains_key(*p)) {
        problems.push(format!("{purl} (locked) is missing"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Runs every provenance check on `v` (already signature-verified and
/// subject-checked by the caller).
pub fn check(report: &mut Report, v: &VerifiedStatement, image: &Image, exp: &Expectations) {
    let p = match v.statement.slsa_provenance() {
        Ok(p) => p,
        Err(e) => {
            report.fail("provenance", e.to_string());
            return;
        }
    };
    let bd = &p.build_definition;
    if bd.build_type != KILN_BUILD_TYPE {
        report.fail(
            "provenance",
            format!(
                "buildType is {:?}, not kiln's {KILN_BUILD_TYPE}",
                bd.build_type
            ),
        );
        return;
    }
    report.pass("provenance", format!("buildType {KILN_BUILD_TYPE}"));
    let ext: ExternalParameters = match serde_json::from_value(bd.external_parameters.clone()) {
        Ok(e) => e,
        Err(e) => {
            report.fail(
                "provenance",
                format!("externalParameters are not kiln's: {e}"),
            );
            return;
        }
    };
    match serde_json::from_value::<InternalParameters>(bd.internal_parameters.clone()) {
        Ok(i) if i.isolated => report.pass("isolation", format!("built isolated: {}", i.isolation)),
        Ok(i) => report.fail(
            "isolation",
            format!("built WITHOUT isolation: {}", i.isolation),
        ),
        Err(e) => report.fail(
            "isolation",
            format!("internalParameters do not record isolation: {e}"),
        ),
    }

    let denied = serde_json::from_value::<InternalParameters>(bd.internal_parameters.clone())
        .ok()
        .and_then(|i| i.policy)
        .and_then(|o| o.get("denied").and_then(Value::as_u64));
    match (&ext.policy, denied) {
        (Some(p), Some(0)) if p.enforced => {
            report.pass("policy", "policies enforced at build time, nothing denied")
        }
        (Some(p), Some(n)) if !p.enforced && n > 0 => report.info(
            "policy",
            format!("built with --skip-policy: {n} denied rule(s) were overridden at build time"),
        ),
        (Some(p), _) if !p.enforced => {
            report.info("policy", "built with --skip-policy (policies not enforced)")
        }
        (Some(_), Some(n)) => report.fail(
            "policy",
            format!("provenance says policies were enforced but {n} rule(s) denied"),
        ),
        _ => report.info("policy", "the provenance records no policy evaluation"),
    }

    let builder = &p.run_details.builder.id;
    match exp.builder_id {
        Some(want) if want == builder => report.pass("builder", format!("builder.id is {builder}")),
        Some(want) => report.fail(
            "builder",
            format!("builder.id is {builder}, expected {want}"),
        ),
        None => report.info(
            "builder",
            format!("builder.id is {builder} (not checked: pass --builder-id)"),
        ),
    }

    let m = &p.run_details.metadata;
    match m.finished_on.as_deref().map(|t| (t, parse_rfc3339(t))) {
        Some((t, Some(fin))) => {
            let started = m.started_on.as_deref().and_then(parse_rfc3339);
            if fin > exp.now + CLOCK_SKEW_SECS {
                report.fail("age", format!("finishedOn {t} is in the future"));
            } else if started.is_some_and(|s| s > fin) {
                report.fail(
                    "age",
                    format!(
                        "startedOn {} is after finishedOn {t}",
                        m.started_on.as_deref().unwrap_or("")
                    ),
                );
            } else if let Some(max) = exp.max_age.filter(|max| exp.now - fin > *max) {
                report.fail(
                    "age",
                    format!(
                        "provenance expired: the build finished {t}, {} ago, more than --max-age {}",
                        duration_text(exp.now - fin),
                        duration_text(max)
                    ),
                );
            } else {
                let limit = exp
                    .max_age
                    .map(|m| format!(", within --max-age {}", duration_text(m)))
                    .unwrap_or_default();
                report.pass(
                    "age",
                    format!(
                        "built {t}, {} ago{limit}",
                        duration_text((exp.now - fin).max(0))
                    ),
                );
            }
        }
        Some((t, None)) => report.fail("age", format!("finishedOn {t:?} is not an RFC 3339 time")),
        None if exp.max_age.is_some() => report.fail(
            "age",
            "provenance has no finishedOn, so its age cannot be checked against --max-age",
        ),
        None => report.info("age", "provenance has no finishedOn"),
    }

    let mut archs: Vec<String> = image.platforms.iter().map(|p| p.arch.clone()).collect();
    archs.sort();
    let mut recorded_archs = ext.archs.clone();
    recorded_archs.sort();
    if archs == recorded_archs {
        report.pass(
            "provenance",
            format!("built {} for {}", ext.flake_attribute, archs.join(", ")),
        );
    } else if !image.is_index && archs.len() == 1 && recorded_archs.contains(&archs[0]) {
        // One platform manifest of a multi-arch build, verified on its own.
        report.pass(
            "provenance",
            format!(
                "built {} for {}; this is its {} manifest",
                ext.flake_attribute,
                recorded_archs.join(", "),
                archs[0]
            ),
        );
    } else {
        report.fail(
            "provenance",
            format!(
                "provenance records archs [{}] but the image has [{}]",
                recorded_archs.join(", "),
                archs.join(", ")
            ),
        );
    }
    match (&ext.source.revision, ext.source.dirty) {
        (Some(r), false) => report.info("source", format!("{} at {r}", ext.source.uri)),
        (Some(r), true) => report.info(
            "source",
            format!(
                "{} at {r} with uncommitted changes (the revision alone may not reproduce it)",
                ext.source.uri
            ),
        ),
        (None, _) => report.info(
            "source",
            format!(
                "{} (not a git checkout: no revision recorded)",
                ext.source.uri
            ),
        ),
    }

    let recorded = recorded_debs(&p, None);
    let seed_debs = recorded_debs(&p, Some(SEED_ROLE));
    let Some(src) = exp.source else {
        report.info(
            "lock",
            format!(
                "{} .deb(s) recorded (not compared: pass --source <checkout>)",
                recorded.len()
            ),
        );
        return;
    };
    let lock_path = src.join("kiln.lock");
    let lock_bytes = match std::fs::read(&lock_path) {
        Ok(b) => b,
        Err(e) => {
            report.fail("lock", format!("reading {}: {e}", lock_path.display()));
            return;
        }
    };
    let lock: Value = match serde_json::from_slice(&lock_bytes) {
        Ok(l) => l,
        Err(e) => {
            report.fail("lock", format!("{} is not JSON: {e}", lock_path.display()));
            return;
        }
    };
    let digest = crate::digest::Digest::of(&lock_bytes).to_string();
    if digest == ext.lock.digest {
        report.info(
            "lock",
            format!(
                "{} is the lock the image was built from ({digest})",
                lock_path.display()
            ),
        );
    } else {
        report.info(
            "lock",
            format!("{} ({digest}) differs from the lock the image was built from ({}); comparing the image's entries", lock_path.display(), ext.lock.digest),
        );
    }
    match locked_debs(&lock, &ext.full_name(), &ext.archs).and_then(|locked| {
        compare_debs(&recorded, &locked).map(|()| locked.len())
    }) {
        Ok(n) => report.pass(
            "lock",
            format!(
                "resolvedDependencies hold exactly the {n} .deb(s) {} locks for {} ({}), same sha256",
                lock_path.display(),
                ext.full_name(),
                ext.archs.join(", ")
            ),
        ),
        Err(e) => report.fail(
            "lock",
            format!("resolvedDependencies do not match {} for {}: {e}", lock_path.display(), ext.full_name()),
        ),
    }
    // What the seed was compiled from: the lock's rust toolchain.
    if seed_debs.is_empty() {
        report.info(
            "seed",
            "no seed toolchain recorded (a seed built outside the sandbox)",
        );
        return;
    }
    // A project that builds with kiln as its flake input has the seed of
    // that kiln, whose own lock pins the toolchain: this lock has none.
    if lock["toolchains"]["rust"].is_null() {
        report.info(
            "seed",
            format!(
                "{} has no toolchain rust: the seed is the project's kiln's (kiln's own lock pins its toolchain); {} recorded .deb(s) not compared",
                lock_path.display(),
                seed_debs.len()
            ),
        );
        return;
    }
    match toolchain_debs(&lock, "rust", "amd64")
        .and_then(|locked| compare_debs(&seed_debs, &locked).map(|()| locked.len()))
    {
        Ok(n) => report.pass(
            "seed",
            format!(
                "the seed was compiled from exactly the {n} .deb(s) {} locks for toolchain rust",
                lock_path.display()
            ),
        ),
        Err(e) => report.fail(
            "seed",
            format!(
                "the seed's recorded toolchain does not match {}: {e}",
                lock_path.display()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::statement::rfc3339_utc;
    use serde_json::json;

    #[test]
    fn rfc3339_round_trips() {
        for t in [0, 1_783_764_997, 951_782_400, 1_709_164_799, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339_utc(t)), Some(t), "{t}");
        }
        assert_eq!(
            parse_rfc3339("2026-07-11T12:16:37.25+02:00"),
            Some(1_783_764_997)
        );
        assert_eq!(
            parse_rfc3339("2026-07-11T05:16:37-05:00"),
            Some(1_783_764_997)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Some(30 * 86_400));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("-5s"), None);
    }

    #[test]
    fn locked_debs_follow_the_image_and_archs() {
        let lock = json!({
            "packages": {
                "amd64": {"tzdata": {"version": "2025b-0+deb12u1", "architecture": "all", "sha256": "aa"},
                          "libc6": {"version": "2.36-9+deb12u10", "architecture": "amd64", "sha256": "bb"}},
                "arm64": {"tzdata": {"version": "2025b-0+deb12u1", "architecture": "all", "sha256": "aa"}}
            },
            "images": {"x-debug": {"archs": {"amd64": {"packages": ["libc6", "tzdata"]}, "arm64": {"packages": ["tzdata"]}}}}
        });
        let got = locked_debs(&lock, "x-debug", &["amd64".into(), "arm64".into()]).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.contains(&(
            "pkg:deb/debian/tzdata@2025b-0%2Bdeb12u1?arch=all&distro=debian-12".into(),
            "aa".into()
        )));
        assert!(locked_debs(&lock, "x", &["amd64".into()]).is_err());
        let mut recorded = got.clone();
        assert!(compare_debs(&recorded, &got).is_ok());
        recorded.insert((
            "pkg:deb/debian/evil@1?arch=all&distro=debian-12".into(),
            "cc".into(),
        ));
        let e = compare_debs(&recorded, &got).unwrap_err();
        assert!(e.contains("evil@1") && e.contains("not in the lock"), "{e}");
        let mut swapped: BTreeSet<(String, String)> = got
            .iter()
            .filter(|(p, _)| !p.contains("libc6"))
            .cloned()
            .collect();
        swapped.insert((
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=debian-12".into(),
            "ff".into(),
        ));
        let e = compare_debs(&swapped, &got).unwrap_err();
        assert!(e.contains("has sha256 ff, the lock pins bb"), "{e}");
    }

    #[test]
    fn locked_debs_read_the_table_and_distro_of_the_images_release() {
        let lock = json!({
            "version": 2,
            "packages": {
                "bookworm": {"amd64": {"libc6": {"version": "2.36-9", "architecture": "amd64", "sha256": "bb"}}},
                "trixie": {"amd64": {"libc6": {"version": "2.41-12", "architecture": "amd64", "sha256": "cc"}}}
            },
            "images": {
                "b": {"release": "bookworm", "archs": {"amd64": {"packages": ["libc6"]}}},
                "t": {"release": "trixie", "archs": {"amd64": {"packages": ["libc6"]}}},
                "u": {"release": "hamm", "archs": {"amd64": {"packages": ["libc6"]}}}
            }
        });
        let t = locked_debs(&lock, "t", &["amd64".into()]).unwrap();
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            [(
                "pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-13".to_string(),
                "cc".to_string()
            )]
        );
        let b = locked_debs(&lock, "b", &["amd64".into()]).unwrap();
        assert!(b
            .iter()
            .all(|(p, d)| p.ends_with("distro=debian-12") && d == "bb"));
        let e = locked_debs(&lock, "u", &["amd64".into()]).unwrap_err();
        assert!(
            e.contains("image u: \"hamm\" is not a Debian release"),
            "{e}"
        );
    }
}
