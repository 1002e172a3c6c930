//! Runtime tests: run an image for real with podman + runc (docs/policy.md) and
//! let a probe report from inside what the container can do.
//!
//! The probe (`probe/`, Go, static, built here for amd64 and arm64) is added
//! as one extra layer to a *test copy* of the image: a new layout under
//! `.kiln/test/` with the image's layers, the probe layer, and a new config
//! and manifest. The catalogue image is never modified. arm64 images run
//! under `qemu-aarch64-static`, bind-mounted into the container so that the
//! probe still sees the container's namespaces, read-only root and dropped
//! capabilities.
//!
//! Podman reads only the project's configuration (`.kiln/podman/`, written
//! here): runc (crun fails on this machine's hybrid cgroups), cgroupfs,
//! file events, no network by default, vfs storage in the project.

use crate::fsutil::write_atomic;
use kiln_seed::digest::Digest;
use kiln_seed::oci::{self, Layout, LayoutWriter, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE};
use kiln_seed::spec::{Arch, ImageSpec};
use kiln_seed::tarwrite::{self, Entry};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the probe lands in the test image.
pub const PROBE_PATH: &str = "/kiln-probe";
/// Where qemu-aarch64-static is mounted for arm64 images.
pub const QEMU_PATH: &str = "/kiln-qemu";
/// The annotation that marks a manifest as a test copy.
pub const TEST_ANNOTATION: &str = "dev.kiln.test";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
    #[error("image {image}: layout {}", layout.display())]
    Layout {
        image: String,
        layout: PathBuf,
        #[source]
        source: oci::Error,
    },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error("image {image} ({arch}): the probe's report is not valid JSON ({error}); it printed: {stdout}")]
    Report {
        image: String,
        arch: Arch,
        error: String,
        stdout: String,
    },
    #[error("{0} was not found in PATH; scripts/setup installs it")]
    Missing(String),
    #[error(transparent)]
    Replace(#[from] crate::fsutil::ReplaceError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |error| RuntimeError::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

use crate::tool::{checked, display, run as output};

fn which(program: &str) -> Result<PathBuf, RuntimeError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| RuntimeError::Missing(program.to_string()))
}

// ---------------------------------------------------------------- probe

/// The probe's sources, relative to the project.
pub const PROBE_DIR: &str = "probe";

/// Builds the probe for `arch` (static, `CGO_ENABLED=0`, reproducible
/// flags) and returns the binary. Builds are cached under
/// `.kiln/probe/<key>/` by the hash of the sources and the Go version.
pub fn build_probe(project: &Path, arch: Arch) -> Result<PathBuf, RuntimeError> {
    let go = which("go")?;
    let src = project.join(PROBE_DIR);
    let version = checked(Command::new(&go).arg("version"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .map_err(io("reading", &src))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "go" || e == "mod" || e == "sum")
        })
        .collect();
    files.sort();
    let mut key = version.into_bytes();
    for f in &files {
        key.extend(f.file_name().unwrap().to_string_lossy().as_bytes());
        key.push(0);
        key.extend(std::fs::read(f).map_err(io("reading", f))?);
        key.push(0);
    }
    let key = Digest::of(&key).hex();
    let dir = project
        .join(".kiln/probe")
        .join(&key[..16])
        .join(arch.debian());
    let bin = dir.join("kiln-probe");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let tmp = dir.join(format!(".kiln-probe-{}", std::process::id()));
    let home = project.join(".kiln/go");
    let mut cmd = Command::new(&go);
    cmd.current_dir(&src)
        .args(["build", "-trimpath", "-ldflags=-s -w -buildid=", "-o"])
        .arg(&tmp)
        .arg(".")
        .env("CGO_ENABLED", "0")
        .env("GOOS", "linux")
        .env("GOARCH", arch.debian())
        .env("GOFLAGS", "-mod=mod")
        // The probe uses the standard library only: nothing is downloaded.
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", home.join("cache"))
        .env("GOPATH", home.join("path"));
    let result = checked(&mut cmd);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, &bin).map_err(io("renaming", &tmp))?;
    Ok(bin)
}

