//! What the probe reports and how it is judged against what the image
//! definition promises.

use super::*;

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

pub(super) fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

pub(super) fn zero_caps(hex: &str) -> bool {
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
