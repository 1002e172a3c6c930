//! `kiln digests`: check or update the committed expected digests.

use anyhow::Context;
use kiln::digests::{self, DigestsFile, Explanation, Mismatch, Target};
use kiln::nixcmd;
use kiln::seedbuild::{self, Pin};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Check or update the committed expected digests of every image.
///
/// Each `images/<name>/digests.json` holds the image index digest of the
/// image and each variant, and every platform's manifest digest. --check
/// (the default) builds every image and fails naming each image and
/// platform whose digest differs; CI runs it on a fresh machine, so each
/// run checks reproducibility across machines. --update rebuilds, rewrites
/// the files and explains each change: the inputs that moved since the
/// digests were committed (lock entries, creation time, definition, seed)
/// and a `kiln diff` of the image built at that revision and now.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Definition or image names (default: all of images/).
    pub images: Vec<String>,
    /// Fail unless every built digest equals the committed one (default).
    #[arg(long, conflicts_with = "update")]
    pub check: bool,
    /// Rewrite the digests files and explain what changed.
    #[arg(long)]
    pub update: bool,
    /// Which seed builds the images: `sandbox` (the default, compiled in
    /// the sandbox by Debian's rustc) or `host` (compiled now by the host's
    /// cargo, with the same reproducible settings). Checking with `host`
    /// is a diverse double compilation of the builder: two compilers, the
    /// same images, bit for bit.
    #[arg(long, value_enum, default_value_t = SeedChoice::Sandbox, conflicts_with = "update")]
    pub seed: SeedChoice,
    /// Do not build the old images to explain changes (inputs only).
    #[arg(long, requires = "update")]
    pub no_old_build: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeedChoice {
    Sandbox,
    Host,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Change {
    image: String,
    mismatches: Vec<Mismatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Explanation>,
}

/// `kiln digests --check --json`.
#[derive(serde::Serialize)]
struct CheckReport<'a, C: serde::Serialize, S: serde::Serialize> {
    images: usize,
    mismatches: &'a [C],
    stale: &'a [S],
}