// ---------------------------------------------------------------- test layout

/// Writes the test copy of one platform of the image in `layout`: its
/// layers plus one layer holding the probe at [`PROBE_PATH`]; a new config
/// (diff_id and history appended) and manifest. `dest` must not exist; on
/// failure nothing is left there. Returns the tag (`test-<arch>`).
pub fn write_test_layout(
    image: &str,
    layout: &Path,
    arch: Arch,
    probe: &Path,
    dest: &Path,
) -> Result<String, RuntimeError> {
    let lerr = |source| RuntimeError::Layout {
        image: image.to_string(),
        layout: layout.to_path_buf(),
        source,
    };
    let src = Layout::open(layout).map_err(lerr)?;
    let manifests =
        kiln_seed::policy::platform_manifests(&src, image).map_err(|e| RuntimeError::Image {
            image: image.into(),
            message: e.to_string(),
        })?;
    let mut found = None;
    for d in manifests {
        let m = src.read_manifest(&d).map_err(lerr)?;
        let bytes = src.read_blob(m.config()).map_err(lerr)?;
        let config: Value = serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Image {
            image: image.into(),
            message: format!("config: {e}"),
        })?;
        if config["architecture"] == arch.debian() {
            found = Some((m, config));
            break;
        }
    }
    let (manifest, mut config) = found.ok_or_else(|| RuntimeError::Image {
        image: image.into(),
        message: format!("{} holds no {arch} image", layout.display()),
    })?;
    let bytes = std::fs::read(probe).map_err(io("reading", probe))?;
    let created = config["created"].as_str().unwrap_or_default().to_string();
    let layer = tarwrite::write_layer(vec![Entry::file(
        PROBE_PATH.trim_start_matches('/'),
        bytes,
        0o755,
        0,
        0,
        0,
    )])
    .map_err(io("writing the probe layer for", probe))?;

    let tag = format!("test-{arch}");
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    let tmp = parent.join(format!(
        ".{}.partial-{}",
        dest.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> Result<(), RuntimeError> {
        let werr = |source| RuntimeError::Layout {
            image: image.to_string(),
            layout: tmp.clone(),
            source,
        };
        let w = LayoutWriter::create(&tmp).map_err(werr)?;
        for l in manifest.layers() {
            let d = oci::kiln_digest(l.digest()).map_err(|message| RuntimeError::Image {
                image: image.into(),
                message,
            })?;
            w.copy_blob(&src.blob_path(&d), &d, l.size(), "the image's layer")
                .map_err(werr)?;
        }
        w.put_blob(&layer.gz).map_err(werr)?;
        let diff_ids =
            config["rootfs"]["diff_ids"]
                .as_array_mut()
                .ok_or_else(|| RuntimeError::Image {
                    image: image.into(),
                    message: "config has no rootfs.diff_ids".into(),
                })?;
        diff_ids.push(json!(layer.diff_id.to_string()));
        let history = config
            .as_object_mut()
            .expect("a config is an object")
            .entry("history")
            .or_insert(json!([]));
        if let Some(h) = history.as_array_mut() {
            h.push(json!({
                "created": created,
                "created_by": "kiln test: the probe, in the test copy of the image only",
                "comment": PROBE_PATH,
            }));
        }
        let (config_desc, _) = w.put_document(CONFIG_MEDIA_TYPE, &config).map_err(werr)?;
        let mut layers = manifest.layers().clone();
        layers.push(oci::descriptor(
            LAYER_MEDIA_TYPE,
            &layer.digest,
            layer.size(),
        ));
        let mut annotations: BTreeMap<String, String> = manifest
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        annotations.insert(TEST_ANNOTATION.into(), "probe".into());
        let new = oci::new_manifest(config_desc, layers, &annotations);
        let (mut desc, _) = w
            .put_document(oci::MANIFEST_MEDIA_TYPE, &new)
            .map_err(werr)?;
        desc.set_platform(Some(oci::platform(arch)));
        let mut refs = BTreeMap::new();
        refs.insert(oci::REF_NAME.to_string(), tag.clone());
        oci::set_annotations(&mut desc, &refs);
        w.write_index(vec![desc]).map_err(werr)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    crate::fsutil::replace_dir(&tmp, dest)?;
    Ok(tag)
}

// ---------------------------------------------------------------- podman

/// The project's podman configuration (runc, cgroupfs, no network).
pub const CONTAINERS_CONF: &str = "[containers]
# Limits of their own: the host's may be unlimited, which runc rejects.
default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]
netns = \"none\"

[engine]
# crun fails on this machine's hybrid cgroup hierarchy.
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
";

/// A podman that reads only the project's configuration.
#[derive(Debug, Clone)]
pub struct Podman {
    dir: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Podman {
    /// Writes `.kiln/podman/{containers,storage,registries}.conf` and
    /// `policy.json` (when their content changed) and returns a podman
    /// that uses them.
    pub fn setup(project: &Path) -> Result<Podman, RuntimeError> {
        which("podman")?;
        which("runc")?;
        let project = std::path::absolute(project).map_err(io("resolving", project))?;
        let dir = project.join(".kiln/podman");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("storage").display(),
            dir.join("run").display()
        );
        let files: [(&str, String); 4] = [
            ("containers.conf", CONTAINERS_CONF.to_string()),
            ("storage.conf", storage),
            // Images come from local layouts only; no registry is searched.
            (
                "registries.conf",
                "unqualified-search-registries = []\n".into(),
            ),
            // Test copies are made here and are not signed.
            (
                "policy.json",
                "{\"default\": [{\"type\": \"insecureAcceptAnything\"}]}\n".into(),
            ),
        ];
        for (name, content) in &files {
            let p = dir.join(name);
            if std::fs::read_to_string(&p).ok().as_deref() != Some(content.as_str()) {
                write_atomic(&p, content.as_bytes()).map_err(io("writing", &p))?;
            }
        }
        Ok(Podman {
            env: vec![
                ("CONTAINERS_CONF", dir.join("containers.conf").into()),
                ("CONTAINERS_STORAGE_CONF", dir.join("storage.conf").into()),
                (
                    "CONTAINERS_REGISTRIES_CONF",
                    dir.join("registries.conf").into(),
                ),
            ],
            dir,
        })
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Copies `oci:<layout>:<tag>` into podman's storage as
    /// `localhost/kiln-test/<image>:<tag>-<pid>` and returns that name.
    /// skopeo copies it (with the same storage configuration): `podman
    /// pull` would name the image after the layout's path, which is not a
    /// valid reference under `.kiln/`; the pid keeps concurrent runs apart.
    pub fn pull(&self, layout: &Path, tag: &str, image: &str) -> Result<String, RuntimeError> {
        let name = format!("localhost/kiln-test/{image}:{tag}-{}", std::process::id());
        let mut cmd = Command::new(which("skopeo")?);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["copy", "--quiet", "--policy"])
            .arg(self.dir.join("policy.json"))
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("containers-storage:{name}"));
        checked(&mut cmd)?;
        Ok(name)
    }

    pub fn remove(&self, id: &str) {
        let _ = self.command().args(["rmi", "--force", id]).output();
    }
}

