//! Sharing builds through a Nix binary cache: `kiln cache push` copies
//! everything the images need (the .debs, crates and wheels, the bootstrap,
//! the seed and the toolchain roots) into a signed binary cache, so that a
//! machine that trusts the cache's key builds the catalogue with no mirror
//! at all, and a digest can be rebuilt after the mirror has moved on.
//! `kiln cache verify` checks that a cache holds all of it, signed by a key.
//!
//! The copying and the signatures are Nix's (`nix copy`, `nix store
//! verify`); kiln decides what goes in and checks what came out.

use crate::nixcmd::{self, BuildOptions, NixError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Nix(#[from] NixError),
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
    #[error(transparent)]
    Seed(#[from] crate::seedbuild::SeedError),
    #[error("{url} is not a binary cache URL: give file:///DIR, http(s)://HOST/PATH or s3://BUCKET (a local store would not carry signatures)")]
    NotACache { url: String },
    #[error("the signing key {}: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },
    #[error("{} of the {total} paths the images need are not in {url} with a valid signature by the given key(s): {}{}", .missing.len(), .missing.iter().take(10).cloned().collect::<Vec<_>>().join(", "), if .missing.len() > 10 { ", ..." } else { "" })]
    Unsigned {
        url: String,
        total: usize,
        missing: Vec<String>,
    },
    #[error("`{command}` failed: {message}")]
    Output { command: String, message: String },
}

/// What a build of some images needs, split as `kiln cache push` copies it.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Plan {
    /// Everything the images are built from: fixed inputs (.debs, crates,
    /// wheels, busybox), the seed and toolchain roots, application builds.
    pub inputs: Vec<String>,
    /// The images themselves: their layers, per-arch images and indexes.
    pub outputs: Vec<String>,
}

/// The seed steps whose outputs are image parts rather than inputs.
const IMAGE_STEPS: [&str; 3] = ["layer", "image", "index"];

/// Whether `url` names a binary cache store.
pub fn is_cache_url(url: &str) -> bool {
    ["file://", "http://", "https://", "s3://"]
        .iter()
        .any(|p| url.starts_with(p))
}

/// Works out what building `attrs` of `project` needs, from the store this
/// machine built them in (build them first).
pub fn plan(project: &Path, attrs: &[String]) -> Result<Plan, CacheError> {
    let drvs = nixcmd::drv_paths(project, attrs, &BuildOptions::default())?;
    let seed = crate::seedbuild::Pin::of_project(project)?.store_path;
    let image_parts: BTreeSet<String> = nixcmd::kiln_steps(&drvs, &seed)?
        .into_values()
        .filter(|s| IMAGE_STEPS.contains(&s.step.as_str()))
        .map(|s| s.out)
        .collect();
    let closure = crate::tool::checked(
        nixcmd::command("nix-store")
            .args(["--query", "--requisites", "--include-outputs"])
            .args(&drvs),
    )?;
    let mut plan = Plan::default();
    for p in closure.lines().filter(|p| !p.ends_with(".drv")) {
        if image_parts.contains(p) {
            plan.outputs.push(p.to_string());
        } else {
            plan.inputs.push(p.to_string());
        }
    }
    Ok(plan)
}

/// `nix copy`s `paths` to the binary cache `url`, signed with `secret_key`
/// (a Nix signing key, `nix-store --generate-binary-cache-key`).
pub fn push(url: &str, secret_key: &Path, paths: &[String]) -> Result<(), CacheError> {
    if !is_cache_url(url) {
        return Err(CacheError::NotACache { url: url.into() });
    }
    let key = std::fs::read_to_string(secret_key).map_err(|e| CacheError::Key {
        path: secret_key.to_path_buf(),
        reason: e.to_string(),
    })?;
    if key
        .trim()
        .split_once(':')
        .is_none_or(|(name, k)| name.is_empty() || k.is_empty())
    {
        return Err(CacheError::Key {
            path: secret_key.to_path_buf(),
            reason: "not a Nix signing key (NAME:BASE64, as `nix-store --generate-binary-cache-key` writes it)".into(),
        });
    }
    let key_path = secret_key
        .canonicalize()
        .unwrap_or_else(|_| secret_key.to_path_buf());
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut dest = format!("{url}{sep}secret-key={}", key_path.display());
    // Nix compresses a binary cache with xz by default: one core, 7 min
    // for scratch-plus's 234 inputs here, against 6 s with zstd (443 MiB
    // instead of 372 MiB). A compression the URL names is kept.
    if !url.contains("compression=") {
        dest.push_str("&compression=zstd");
    }
    for chunk in paths.chunks(500) {
        crate::tool::checked(nixcmd::nix().args(["copy", "--to", &dest]).args(chunk))?;
    }
    Ok(())
}

/// Checks that every path of `paths` is in the cache at `url` with a valid
/// signature by one of `public_keys` (`NAME:BASE64`).
pub fn verify(url: &str, public_keys: &[String], paths: &[String]) -> Result<(), CacheError> {
    if !is_cache_url(url) {
        return Err(CacheError::NotACache { url: url.into() });
    }
    let mut missing = Vec::new();
    for chunk in paths.chunks(500) {
        let out = nixcmd::nix()
            .args(["store", "verify", "--no-contents", "--store", url])
            .arg("--trusted-public-keys")
            .arg(public_keys.join(" "))
            .args(chunk)
            .output()
            .map_err(|e| CacheError::Output {
                command: "nix store verify".into(),
                message: e.to_string(),
            })?;
        if out.status.success() {
            continue;
        }
        // Nix names each path it could not vouch for; anything else is
        // reported as is.
        let text = String::from_utf8_lossy(&out.stderr);
        let named: Vec<String> = chunk
            .iter()
            .filter(|p| {
                text.lines()
                    .any(|l| l.contains(p.as_str()) && !l.starts_with("checking"))
            })
            .cloned()
            .collect();
        if named.is_empty() {
            return Err(CacheError::Output {
                command: format!("nix store verify --store {url}"),
                message: text.trim().to_string(),
            });
        }
        missing.extend(named);
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CacheError::Unsigned {
            url: url.into(),
            total: paths.len(),
            missing,
        })
    }
}