/// `kiln digests --update --json`.
#[derive(serde::Serialize)]
struct UpdateReport<'a, C: serde::Serialize, S: serde::Serialize> {
    images: usize,
    changes: &'a [C],
    stale: &'a [S],
    written: &'a [String],
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let settings = nixcmd::settings().context("reading the Nix configuration")?;
    settings.check_isolated()?;
    let host_seed = match args.seed {
        SeedChoice::Sandbox => {
            Pin::installed(project)?;
            None
        }
        SeedChoice::Host => {
            let seed = seedbuild::host_build(project, &Default::default())
                .context("building the seed with the host's cargo")?;
            seedbuild::install_host(&seed)?;
            eprintln!(
                "kiln: building with the host-built seed {} ({})",
                seed.store_path, seed.rustc
            );
            Some(seed.nar_hash)
        }
    };
    let targets = digests::targets(project, &args.images)?;
    let attrs: Vec<String> = targets.iter().map(|t| t.image.clone()).collect();
    let built = digests::build_all(project, &attrs, host_seed.as_deref())?;

    let mut files: BTreeMap<String, Option<DigestsFile>> = BTreeMap::new();
    for t in &targets {
        if !files.contains_key(&t.definition) {
            files.insert(t.definition.clone(), digests::read(project, &t.definition)?);
        }
    }
    let mut changes = Vec::new();
    for t in &targets {
        let actual = &built
            .get(&t.image)
            .with_context(|| format!("nix build did not produce {}", t.image))?
            .digests;
        let expected = files[&t.definition]
            .as_ref()
            .and_then(|f| f.images.get(&t.image));
        let mismatches = digests::compare(&t.image, expected, actual);
        if !mismatches.is_empty() {
            changes.push(Change {
                image: t.image.clone(),
                mismatches,
                explanation: None,
            });
        }
    }
    let stale = if args.images.is_empty() {
        digests::stale_entries(project, &targets)?
    } else {
        Vec::new()
    };

    if !args.update {
        if args.json {
            super::output::json(&CheckReport {
                images: attrs.len(),
                mismatches: &changes,
                stale: &stale,
            });
        }
        if changes.is_empty() && stale.is_empty() {
            if !args.json {
                let platforms: usize = built.values().map(|b| b.digests.manifests.len()).sum();
                println!(
                    "all {} images ({platforms} platform manifests) have their committed digests",
                    attrs.len()
                );
            }
            return Ok(super::Outcome::Ok);
        }
        if !args.json {
            for c in &changes {
                for m in &c.mismatches {
                    println!("{m}");
                }
            }
            for s in &stale {
                println!("{s}");
            }
        }
        let n: usize = changes.iter().map(|c| c.mismatches.len()).sum::<usize>() + stale.len();
        eprintln!(
            "kiln: {n} digest{} differ from the committed ones ({}); if the change is intended (a relock, a seed or definition change), run `kiln digests --update` to record the new digests and see why they moved",
            if n == 1 { "" } else { "s" },
            changes.iter().map(|c| c.image.as_str()).collect::<Vec<_>>().join(", ")
        );
        return Ok(super::Outcome::ChecksFailed);
    }

    // --update: explain, then write.
    let by_image: BTreeMap<&str, &Target> = targets.iter().map(|t| (t.image.as_str(), t)).collect();
    let mut old_builds: BTreeMap<String, Result<BTreeMap<String, digests::BuiltImage>, String>> =
        BTreeMap::new();
    // Only the images that changed are built at the old revision.
    let changed_images: Vec<String> = changes.iter().map(|c| c.image.clone()).collect();
    for c in &mut changes {
        let t = by_image[c.image.as_str()];
        let had_entry = files[&t.definition]
            .as_ref()
            .is_some_and(|f| f.images.contains_key(&c.image));
        let mut ex = Explanation::default();
        if !had_entry {
            ex.old_image = Some("no digests were committed for this image before".into());
            c.explanation = Some(ex);
            continue;
        }
        let Some(rev) = digests::digests_revision(project, &t.definition) else {
            ex.old_image = Some(format!(
                "images/{}/{} is not committed: no revision to compare with",
                t.definition,
                digests::FILE_NAME
            ));
            c.explanation = Some(ex);
            continue;
        };
        ex.inputs = digests::input_changes(project, &rev, t);
        ex.since = Some(rev.clone());
        if !args.no_old_build {
            let old = old_builds.entry(rev.clone()).or_insert_with(|| {
                let changed: Vec<String> = changed_images
                    .iter()
                    .filter(|i| {
                        files[&by_image[i.as_str()].definition]
                            .as_ref()
                            .is_some_and(|f| f.images.contains_key(i.as_str()))
                            && digests::digests_revision(project, &by_image[i.as_str()].definition)
                                .as_deref()
                                == Some(rev.as_str())
                    })
                    .cloned()
                    .collect();
                if !args.json {
                    eprintln!(
                        "kiln: building {} at {} to compare with",
                        changed.join(", "),
                        &rev[..rev.len().min(12)]
                    );
                }
                digests::build_at(project, &rev, &changed)
            });
            match old {
                Ok(map) => match map.get(&c.image) {
                    Some(old) => match digests::output_changes(&old.out, &built[&c.image].out) {
                        Ok(d) => ex.differences = d,
                        Err(e) => ex.old_image = Some(format!("comparing: {e}")),
                    },
                    None => ex.old_image = Some(format!("not defined at {rev}")),
                },
                Err(e) => {
                    ex.old_image = Some(format!(
                        "the image at {} could not be built here: {e}",
                        &rev[..rev.len().min(12)]
                    ))
                }
            }
        }
        c.explanation = Some(ex);
    }

    let mut written = Vec::new();
    for (def, old) in &files {
        let mut new = old.clone().unwrap_or_default();
        let all_of_def = args.images.is_empty() || args.images.contains(def);
        if all_of_def {
            new.images
                .retain(|image, _| targets.iter().any(|t| &t.image == image));
        }
        for t in targets.iter().filter(|t| &t.definition == def) {
            new.images
                .insert(t.image.clone(), built[&t.image].digests.clone());
        }
        if old.as_ref() != Some(&new) {
            digests::write(project, def, &new)?;
            written.push(format!("images/{def}/{}", digests::FILE_NAME));
        }
    }

    if args.json {
        super::output::json(&UpdateReport {
            images: attrs.len(),
            changes: &changes,
            stale: &stale,
            written: &written,
        });
        return Ok(super::Outcome::Ok);
    }
    for c in &changes {
        println!("{}:", c.image);
        for m in &c.mismatches {
            let what = m
                .arch
                .as_deref()
                .map_or("index".to_string(), |a| format!("{a} manifest"));
            println!(
                "  {what}: {} → {}",
                m.expected.as_deref().unwrap_or("(none)"),
                m.actual.as_deref().unwrap_or("(none)")
            );
        }
        if let Some(ex) = &c.explanation {
            if let Some(rev) = &ex.since {
                let short = &rev[..rev.len().min(12)];
                if ex.inputs.is_empty() {
                    println!("  inputs: nothing kiln tracks changed since {short} (the builder's output changed)");
                } else {
                    println!("  inputs changed since {short}:");
                    for i in &ex.inputs {
                        println!("    {i}");
                    }
                }
            }
            if !ex.differences.is_empty() {
                println!("  what changed in the image (kiln diff):");
                for l in digests::summarize(&ex.differences, 40) {
                    println!("    {l}");
                }
            }
            if let Some(why) = &ex.old_image {
                println!("  ({why})");
            }
        }
    }
    for s in &stale {
        println!("removed: {s}");
    }
    if written.is_empty() {
        println!(
            "all {} images already have their committed digests",
            attrs.len()
        );
    } else {
        println!("wrote {}", written.join(", "));
    }
    Ok(super::Outcome::Ok)
}
