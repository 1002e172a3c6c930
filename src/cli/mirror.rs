//! Where the Debian archive is: the flags `kiln lock` and `kiln fetch` share.

use kiln::debian::sources::{Mirrors, Overrides};
use kiln::debian::DEFAULT_APT_DIR;
use std::path::PathBuf;

/// The archive is found in apt's sources; these flags override it.
#[derive(Debug, Clone, clap::Args)]
pub struct MirrorArgs {
    /// Archive base URL for every suite except *-security (overrides apt's sources).
    #[arg(long, env = "KILN_MIRROR", value_name = "URL")]
    pub mirror: Option<String>,

    /// Archive base URL for *-security suites.
    #[arg(long, env = "KILN_SECURITY_MIRROR", value_name = "URL")]
    pub security_mirror: Option<String>,

    /// apt configuration directory to read sources from.
    #[arg(long, env = "KILN_APT_DIR", value_name = "DIR", default_value = DEFAULT_APT_DIR)]
    pub apt_dir: PathBuf,
}

impl MirrorArgs {
    pub fn discover(&self) -> anyhow::Result<Mirrors> {
        Ok(Mirrors::discover(
            &self.apt_dir,
            Overrides {
                mirror: self.mirror.clone(),
                security_mirror: self.security_mirror.clone(),
            },
        )?)
    }
}
