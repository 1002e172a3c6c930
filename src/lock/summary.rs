//! What a relock changed, per image and architecture, for people and --json.

use super::*;

/// What changed for one image and architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchChange {
    pub packages: usize,
    pub added: Vec<Versioned>,
    pub removed: Vec<Versioned>,
    pub upgraded: Vec<Changed>,
    pub downgraded: Vec<Changed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Versioned {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub name: String,
    pub from: String,
    pub to: String,
}

impl ArchChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.upgraded.is_empty()
            && self.downgraded.is_empty()
    }
}

/// What `kiln lock` did: per locked image and arch, the change against the previous lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub images: BTreeMap<String, BTreeMap<Arch, ArchChange>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub toolchains: BTreeMap<String, BTreeMap<Arch, ArchChange>>,
    /// Suite → Date of the signed index used.
    pub sources: BTreeMap<String, String>,
    /// Images kept from the previous lock untouched.
    pub kept: Vec<String>,
    /// Images dropped because their definition is gone.
    pub dropped: Vec<String>,
    /// What was locked as asked but deserves a look: conflicting packages
    /// both named in an image's packages.include.
    pub warnings: Vec<String>,
}

impl Summary {
    pub fn changed(&self) -> bool {
        !self.dropped.is_empty()
            || self
                .images
                .values()
                .chain(self.toolchains.values())
                .flat_map(|a| a.values())
                .any(|c| !c.is_empty())
    }

    /// The human form `kiln lock` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (suite, date) in &self.sources {
            out.push_str(&format!("{suite}: signed index of {date}\n"));
        }
        let toolchains = self
            .toolchains
            .iter()
            .map(|(n, a)| (format!("toolchain {n}"), a));
        for (image, archs) in self
            .images
            .iter()
            .map(|(n, a)| (n.clone(), a))
            .chain(toolchains)
        {
            for (arch, c) in archs {
                let delta = if c.is_empty() {
                    "unchanged".to_string()
                } else {
                    format!(
                        "+{} -{} ↑{} ↓{}",
                        c.added.len(),
                        c.removed.len(),
                        c.upgraded.len(),
                        c.downgraded.len()
                    )
                };
                out.push_str(&format!(
                    "{image} {arch}: {} packages ({delta})\n",
                    c.packages
                ));
                for a in &c.added {
                    out.push_str(&format!("  + {} {}\n", a.name, a.version));
                }
                for r in &c.removed {
                    out.push_str(&format!("  - {} {}\n", r.name, r.version));
                }
                for u in c.upgraded.iter().chain(&c.downgraded) {
                    out.push_str(&format!("  ~ {} {} → {}\n", u.name, u.from, u.to));
                }
            }
        }
        for k in &self.kept {
            out.push_str(&format!("{k}: kept as locked\n"));
        }
        for d in &self.dropped {
            out.push_str(&format!("{d}: dropped (no definition)\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}
