//! The image definition (`images/<name>/image.toml`).
//!
//! The same types are read twice: by the driver from TOML (with line numbers
//! in errors, see the driver's `definition` module) and by the seed inside the
//! sandbox from the JSON that Nix derives from the same TOML
//! (`builtins.toJSON (builtins.fromTOML ...)`). Every single-value check
//! (octal modes, id ranges, absolute paths) lives in a `Deserialize` impl so
//! that the TOML reader can point at the offending line; checks that relate
//! several fields live in [`Definition::validate`].

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::release::{self, Release};

/// Largest uid/gid kiln accepts. 65535 is the kernel's "overflow id" and
/// anything above 16 bits breaks rootless runtimes' default id maps.
pub const MAX_ID: u32 = 65534;

/// Target architectures kiln assembles (without executing anything of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Debian's name, also the OCI `architecture`.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// OCI platform `variant` (arm64 images are `v8`).
    pub fn oci_variant(self) -> Option<&'static str> {
        match self {
            Arch::Amd64 => None,
            Arch::Arm64 => Some("v8"),
        }
    }

    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "amd64" => Some(Arch::Amd64),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.debian())
    }
}

/// A file mode written as an octal string (`"0755"`, `"1777"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if digits.is_empty()
            || digits.len() > 5
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(format!("mode {s:?} is not an octal number like \"0755\""));
        }
        let value = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
        if value > 0o7777 {
            return Err(format!("mode {s:?} is larger than 07777"));
        }
        Ok(Mode(value))
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Mode::parse(&s).map_err(de::Error::custom)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

/// A numeric user or group id in `0..=MAX_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Id(pub u32);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if !(0..=MAX_ID as i64).contains(&v) {
            return Err(de::Error::custom(format!(
                "id {v} is out of range 0..={MAX_ID}"
            )));
        }
        Ok(Id(v as u32))
    }
}

/// An absolute, normalized path inside the image (`/etc/foo`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AbsPath(pub String);

