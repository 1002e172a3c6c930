//! `kiln diff`: explain how two images differ, from the index down to files.

use kiln::diff::{self, Difference, Image, Report};
use kiln::registry;
use std::collections::BTreeMap;
use std::path::Path;

/// Explain how two images differ, from the top down: index (platforms,
/// annotations) → manifests → config fields → layers → files (added,
/// removed, content, mode, owner, mtime, link targets, xattrs) → packages.
///
/// A and B are OCI image layout directories (a `kiln build --out-link`
/// result, `skopeo copy ... oci:DIR:TAG`), optionally as `DIR:TAG`, or
/// registry references (`registry/repository:tag` or `@sha256:...`, also
/// with a `docker://` prefix), which are pulled (every digest checked)
/// into a temporary layout first.
/// Exit status: 0 identical, 1 different, 2 error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first image (layout directory, or DIR:TAG).
    pub a: String,
    /// The second image.
    pub b: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Most file differences shown per layer (the rest are counted); 0 shows all.
    #[arg(long, default_value_t = 20)]
    pub max_files: usize,
    /// Packages, config and layers only: file differences are counted per
    /// layer, never listed (what a move to another Debian release needs).
    #[arg(long, conflicts_with = "max_files")]
    pub packages: bool,
    #[command(flatten)]
    pub registry: super::registry_args::RegistryArgs,
}

pub fn run(_project: &Path, args: Args) -> anyhow::Result<super::Outcome> {
    let opts = args.registry.options(Vec::new())?;
    let report = compare(&args.a, &args.b, &opts)?;
    if args.json {
        super::output::json(&report);
    } else {
        // --packages lists none; --max-files 0 lists all.
        let limit = if args.packages {
            Some(0)
        } else {
            Some(args.max_files).filter(|n| *n > 0)
        };
        print!("{}", render(&report, limit));
    }
    Ok(super::Outcome::from_passed(report.identical))
}

fn compare(a: &str, b: &str, opts: &registry::Options) -> anyhow::Result<Report> {
    let scratch = tempfile::tempdir()?;
    let ia = open(a, &scratch.path().join("a"), opts)?;
    let ib = open(b, &scratch.path().join("b"), opts)?;
    Ok(diff::diff(&ia, &ib)?)
}

/// A layout as it is; a registry reference pulled into `tmp`. References
/// are parsed as every kiln command parses them (kiln_seed::imageref).
fn open(spec: &str, tmp: &Path, opts: &registry::Options) -> anyhow::Result<Image> {
    use kiln_seed::imageref::{ImageRef, RefError};
    let source = match ImageRef::parse(spec) {
        Ok(ImageRef::Layout { .. }) => {
            return Image::open(spec)
                .map_err(|e| anyhow::anyhow!(e).context(format!("opening {spec}")))
        }
        Ok(ImageRef::Registry(r)) => r,
        Err(RefError::Registry(e)) => {
            return Err(anyhow::anyhow!(e).context(format!(
                "{spec} is neither a layout directory nor a registry reference"
            )))
        }
        Err(e) => return Err(anyhow::anyhow!(e)),
    };
    registry::pull(&source, tmp, Some("image"), false, false, opts)
        .map_err(|e| anyhow::anyhow!(e).context(format!("pulling {spec}")))?;
    let mut image = Image::open(&tmp.to_string_lossy())
        .map_err(|e| anyhow::anyhow!(e).context(format!("opening the pulled {spec}")))?;
    image.label = spec.to_string();
    Ok(image)
}

fn is_file_level(d: &Difference) -> bool {
    d.path.is_some()
}

/// The report as text: one line per difference, at most `limit` file
/// differences listed per layer (`None`: all; `Some(0)`: only counted).
pub fn render(report: &Report, limit: Option<usize>) -> String {
    let mut s = String::new();
    if report.identical {
        s.push_str(&format!(
            "identical: {} ({})\n",
            report.a.digest,
            report.a.platforms.join(", ")
        ));
        return s;
    }
    s.push_str(&format!("--- {} {}\n", report.a.image, report.a.digest));
    s.push_str(&format!("+++ {} {}\n", report.b.image, report.b.digest));
    let mut shown: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut hidden: BTreeMap<(String, String), usize> = BTreeMap::new();
    for d in &report.differences {
        if let Some(limit) = limit.filter(|_| is_file_level(d)) {
            let key = (d.scope.clone(), d.location.clone());
            let n = shown.entry(key.clone()).or_default();
            if *n >= limit {
                *hidden.entry(key).or_default() += 1;
                continue;
            }
            *n += 1;
        }
        s.push_str(&d.text);
        s.push('\n');
    }
    for ((scope, location), n) in hidden {
        let more = if limit == Some(0) { "" } else { "more " };
        s.push_str(&format!(
            "{scope}: {location}: … and {n} {more}file differences (--max-files 0 or --json shows all)\n"
        ));
    }
    s.push_str(&format!(
        "{} difference{}\n",
        report.differences.len(),
        if report.differences.len() == 1 {
            ""
        } else {
            "s"
        }
    ));
    s
}