/// The hardened `podman run` flags every test run uses: read-only root,
/// every capability dropped, no privilege gain, no network.
pub const RUN_FLAGS: [&str; 8] = [
    "--rm",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "none",
    "--pull=never",
];

// ---------------------------------------------------------------- checks

/// What the probe printed (probe/main.go).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    pub arch: String,
    pub uid: i64,
    pub gid: i64,
    pub euid: i64,
    pub egid: i64,
    pub groups: Vec<i64>,
    pub user_name: String,
    pub capabilities: ProbeCaps,
    pub rootfs: ProbeRootfs,
    pub shell: ProbeShell,
    pub ca_bundle: ProbeCa,
    pub zoneinfo: ProbeZone,
    pub network: ProbeNetwork,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeCaps {
    pub effective: String,
    pub permitted: String,
    pub inheritable: String,
    pub bounding: String,
    pub ambient: String,
    pub no_new_privs: Option<i64>,
    pub seccomp: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRootfs {
    pub writable: bool,
    pub write_error: String,
    pub write_errno: String,
    pub tmp_writable: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeShell {
    pub path: String,
    pub present: bool,
    pub ran: bool,
    pub exec_error: String,
    pub exec_errno: String,
    pub output: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeCa {
    pub path: String,
    pub from_env: bool,
    pub present: bool,
    pub read_error: String,
    pub certificates: u64,
    pub parse_errors: u64,
    pub system_pool: bool,
    pub system_pool_error: String,
    pub chains_verified: u64,
    pub verify_error: String,
    pub sample: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeZone {
    pub name: String,
    pub resolved: bool,
    pub error: String,
    pub winter: String,
    pub summer: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeNetwork {
    pub interfaces: Vec<String>,
    pub routes: u64,
    pub dial_target: String,
    pub dialed: bool,
    pub dial_error: String,
    pub dial_errno: String,
}

/// What an image promises, from its definition and its lock entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expect {
    pub arch: Arch,
    pub uid: u32,
    pub gid: u32,
    pub debug: bool,
    /// SSL_CERT_FILE is set or ca-certificates is installed.
    pub tls: bool,
    /// tzdata is installed.
    pub tzdata: bool,
}

impl Expect {
    pub fn of(spec: &ImageSpec, arch: Arch, packages: &[String]) -> Result<Expect, RuntimeError> {
        let (uid, gid) = spec.user().map_err(|e| RuntimeError::Image {
            image: spec.full_name(),
            message: e.to_string(),
        })?;
        let has = |p: &str| packages.iter().any(|x| x == p);
        Ok(Expect {
            arch,
            uid,
            gid,
            debug: spec.debug,
            tls: spec.config.env.contains_key("SSL_CERT_FILE") || has("ca-certificates"),
            tzdata: has("tzdata"),
        })
    }
}

/// One verdict of a runtime test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

fn zero_caps(hex: &str) -> bool {
    !hex.is_empty() && u64::from_str_radix(hex, 16) == Ok(0)
}

/// Judges a probe report against what the image promises. `shell_id` is
/// the output of `/bin/sh -c id` in a debug image.
pub fn judge(r: &ProbeReport, e: &Expect, shell_id: Option<&str>) -> Vec<Check> {
    let mut out = vec![check(
        "arch",
        r.arch == e.arch.debian(),
        format!("the probe runs as {} code", r.arch),
    )];
    let ids_ok = r.uid == i64::from(e.uid)
        && r.euid == i64::from(e.uid)
        && r.gid == i64::from(e.gid)
        && r.egid == i64::from(e.gid)
        && (e.debug || r.uid != 0);
    out.push(check(
        "user",
        ids_ok,
        format!(
            "uid {} gid {} ({}); the image declares {}:{}",
            r.uid, r.gid, r.user_name, e.uid, e.gid
        ),
    ));
    let c = &r.capabilities;
    out.push(check(
        "capabilities",
        zero_caps(&c.effective)
            && zero_caps(&c.permitted)
            && zero_caps(&c.inheritable)
            && zero_caps(&c.ambient),
        format!(
            "CapEff {} CapPrm {} CapInh {} CapAmb {} (--cap-drop=ALL)",
            c.effective, c.permitted, c.inheritable, c.ambient
        ),
    ));
    out.push(check(
        "no-new-privileges",
        c.no_new_privs == Some(1),
        format!(
            "NoNewPrivs {}",
            c.no_new_privs
                .map_or("absent".to_string(), |n| n.to_string())
        ),
    ));
    out.push(check(
        "read-only root",
        !r.rootfs.writable && r.rootfs.write_errno == "EROFS",
        if r.rootfs.writable {
            "a file could be created in /".to_string()
        } else {
            r.rootfs.write_error.clone()
        },
    ));
    if e.debug {
        let id = shell_id.unwrap_or_default();
        out.push(check(
            "debug shell runs as root",
            r.shell.present && id.contains("uid=0"),
            format!(
                "/bin/sh -c id: {}",
                if id.is_empty() { "(no output)" } else { id }
            ),
        ));
    } else {
        out.push(check(
            "no shell",
            !r.shell.present && !r.shell.ran && r.shell.exec_errno == "ENOENT",
            if r.shell.ran {
                format!("{} ran: {}", r.shell.path, r.shell.output)
            } else {
                r.shell.exec_error.clone()
            },
        ));
    }
    if e.tls {
        let ca = &r.ca_bundle;
        out.push(check(
            "CA bundle",
            ca.present
                && ca.certificates > 0
                && ca.parse_errors == 0
                && ca.system_pool
                && ca.chains_verified == ca.certificates,
            format!(
                "{}: {} certificates, {} unparsable, {} chains verified through the system pool{}",
                ca.path,
                ca.certificates,
                ca.parse_errors,
                ca.chains_verified,
                [&ca.read_error, &ca.system_pool_error, &ca.verify_error]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| format!("; {s}"))
                    .collect::<String>()
            ),
        ));
    }
    let z = &r.zoneinfo;
    if e.tzdata {
        out.push(check(
            "zoneinfo",
            z.resolved && z.winter == "EST" && z.summer == "EDT",
            if z.resolved {
                format!("{}: {} in winter, {} in summer", z.name, z.winter, z.summer)
            } else {
                z.error.clone()
            },
        ));
    } else {
        // No tzdata: the zone must not resolve (or the probe read the host's).
        out.push(check(
            "no zoneinfo (no tzdata)",
            !z.resolved,
            if z.resolved {
                format!("{} resolved without tzdata", z.name)
            } else {
                z.error.clone()
            },
        ));
    }
    let n = &r.network;
    out.push(check(
        "no network",
        n.interfaces == ["lo"] && n.routes == 0 && !n.dialed && n.dial_errno == "ENETUNREACH",
        format!(
            "interfaces {:?}, {} routes, {}",
            n.interfaces,
            n.routes,
            if n.dialed {
                format!("{} is routable", n.dial_target)
            } else {
                n.dial_error.clone()
            }
        ),
    ));
    out.push(check(
        "probe ran cleanly",
        r.problems.is_empty(),
        r.problems.join("; "),
    ));
    out
}

// ---------------------------------------------------------------- running

/// The outcome for one platform of one image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchResult {
    pub image: String,
    pub arch: Arch,
    pub expect: Expect,
    pub checks: Vec<Check>,
    pub probe: ProbeReport,
    /// The exact command line of the probe run.
    pub command: String,
    /// Pull + runs + removal.
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl ArchResult {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Options of [`test_image`].
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Only these platforms (empty: every platform of the image).
    pub archs: Vec<Arch>,
    /// Keep the test copies (`.kiln/test/<image>/<arch>-<pid>`) and the
    /// images in podman's storage.
    pub keep: bool,
}

/// Tests every platform of `spec`'s image built at `layout`. `packages`
/// holds the locked package names per arch (for what to expect).
pub fn test_image(
    project: &Path,
    spec: &ImageSpec,
    layout: &Path,
    packages: &BTreeMap<Arch, Vec<String>>,
    opts: &TestOptions,
) -> Result<Vec<ArchResult>, RuntimeError> {
    // Podman wants absolute paths in its configuration and references.
    let project = &std::path::absolute(project).map_err(io("resolving", project))?;
    let podman = Podman::setup(project)?;
    let image = spec.full_name();
    let mut out = Vec::new();
    for &arch in &spec.archs {
        if !opts.archs.is_empty() && !opts.archs.contains(&arch) {
            continue;
        }
        let probe = build_probe(project, arch)?;
        let expect = Expect::of(spec, arch, packages.get(&arch).map_or(&[][..], |v| v))?;
        let start = Instant::now();
        // One copy per process: concurrent runs of the same image must not
        // replace each other's layout while podman reads it.
        let dest = project
            .join(".kiln/test")
            .join(&image)
            .join(format!("{arch}-{}", std::process::id()));
        let result = write_test_layout(&image, layout, arch, &probe, &dest).and_then(|tag| {
            let id = podman.pull(&dest, &tag, &image)?;
            let result = run_probe(&podman, &id, arch, &expect, &image);
            if !opts.keep {
                podman.remove(&id);
            }
            result
        });
        if !opts.keep {
            let _ = std::fs::remove_dir_all(&dest);
            // The image's directory too, once no other run uses it.
            let _ = std::fs::remove_dir(dest.parent().expect("under .kiln/test"));
        }
        let (probe, command, shell_id) = result?;
        let checks = judge(&probe, &expect, shell_id.as_deref());
        out.push(ArchResult {
            image: image.clone(),
            arch,
            expect,
            checks,
            probe,
            command,
            elapsed: start.elapsed(),
        });
    }
    Ok(out)
}

/// `podman run` arguments up to the image: the hardened flags, and for
/// arm64 qemu mounted in as the entrypoint.
fn run_args(arch: Arch, entrypoint: &str) -> Result<Vec<String>, RuntimeError> {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(RUN_FLAGS.iter().map(|s| s.to_string()));
    match arch {
        Arch::Amd64 => args.push(format!("--entrypoint={entrypoint}")),
        Arch::Arm64 => {
            let qemu = which("qemu-aarch64-static")?;
            args.push("--volume".into());
            args.push(format!("{}:{QEMU_PATH}:ro", qemu.display()));
            args.push(format!("--entrypoint={QEMU_PATH}"));
        }
    }
    Ok(args)
}

type ProbeRun = (ProbeReport, String, Option<String>);

fn run_probe(
    podman: &Podman,
    id: &str,
    arch: Arch,
    expect: &Expect,
    image: &str,
) -> Result<ProbeRun, RuntimeError> {
    let mut cmd = podman.command();
    cmd.args(run_args(arch, PROBE_PATH)?).arg(id);
    if arch == Arch::Arm64 {
        cmd.arg(PROBE_PATH);
    }
    let command = display(&cmd);
    let stdout = checked(&mut cmd)?;
    let report: ProbeReport = serde_json::from_str(&stdout).map_err(|e| RuntimeError::Report {
        image: image.into(),
        arch,
        error: e.to_string(),
        stdout: stdout.clone(),
    })?;
    let shell_id = if expect.debug {
        let mut sh = podman.command();
        sh.args(run_args(arch, "/bin/sh")?).arg(id);
        if arch == Arch::Arm64 {
            sh.arg("/bin/sh");
        }
        // busybox runs `id` as an applet in-process, so this works under
        // qemu too (where a child could not exec arm64 code: no binfmt).
        sh.args(["-c", "id"]);
        let out = output(&mut sh)?;
        let text = out.text().trim().to_string();
        Some(if out.ok {
            text
        } else {
            format!("{text} (failed, {}: {})", out.status, out.stderr.trim())
        })
    } else {
        None
    };
    Ok((report, command, shell_id))
}

/// Summary line of one platform's result.
pub fn render(results: &[ArchResult]) -> String {
    let mut s = String::new();
    for r in results {
        s.push_str(&format!(
            "{} ({}) {} in {:.2} s\n",
            r.image,
            r.arch,
            if r.passed() { "PASS" } else { "FAIL" },
            r.elapsed.as_secs_f64()
        ));
        for c in &r.checks {
            s.push_str(&format!(
                "  {} {}: {}\n",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ProbeReport {
        serde_json::from_value(json!({
            "arch": "amd64", "uid": 65532, "gid": 65532, "euid": 65532, "egid": 65532,
            "groups": [65532], "userName": "nonroot",
            "capabilities": {"effective": "0000000000000000", "permitted": "0000000000000000",
                "inheritable": "0000000000000000", "bounding": "0000000000000000",
                "ambient": "0000000000000000", "noNewPrivs": 1, "seccomp": 2},
            "rootfs": {"writable": false, "writeError": "read-only file system", "writeErrno": "EROFS", "tmpWritable": true},
            "shell": {"path": "/bin/sh", "present": false, "ran": false,
                "execError": "fork/exec /bin/sh: no such file or directory", "execErrno": "ENOENT", "output": ""},
            "caBundle": {"path": "/etc/ssl/certs/ca-certificates.crt", "fromEnv": true, "present": true,
                "readError": "", "certificates": 3, "parseErrors": 0, "systemPool": true,
                "systemPoolError": "", "chainsVerified": 3, "verifyError": "", "sample": "CN=x"},
            "zoneinfo": {"name": "America/New_York", "resolved": false, "error": "unknown time zone", "winter": "", "summer": ""},
            "network": {"interfaces": ["lo"], "routes": 0, "dialTarget": "192.0.2.1:9", "dialed": false,
                "dialError": "network is unreachable", "dialErrno": "ENETUNREACH"},
            "problems": []
        }))
        .unwrap()
    }

    fn expect() -> Expect {
        Expect {
            arch: Arch::Amd64,
            uid: 65532,
            gid: 65532,
            debug: false,
            tls: true,
            tzdata: false,
        }
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_hardened_report_passes() {
        assert_eq!(
            failed(&judge(&report(), &expect(), None)),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn each_weakness_fails_its_own_check() {
        let mut r = report();
        r.uid = 0;
        r.euid = 0;
        assert_eq!(failed(&judge(&r, &expect(), None)), vec!["user"]);
        let mut r = report();
        r.capabilities.effective = "00000000a80425fb".into();
        assert_eq!(failed(&judge(&r, &expect(), None)), vec!["capabilities"]);
        let mut r = report();
        r.rootfs.writable = true;
        assert_eq!(failed(&judge(&r, &expect(), None)), vec!["read-only root"]);
        let mut r = report();
        r.shell.present = true;
        r.shell.ran = true;
        assert_eq!(failed(&judge(&r, &expect(), None)), vec!["no shell"]);
        let mut r = report();
        r.ca_bundle.chains_verified = 2;
        assert_eq!(failed(&judge(&r, &expect(), None)), vec!["CA bundle"]);
        let mut r = report();
        r.network.interfaces.push("eth0".into());
        assert_eq!(failed(&judge(&r, &expect(), None)), vec!["no network"]);
        let mut r = report();
        r.zoneinfo.resolved = true;
        assert_eq!(
            failed(&judge(&r, &expect(), None)),
            vec!["no zoneinfo (no tzdata)"]
        );
        let e = Expect {
            tzdata: true,
            ..expect()
        };
        assert_eq!(failed(&judge(&report(), &e, None)), vec!["zoneinfo"]);
        let mut r = report();
        r.arch = "arm64".into();
        assert_eq!(failed(&judge(&r, &expect(), None)), vec!["arch"]);
    }

    #[test]
    fn debug_images_need_a_root_shell() {
        let e = Expect {
            debug: true,
            uid: 0,
            gid: 0,
            ..expect()
        };
        let mut r = report();
        r.uid = 0;
        r.euid = 0;
        r.gid = 0;
        r.egid = 0;
        r.shell.present = true;
        r.shell.ran = true;
        assert_eq!(
            failed(&judge(&r, &e, Some("uid=0(root) gid=0(root)"))),
            Vec::<&str>::new()
        );
        assert_eq!(
            failed(&judge(&r, &e, Some("uid=65532"))),
            vec!["debug shell runs as root"]
        );
    }
}
