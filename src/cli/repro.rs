//! `kiln repro`: rebuild images under perturbations that must not matter.

use anyhow::Context;
use kiln::nixcmd;
use kiln::repro::{self, Options, Report};
use kiln::seedbuild::Pin;
use std::path::Path;

/// Rebuild an image under perturbations that must not matter and compare.
///
/// Builds the image, then rebuilds every derivation kiln produces for it
/// (layers, per-platform images, index; not the pinned .debs nor the seed)
/// with `nix build --rebuild`, again with another NIX_BUILD_CORES, and then
/// from scratch with the builder's TZ, locale, umask, SOURCE_DATE_EPOCH and
/// file order changed and from a copy of the project at another path.
/// Every output is compared whole with its baseline; the first difference
/// is explained down to the file (kiln diff).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images (flake attributes: `scratch-plus`, `base-debug`, `python-arm64`).
    #[arg(required_unless_present = "all")]
    pub images: Vec<String>,
    /// Every image and variant under images/.
    #[arg(long, conflicts_with = "images")]
    pub all: bool,
    /// Run only these perturbations (repeatable): rebuild, cores, tz, locale,
    /// umask, source-date-epoch, file-order, clone-path.
    #[arg(long = "only", value_name = "PERTURBATION")]
    pub only: Vec<String>,
    /// Keep differing outputs (`*.check` store paths) and the project copy.
    #[arg(long)]
    pub keep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let settings = nixcmd::settings().context("reading the Nix configuration")?;
    settings.check_isolated()?;
    let pin = Pin::installed(project)?;
    let images = if args.all {
        kiln::digests::targets(project, &[])?
            .into_iter()
            .map(|t| t.image)
            .collect()
    } else {
        kiln::build::check_attrs(project, &args.images)?;
        args.images.clone()
    };
    let report = repro::run(
        project,
        &pin.store_path,
        &Options {
            images,
            only: args.only.clone(),
            keep: args.keep,
            progress: !args.json,
        },
    )?;
    if args.json {
        super::output::json(&report);
    } else {
        print!("{}", render(&report));
    }
    Ok(super::Outcome::from_passed(report.identical))
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    for i in &r.images {
        s.push_str(&format!("{} {}\n", i.image, i.digest));
    }
    let steps: Vec<String> = r
        .derivations
        .iter()
        .map(|(step, n)| format!("{n} {step}"))
        .collect();
    s.push_str(&format!(
        "{} kiln derivations ({})\n",
        r.derivation_count(),
        steps.join(", ")
    ));
    let width = r
        .perturbations
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0);
    for p in &r.perturbations {
        let verdict = if p.identical {
            "identical"
        } else {
            "DIFFERENT"
        };
        let mut extra = String::new();
        if let Some(same) = p.same_derivations {
            extra = if same {
                ", same derivations".into()
            } else {
                ", OTHER derivations".into()
            };
        }
        s.push_str(&format!(
            "  {:width$}  {verdict}  {}/{} derivations{extra}  {:.1}s  ({})\n",
            p.name,
            p.compared - p.differences.len().min(p.compared),
            p.compared,
            p.seconds,
            p.description,
        ));
    }
    match &r.first_difference {
        None => s.push_str(&format!(
            "identical under {} perturbations: {} rebuilds compared ({} derivations each), {:.1}s\n",
            r.perturbations.len(),
            r.rebuilds,
            r.derivation_count(),
            r.seconds
        )),
        Some(d) => {
            let differing: usize = r.perturbations.iter().filter(|p| !p.identical).count();
            s.push_str(&format!(
                "NOT REPRODUCIBLE: {differing} of {} perturbations changed the output ({} rebuilds compared, {:.1}s)\n",
                r.perturbations.len(),
                r.rebuilds,
                r.seconds
            ));
            s.push_str(&format!(
                "first difference: {} ({}) under {}\n",
                d.derivation, d.step, d.perturbation
            ));
            if !d.baseline.is_empty() {
                s.push_str(&format!("  baseline {}\n  other    {}\n", d.baseline, d.other));
            }
            for f in d.files.iter().take(20) {
                s.push_str(&format!("  {f}\n"));
            }
            if d.files.len() > 20 {
                s.push_str(&format!("  … {} more files\n", d.files.len() - 20));
            }
            for l in d.explanation.iter().take(40) {
                s.push_str(&format!("  {l}\n"));
            }
            let others: Vec<String> = r
                .perturbations
                .iter()
                .flat_map(|p| p.differences.iter())
                .filter(|x| !(x.derivation == d.derivation && x.perturbation == d.perturbation))
                .map(|x| format!("{} ({})", x.derivation, x.perturbation))
                .collect();
            if !others.is_empty() {
                s.push_str(&format!(
                    "also different: {}\n",
                    others.join(", ")
                ));
            }
        }
    }
    s
}