impl AbsPath {
    pub fn parse(s: &str) -> Result<AbsPath, String> {
        if !s.starts_with('/') {
            return Err(format!("path {s:?} is not absolute (it must start with /)"));
        }
        if s.contains('\0') {
            return Err(format!("path {s:?} contains a NUL byte"));
        }
        if s.split('/').any(|c| c == ".." || c == ".") {
            return Err(format!("path {s:?} contains a . or .. component"));
        }
        if s.len() > 1 && (s.ends_with('/') || s.contains("//")) {
            return Err(format!(
                "path {s:?} is not normalized (no trailing or doubled /)"
            ));
        }
        Ok(AbsPath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/` (how it appears in a layer tar).
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }
}

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AbsPath::parse(&s).map_err(de::Error::custom)
    }
}

/// An absolute glob over image paths (`/usr/share/doc/**`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PathGlob(pub String);

impl<'de> Deserialize<'de> for PathGlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !s.starts_with('/') {
            return Err(de::Error::custom(format!(
                "path pattern {s:?} is not absolute (it must start with /)"
            )));
        }
        if s.split('/').any(|c| c == "..") {
            return Err(de::Error::custom(format!(
                "path pattern {s:?} contains a .. component"
            )));
        }
        Ok(PathGlob(s))
    }
}

/// A user or group name as `useradd` would accept it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountName(pub String);

impl<'de> Deserialize<'de> for AccountName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(de::Error::custom(format!(
                "account name {s:?} is invalid (lowercase letters, digits, _ and -, starting with a letter or _, at most 32)"
            )));
        }
        Ok(AccountName(s))
    }
}

/// A Debian package name (policy §5.6.1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PackageName(pub String);

impl PackageName {
    pub fn is_valid(s: &str) -> bool {
        s.len() >= 2
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    }
}

impl<'de> Deserialize<'de> for PackageName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !PackageName::is_valid(&s) {
            return Err(de::Error::custom(format!(
                "{s:?} is not a valid Debian package name"
            )));
        }
        Ok(PackageName(s))
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn default_archs() -> Vec<Arch> {
    Arch::ALL.to_vec()
}

fn default_true() -> bool {
    true
}

/// Default number of layers an image may have (apko uses about ten).
pub const DEFAULT_LAYER_BUDGET: u32 = 10;

fn default_layer_budget() -> u32 {
    DEFAULT_LAYER_BUDGET
}

/// How an image's layers are compressed: `compression` in image.toml.
/// gzip is what every runtime reads; zstd decompresses several times
/// faster and needs a newer runtime (docs/image-toml.md lists which).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerCompression {
    #[default]
    Gzip,
    Zstd,
}

impl LayerCompression {
    pub fn is_gzip(&self) -> bool {
        *self == LayerCompression::Gzip
    }

    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip => crate::layerinfo::LAYER_MEDIA_TYPE,
            LayerCompression::Zstd => crate::layerinfo::LAYER_MEDIA_TYPE_ZSTD,
        }
    }

    /// The inverse of [`LayerCompression::media_type`].
    pub fn of_media_type(media_type: &str) -> Option<LayerCompression> {
        [LayerCompression::Gzip, LayerCompression::Zstd]
            .into_iter()
            .find(|c| c.media_type() == media_type)
    }

    /// The blob's file name in a layer step's output.
    pub fn blob_file(self) -> &'static str {
        match self {
            LayerCompression::Gzip => "layer.tar.gz",
            LayerCompression::Zstd => "layer.tar.zst",
        }
    }
}

/// `images/<name>/image.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Must equal the directory name.
    pub name: String,
    pub description: String,
    #[serde(default = "default_archs")]
    pub archs: Vec<Arch>,
    /// The Debian release (major version) the image is built from; its
    /// default suites when `suites` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debian: Option<u32>,
    /// Debian suites whose signed indexes the packages are resolved from,
    /// highest version wins across them; all of one release. Default: the
    /// release's own, updates and security suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suites: Option<Vec<String>>,
    /// Maximum number of layers (package layers + the generated one); the
    /// smallest packages are merged into one layer beyond it.
    #[serde(default = "default_layer_budget")]
    pub layer_budget: u32,
    /// How the layers are compressed. Left out of the serialized form
    /// when it is the default, so that gzip images keep their digests.
    #[serde(default, skip_serializing_if = "LayerCompression::is_gzip")]
    pub compression: LayerCompression,
    /// A debug image: may run as root and may contain a shell.
    #[serde(default)]
    pub debug: bool,
    #[serde(default)]
    pub packages: Packages,
    #[serde(default)]
    pub accounts: Accounts,
    #[serde(default)]
    pub paths: Vec<PathEntry>,
    #[serde(default)]
    pub config: Config,
    /// OCI annotations (also written as config labels).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub variants: BTreeMap<String, Variant>,
    /// An application image: the image (`name` or `name-variant`) whose
    /// layers it adds its own on top of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// An application image: what is compiled for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::appspec::Build>,
    /// A command `kiln test` runs in the image after its probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<ImageTest>,
}

/// `[test]`: a command run in the image by `kiln test`, as hardened as the
/// probe (read-only root, no capabilities, no network); it must exit 0
/// and, if `expect_output` is set, print it. For a service, its own
/// self-check (start, request itself, stop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTest {
    /// Program (absolute path in the image) and arguments.
    pub command: Vec<String>,
    /// Text the command's standard output must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_output: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    /// Packages to install, with their dependencies.
    #[serde(default)]
    pub include: Vec<PackageName>,
    /// Dependencies not to install: any dependency clause naming one of these
    /// counts as satisfied (what distroless does for debconf, perl, ...).
    #[serde(default)]
    pub exclude: Vec<PackageName>,
    /// Paths dropped from package contents, on top of kiln's defaults.
    #[serde(default)]
    pub exclude_paths: Vec<PathGlob>,
    /// Apply kiln's default exclusions (docs except copyright, man, info, lintian).
    #[serde(default = "default_true")]
    pub default_excludes: bool,
    /// Paths that may be shipped by more than one package (the later layer wins).
    #[serde(default)]
    pub allow_collisions: Vec<PathGlob>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    /// User the image runs as: a user name from `users`, or `uid[:gid]`.
    #[serde(default)]
    pub run_as: Option<String>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
}

fn default_home() -> AbsPath {
    AbsPath("/nonexistent".into())
}

fn default_shell() -> AbsPath {
    AbsPath("/sbin/nologin".into())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: AccountName,
    pub uid: Id,
    pub gid: Id,
    #[serde(default = "default_home")]
    pub home: AbsPath,
    #[serde(default = "default_shell")]
    pub shell: AbsPath,
    #[serde(default)]
    pub gecos: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: AccountName,
    pub gid: Id,
    #[serde(default)]
    pub members: Vec<AccountName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    Directory,
    File,
    Symlink,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathEntry {
    pub path: AbsPath,
    #[serde(rename = "type")]
    pub kind: PathKind,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub uid: Option<Id>,
    #[serde(default)]
    pub gid: Option<Id>,
    /// Symlink target.
    #[serde(default)]
    pub target: Option<String>,
    /// File content (UTF-8).
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub workdir: Option<AbsPath>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// A variant overlays its base definition: lists are appended, maps merged,
/// scalars replaced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub debug: Option<bool>,
    #[serde(default)]
    pub packages: VariantPackages,
    #[serde(default)]
    pub accounts: VariantAccounts,
    #[serde(default)]
    pub paths: Vec<PathEntry>,
    #[serde(default)]
    pub config: Config,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantPackages {
    #[serde(default)]
    pub include: Vec<PackageName>,
    #[serde(default)]
    pub exclude: Vec<PackageName>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantAccounts {
    #[serde(default)]
    pub run_as: Option<String>,
}

/// A definition with one variant applied: what one image is built from.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSpec {
    pub name: String,
    /// `None` for the default variant.
    pub variant: Option<String>,
    pub description: String,
    pub archs: Vec<Arch>,
    pub suites: Vec<String>,
    pub layer_budget: u32,
    #[serde(skip_serializing_if = "LayerCompression::is_gzip")]
    pub compression: LayerCompression,
    pub debug: bool,
    pub packages: Packages,
    pub accounts: Accounts,
    pub paths: Vec<PathEntry>,
    pub config: Config,
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::appspec::Build>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<ImageTest>,
}

impl ImageSpec {
    /// The tag the image carries: `latest` for the default variant, else the variant name.
    pub fn tag(&self) -> &str {
        self.variant.as_deref().unwrap_or("latest")
    }

    /// The Debian release of the image's suites (checked when the
    /// definition was read).
    pub fn release(&self) -> Result<Release, SpecError> {
        Release::of_suites(&self.suites).map_err(|e| invalid("suites", e.to_string()))
    }

    /// `name` or `name-variant`: the flake attribute and the name in the lock.
    pub fn full_name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}-{}", self.name, v),
            None => self.name.clone(),
        }
    }

    /// sha256 of what package resolution depends on (docs/internals.md,
    /// `inputs`): the lock is stale for this image when it differs.
    pub fn lock_inputs(&self) -> crate::digest::Digest {
        let mut include: Vec<&str> = self.packages.include.iter().map(|p| p.0.as_str()).collect();
        let mut exclude: Vec<&str> = self.packages.exclude.iter().map(|p| p.0.as_str()).collect();
        include.sort_unstable();
        include.dedup();
        exclude.sort_unstable();
        exclude.dedup();
        let mut archs: Vec<&str> = self.archs.iter().map(|a| a.debian()).collect();
        archs.sort_unstable();
        let mut value = serde_json::json!({
            "archs": archs,
            "suites": self.suites,
            "include": include,
            "exclude": exclude,
            "layerBudget": self.layer_budget,
        });
        // Only application images have these, so that every other image's
        // lock stays current.
        if let Some(base) = &self.base {
            value["base"] = serde_json::json!(base);
        }
        if let Some(build) = &self.build {
            if let Some(toolchain) = &build.toolchain {
                value["toolchain"] = serde_json::json!(toolchain);
            }
            // The wheels are locked for this requirements file, Python and
            // platform; the file's bytes are checked where it is read.
            if let Some(py) = &build.python {
                value["python"] = serde_json::json!({
                    "requirements": py.requirements,
                    "version": py.version,
                });
            }
        }
        crate::digest::Digest::of(&crate::json::canonical(&value))
    }

    /// An application image as it runs: the base's packages, accounts,
    /// paths and debug flag under the application's name, archs, build,
    /// test and config (merged as the image step merges it: `env` added,
    /// the other fields replaced when set). What policies and `kiln test`
    /// judge an application by.
    pub fn on_base(&self, base: &ImageSpec) -> ImageSpec {
        let mut s = base.clone();
        s.name = self.name.clone();
        s.variant = self.variant.clone();
        s.description = self.description.clone();
        s.archs = self.archs.clone();
        s.annotations = self.annotations.clone();
        s.base = self.base.clone();
        s.build = self.build.clone();
        s.test = self.test.clone();
        s.config.env.extend(self.config.env.clone());
        let c = &self.config;
        if c.entrypoint.is_some() {
            s.config.entrypoint = c.entrypoint.clone();
            s.config.cmd = None;
        }
        if c.cmd.is_some() {
            s.config.cmd = c.cmd.clone();
        }
        if c.workdir.is_some() {
            s.config.workdir = c.workdir.clone();
        }
        if c.stop_signal.is_some() {
            s.config.stop_signal = c.stop_signal.clone();
        }
        s
    }

    /// The numeric `uid:gid` the image runs as (OCI config `User`).
    pub fn user(&self) -> Result<(u32, u32), SpecError> {
        resolve_run_as(&self.accounts, self.accounts.run_as.as_deref())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("variants: no variant named {0:?}")]
    UnknownVariant(String),
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn resolve_run_as(accounts: &Accounts, run_as: Option<&str>) -> Result<(u32, u32), SpecError> {
    let Some(run_as) = run_as else {
        return Ok((0, 0));
    };
    if let Some(user) = accounts.users.iter().find(|u| u.name.0 == run_as) {
        return Ok((user.uid.0, user.gid.0));
    }
    let mut parts = run_as.splitn(2, ':');
    let parse = |s: Option<&str>| -> Option<u32> {
        s.and_then(|s| s.parse::<u32>().ok())
            .filter(|v| *v <= MAX_ID)
    };
    let uid = parse(parts.next());
    let gid = match parts.next() {
        Some(g) => parse(Some(g)),
        None => uid.map(|u| {
            accounts
                .users
                .iter()
                .find(|x| x.uid.0 == u)
                .map_or(u, |x| x.gid.0)
        }),
    };
    match (uid, gid) {
        (Some(u), Some(g)) => Ok((u, g)),
        _ => Err(invalid(
            "accounts.run_as",
            format!("{run_as:?} is neither a user in accounts.users nor a numeric uid[:gid] in 0..={MAX_ID}"),
        )),
    }
}

impl Definition {
    /// Checks that relate several fields. `dir_name` is the directory the
    /// definition was read from (the name must match it).
    pub fn validate(&self, dir_name: Option<&str>) -> Result<(), SpecError> {
        if let Some(dir) = dir_name {
            if self.name != dir {
                return Err(invalid(
                    "name",
                    format!("{:?} must equal the directory name {dir:?}", self.name),
                ));
            }
        }
        if !is_image_name(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "{:?} must be lowercase letters, digits and - (an OCI repository component)",
                    self.name
                ),
            ));
        }
        if self.archs.is_empty() {
            return Err(invalid("archs", "at least one architecture is required"));
        }
        if has_duplicates(self.archs.iter()) {
            return Err(invalid("archs", "an architecture is listed twice"));
        }
        self.release()?;
        if !(2..=127).contains(&self.layer_budget) {
            return Err(invalid(
                "layer_budget",
                format!("{} is out of range 2..=127", self.layer_budget),
            ));
        }
        for name in self.variants.keys() {
            if !is_image_name(name) || name == "latest" {
                return Err(invalid(
                    format!("variants.{name}"),
                    "a variant name must be lowercase letters, digits and -, and not \"latest\"",
                ));
            }
        }
        self.validate_application()?;
        let mut specs = vec![self.image(None)?];
        for v in self.variants.keys() {
            specs.push(self.image(Some(v))?);
        }
        for spec in &specs {
            spec.validate()?;
        }
        Ok(())
    }

    /// An application image takes its packages, accounts and paths from its
    /// base; it declares what it builds and its own config.
    fn validate_application(&self) -> Result<(), SpecError> {
        match (&self.base, &self.build) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(invalid(
                "build",
                "an image with a base is an application image and needs a [build] table",
            )),
            (None, Some(_)) => Err(invalid(
                "base",
                "an application image ([build]) needs base = \"<image>\", the image it is built on",
            )),
            (Some(base), Some(build)) => {
                if !is_image_name(base) || base == &self.name {
                    return Err(invalid(
                        "base",
                        format!("{base:?} must name another image of the project (name or name-variant)"),
                    ));
                }
                let own = [
                    (
                        "packages",
                        !self.packages.include.is_empty() || !self.packages.exclude.is_empty(),
                    ),
                    (
                        "accounts",
                        self.accounts.run_as.is_some()
                            || !self.accounts.users.is_empty()
                            || !self.accounts.groups.is_empty(),
                    ),
                    ("paths", !self.paths.is_empty()),
                    ("variants", !self.variants.is_empty()),
                    ("compression", !self.compression.is_gzip()),
                    ("debian", self.debian.is_some()),
                    ("suites", self.suites.is_some()),
                ];
                if let Some((key, _)) = own.iter().find(|(_, set)| *set) {
                    return Err(invalid(
                        *key,
                        format!("an application image takes its {key} from its base {base:?}; declare them there"),
                    ));
                }
                build.validate().map_err(|p| invalid(p.key, p.message))
            }
        }
    }

    /// The release the definition builds from: `debian`, else its suites',
    /// else the default; `debian` and `suites` must agree.
    pub fn release(&self) -> Result<Release, SpecError> {
        let named = self
            .debian
            .map(Release::by_version)
            .transpose()
            .map_err(|e| invalid("debian", e.to_string()))?;
        let Some(suites) = &self.suites else {
            return Ok(named.unwrap_or(release::DEFAULT));
        };
        if suites.is_empty() {
            return Err(invalid("suites", "at least one suite is required"));
        }
        let of_suites = Release::of_suites(suites).map_err(|e| invalid("suites", e.to_string()))?;
        match named {
            Some(r) if r != of_suites => Err(invalid(
                "debian",
                format!(
                    "{} names {r} but suites name {of_suites}; give one of them",
                    r.version
                ),
            )),
            _ => Ok(of_suites),
        }
    }

    /// The suites packages resolve from (see [`Definition::release`]).
    pub fn suites(&self) -> Result<Vec<String>, SpecError> {
        let release = self.release()?;
        Ok(self
            .suites
            .clone()
            .unwrap_or_else(|| release.default_suites()))
    }

    /// The definition with `variant` applied (`None` = default).
    pub fn image(&self, variant: Option<&str>) -> Result<ImageSpec, SpecError> {
        let mut spec = ImageSpec {
            name: self.name.clone(),
            variant: None,
            description: self.description.clone(),
            archs: self.archs.clone(),
            suites: self.suites()?,
            layer_budget: self.layer_budget,
            compression: self.compression,
            debug: self.debug,
            packages: self.packages.clone(),
            accounts: self.accounts.clone(),
            paths: self.paths.clone(),
            config: self.config.clone(),
            annotations: self.annotations.clone(),
            base: self.base.clone(),
            build: self.build.clone(),
            test: self.test.clone(),
        };
        let Some(name) = variant else {
            return Ok(spec);
        };
        let v = self
            .variants
            .get(name)
            .ok_or_else(|| SpecError::UnknownVariant(name.to_string()))?;
        spec.variant = Some(name.to_string());
        if let Some(d) = &v.description {
            spec.description = d.clone();
        }
        if let Some(d) = v.debug {
            spec.debug = d;
        }
        spec.packages
            .include
            .extend(v.packages.include.iter().cloned());
        spec.packages
            .exclude
            .extend(v.packages.exclude.iter().cloned());
        if v.accounts.run_as.is_some() {
            spec.accounts.run_as = v.accounts.run_as.clone();
        }
        for p in &v.paths {
            spec.paths.retain(|q| q.path != p.path);
            spec.paths.push(p.clone());
        }
        spec.config.env.extend(v.config.env.clone());
        if v.config.entrypoint.is_some() {
            spec.config.entrypoint = v.config.entrypoint.clone();
        }
        if v.config.cmd.is_some() {
            spec.config.cmd = v.config.cmd.clone();
        }
        if v.config.workdir.is_some() {
            spec.config.workdir = v.config.workdir.clone();
        }
        if v.config.stop_signal.is_some() {
            spec.config.stop_signal = v.config.stop_signal.clone();
        }
        spec.annotations.extend(v.annotations.clone());
        Ok(spec)
    }

    /// The default image and every variant.
    pub fn images(&self) -> Result<Vec<ImageSpec>, SpecError> {
        let mut out = vec![self.image(None)?];
        for v in self.variants.keys() {
            out.push(self.image(Some(v))?);
        }
        Ok(out)
    }
}

impl ImageSpec {
    fn key(&self, key: &str) -> String {
        match &self.variant {
            Some(v) => format!("variants.{v}: {key}"),
            None => key.to_string(),
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        if self.base.is_some() {
            // Packages, accounts and paths are the base's (checked there).
            return self.validate_config();
        }
        if self.packages.include.is_empty() {
            return Err(invalid(
                self.key("packages.include"),
                "at least one package is required",
            ));
        }
        for p in &self.packages.include {
            if self.packages.exclude.contains(p) {
                return Err(invalid(
                    self.key("packages.exclude"),
                    format!("{p} is both included and excluded"),
                ));
            }
        }
        let mut names = BTreeSet::new();
        let mut uids = BTreeSet::new();
        for (i, u) in self.accounts.users.iter().enumerate() {
            if !names.insert(&u.name) {
                return Err(invalid(
                    self.key(&format!("accounts.users[{i}].name")),
                    format!("user {} is declared twice", u.name.0),
                ));
            }
            if !uids.insert(u.uid) {
                return Err(invalid(
                    self.key(&format!("accounts.users[{i}].uid")),
                    format!("uid {} is used twice", u.uid.0),
                ));
            }
            if !self.accounts.groups.iter().any(|g| g.gid == u.gid) {
                return Err(invalid(
                    self.key(&format!("accounts.users[{i}].gid")),
                    format!(
                        "user {} has gid {} but no group in accounts.groups has it",
                        u.name.0, u.gid.0
                    ),
                ));
            }
        }
        let mut gnames = BTreeSet::new();
        let mut gids = BTreeSet::new();
        for (i, g) in self.accounts.groups.iter().enumerate() {
            if !gnames.insert(&g.name) {
                return Err(invalid(
                    self.key(&format!("accounts.groups[{i}].name")),
                    format!("group {} is declared twice", g.name.0),
                ));
            }
            if !gids.insert(g.gid) {
                return Err(invalid(
                    self.key(&format!("accounts.groups[{i}].gid")),
                    format!("gid {} is used twice", g.gid.0),
                ));
            }
            for m in &g.members {
                if !names.contains(m) {
                    return Err(invalid(
                        self.key(&format!("accounts.groups[{i}].members")),
                        format!("{} is not a user in accounts.users", m.0),
                    ));
                }
            }
        }
        let (uid, _) = self.user().map_err(|e| match e {
            SpecError::Invalid { key, message } => invalid(self.key(&key), message),
            other => other,
        })?;
        if uid == 0 && !self.debug {
            return Err(invalid(
                self.key("accounts.run_as"),
                "the image would run as root (uid 0); set run_as to a non-root user, or declare debug = true",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, p) in self.paths.iter().enumerate() {
            let key = self.key(&format!("paths[{i}]"));
            if p.path.0 == "/" {
                return Err(invalid(key, "the root directory cannot be declared"));
            }
            if !seen.insert(&p.path) {
                return Err(invalid(key, format!("{} is declared twice", p.path.0)));
            }
            match p.kind {
                PathKind::Symlink => {
                    if p.target.as_deref().is_none_or(str::is_empty) {
                        return Err(invalid(key, format!("symlink {} needs a target", p.path.0)));
                    }
                    if p.content.is_some() || p.mode.is_some() {
                        return Err(invalid(
                            key,
                            format!("symlink {} takes no content or mode", p.path.0),
                        ));
                    }
                }
                PathKind::Directory => {
                    if p.target.is_some() || p.content.is_some() {
                        return Err(invalid(
                            key,
                            format!("directory {} takes no target or content", p.path.0),
                        ));
                    }
                }
                PathKind::File => {
                    if p.target.is_some() {
                        return Err(invalid(key, format!("file {} takes no target", p.path.0)));
                    }
                }
            }
        }
        self.validate_config()
    }

    fn validate_config(&self) -> Result<(), SpecError> {
        if let Some(t) = &self.test {
            if !t.command.first().is_some_and(|p| p.starts_with('/')) {
                return Err(invalid(
                    self.key("test.command"),
                    "the first element must be the program's absolute path in the image",
                ));
            }
        }
        for k in self.config.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(invalid(
                    self.key(&format!("config.env.{k}")),
                    "an environment variable name must be non-empty and contain no = or NUL",
                ));
            }
        }
        if let Some(sig) = &self.config.stop_signal {
            if !is_signal(sig) {
                return Err(invalid(
                    self.key("config.stop_signal"),
                    format!("{sig:?} is not a signal name like SIGTERM or a number"),
                ));
            }
        }
        Ok(())
    }
}

fn is_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    s.strip_prefix("SIG").is_some_and(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-')
    })
}

fn is_image_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.ends_with('-')
}

fn has_duplicates<T: Ord>(items: impl Iterator<Item = T>) -> bool {
    let mut seen = BTreeSet::new();
    items.into_iter().any(|i| !seen.insert(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: serde_json::Value) -> Result<Definition, serde_json::Error> {
        serde_json::from_value(json)
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "name": "x",
            "description": "d",
            "packages": {"include": ["ca-certificates"]},
            "accounts": {
                "run_as": "nonroot",
                "users": [{"name": "nonroot", "uid": 65532, "gid": 65532, "home": "/home/nonroot"}],
                "groups": [{"name": "nonroot", "gid": 65532}]
            }
        })
    }

    #[test]
    fn minimal_definition_validates() {
        let d = def(minimal()).unwrap();
        d.validate(Some("x")).unwrap();
        assert_eq!(d.archs, vec![Arch::Amd64, Arch::Arm64]);
        assert_eq!(d.image(None).unwrap().user().unwrap(), (65532, 65532));
    }

    #[test]
    fn the_release_gives_the_suites_and_a_mix_is_refused() {
        let d = def(minimal()).unwrap();
        assert_eq!(
            d.image(None).unwrap().suites,
            ["bookworm", "bookworm-updates", "bookworm-security"]
        );
        let mut j = minimal();
        j["debian"] = 13.into();
        let d = def(j).unwrap();
        d.validate(Some("x")).unwrap();
        let spec = d.image(None).unwrap();
        assert_eq!(spec.suites, ["trixie", "trixie-updates", "trixie-security"]);
        assert_eq!(spec.release().unwrap().distro(), "debian-13");

        let refused = |debian: Option<u32>, suites: Option<&[&str]>| {
            let mut j = minimal();
            if let Some(n) = debian {
                j["debian"] = n.into();
            }
            if let Some(s) = suites {
                j["suites"] = serde_json::json!(s);
            }
            def(j).unwrap().validate(Some("x")).unwrap_err().to_string()
        };
        let e = refused(Some(15), None);
        assert!(
            e.starts_with("debian: 15 is not a Debian release kiln knows"),
            "{e}"
        );
        let e = refused(None, Some(&["bookworm", "trixie-security"]));
        assert!(
            e.starts_with("suites: \"bookworm\" is Debian 12 but \"trixie-security\" is Debian 13"),
            "{e}"
        );
        let e = refused(Some(13), Some(&["bookworm"]));
        assert!(
            e.contains("13 names Debian 13 (trixie) but suites name Debian 12 (bookworm)"),
            "{e}"
        );
        let e = refused(None, Some(&["sid"]));
        assert!(
            e.starts_with("suites: \"sid\" is not a suite of a Debian release kiln knows"),
            "{e}"
        );
        let e = refused(None, Some(&[]));
        assert_eq!(e, "suites: at least one suite is required");
        // A definition without the keys serializes without them, as before.
        let v = serde_json::to_value(def(minimal()).unwrap()).unwrap();
        assert!(v.get("debian").is_none() && v.get("suites").is_none());
    }

    #[test]
    fn compression_is_gzip_or_zstd_and_gzip_is_not_serialized() {
        let d = def(minimal()).unwrap();
        assert_eq!(d.compression, LayerCompression::Gzip);
        let spec = d.image(None).unwrap();
        // A gzip image's serialized forms (its revision digest and the
        // step inputs) are what they were before the key existed.
        assert!(serde_json::to_value(&d)
            .unwrap()
            .get("compression")
            .is_none());
        assert!(serde_json::to_value(&spec)
            .unwrap()
            .get("compression")
            .is_none());

        let mut j = minimal();
        j["compression"] = "zstd".into();
        j["variants"] = serde_json::json!({"debug": {"debug": true}});
        let d = def(j).unwrap();
        d.validate(Some("x")).unwrap();
        let variant = d.image(Some("debug")).unwrap();
        assert_eq!(variant.compression, LayerCompression::Zstd);
        assert_eq!(
            variant.compression.media_type(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(
            LayerCompression::of_media_type(variant.compression.media_type()),
            Some(LayerCompression::Zstd)
        );

        let mut j = minimal();
        j["compression"] = "brotli".into();
        let e = def(j).unwrap_err().to_string();
        assert!(e.contains("brotli") && e.contains("zstd"), "{e}");
    }

    #[test]
    fn mode_must_be_octal() {
        assert_eq!(Mode::parse("1777").unwrap(), Mode(0o1777));
        assert!(Mode::parse("0789").is_err());
        assert!(Mode::parse("17777").is_err());
        assert!(Mode::parse("").is_err());
    }

    #[test]
    fn unknown_key_is_rejected() {
        let mut j = minimal();
        j["colour"] = "red".into();
        let e = def(j).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn uid_out_of_range_is_rejected() {
        let mut j = minimal();
        j["accounts"]["users"][0]["uid"] = 70000.into();
        assert!(def(j).unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn relative_path_is_rejected() {
        let mut j = minimal();
        j["paths"] = serde_json::json!([{"path": "tmp", "type": "directory"}]);
        assert!(def(j).unwrap_err().to_string().contains("not absolute"));
    }

    #[test]
    fn root_without_debug_is_rejected() {
        let mut j = minimal();
        j["accounts"]["run_as"] = "0".into();
        let e = def(j).unwrap().validate(None).unwrap_err().to_string();
        assert!(e.contains("accounts.run_as"), "{e}");
    }

    #[test]
    fn variant_overlays_base() {
        let mut j = minimal();
        j["variants"] = serde_json::json!({"debug": {
            "debug": true,
            "packages": {"include": ["busybox-static"]},
            "accounts": {"run_as": "0"},
            "config": {"entrypoint": ["/bin/sh"]}
        }});
        let d = def(j).unwrap();
        d.validate(None).unwrap();
        let v = d.image(Some("debug")).unwrap();
        assert_eq!(v.full_name(), "x-debug");
        assert_eq!(v.tag(), "debug");
        assert_eq!(v.packages.include.len(), 2);
        assert_eq!(v.user().unwrap(), (0, 0));
        assert_eq!(
            v.config.entrypoint.as_deref(),
            Some(&["/bin/sh".to_string()][..])
        );
        assert!(matches!(
            d.image(Some("nope")),
            Err(SpecError::UnknownVariant(_))
        ));
    }

    #[test]
    fn variant_with_unknown_key_is_rejected() {
        let mut j = minimal();
        j["variants"] = serde_json::json!({"debug": {"pakages": {}}});
        assert!(def(j).unwrap_err().to_string().contains("pakages"));
    }
}
