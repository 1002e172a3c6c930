//! The `chroot` step: runs one program inside a toolchain root (the `root`
//! step's output) in the Nix sandbox, with no shell between: the seed
//! enters a user and a mount namespace of its own (it has no privilege in
//! the sandbox's, and needs none here), builds a tmpfs root from the
//! toolchain's top-level directories plus /proc, /dev, /nix, /build and
//! /tmp, chroots there and runs the program with exactly the environment
//! the input gives.
//!
//! Programs that exec others (cargo, gcc, build scripts) need this: their
//! ELF interpreter is `/lib64/ld-linux-x86-64.so.2`, which exists only
//! inside the root.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("chroot input: {0}")]
    Input(serde_json::Error),
    #[error("{what}: {error}")]
    Sys { what: String, error: std::io::Error },
    #[error("`{command}` in the root failed ({status})")]
    Failed { command: String, status: String },
    #[error("crate {krate}: {message}")]
    Crate { krate: String, message: String },
    #[error("{}: {error}", dir.display())]
    GoModules {
        dir: PathBuf,
        error: crate::gomod::GoModError,
    },
}

/// Input of the `chroot` step (docs/internals.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The toolchain root (a `root` step's output).
    pub root: PathBuf,
    /// The program and its arguments (the program as a path in the root).
    pub argv: Vec<String>,
    /// The whole environment of the program (nothing else is passed;
    /// `out` is added).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory, in the root (default `/build`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Crates to unpack into `/build/vendor` first, as cargo's vendored
    /// source expects them (a Rust build).
    #[serde(default)]
    pub crates: Vec<VendorCrate>,
    /// A source tree (a store path) to copy to `/build/src`, writable, for
    /// programs that build in their source directory; it is then the
    /// default working directory.
    #[serde(default)]
    pub src: Option<PathBuf>,
    /// A Go build: before it runs, check the source's (`cwd`) vendored
    /// modules against its go.sum ([`crate::gomod`]).
    #[serde(default, rename = "goVendor")]
    pub go_vendor: bool,
}

/// Where [`Input::src`] is copied.
pub const SRC_DIR: &str = "/build/src";

/// Copies a tree (directories, files, links), making it writable by the
/// build user: store paths are read-only.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).map_err(sys(format!("creating {}", to.display())))?;
    let entries = std::fs::read_dir(from).map_err(sys(format!("reading {}", from.display())))?;
    for e in entries {
        let e = e.map_err(sys(format!("reading {}", from.display())))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().map_err(sys("reading an entry's type"))?;
        if ty.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&src).map_err(sys("reading a link"))?;
            std::os::unix::fs::symlink(target, &dst).map_err(sys("copying a link"))?;
        } else {
            std::fs::copy(&src, &dst).map_err(sys(format!("copying {}", src.display())))?;
            let mode = std::fs::metadata(&dst)
                .map_err(sys("reading a mode"))?
                .permissions()
                .mode();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode | 0o200))
                .map_err(sys(format!("making {} writable", dst.display())))?;
        }
    }
    Ok(())
}

/// One `.crate` of a Cargo.lock, with the lock's checksum.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorCrate {
    pub name: String,
    pub version: String,
    /// sha256 of the file, hex (the Cargo.lock `checksum`).
    pub checksum: String,
    pub file: PathBuf,
}

/// Where [`vendor`] unpacks crates.
pub const VENDOR_DIR: &str = "/build/vendor";

/// Unpacks each crate (after checking its bytes against the lock's
/// checksum) into `<dir>/<name>-<version>/` with the
/// `.cargo-checksum.json` cargo's directory source reads.
pub fn vendor(crates: &[VendorCrate], dir: &Path) -> Result<(), Error> {
    use sha2::{Digest as _, Sha256};
    std::fs::create_dir_all(dir).map_err(sys(format!("creating {}", dir.display())))?;
    for c in crates {
        let krate = format!("{} {}", c.name, c.version);
        let err = |message: String| Error::Crate {
            krate: krate.clone(),
            message,
        };
        let bytes = std::fs::read(&c.file)
            .map_err(|e| err(format!("reading {}: {e}", c.file.display())))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != c.checksum {
            return Err(err(format!(
                "{} has sha256 {actual}, the lock pins {}",
                c.file.display(),
                c.checksum
            )));
        }
        let top = format!("{}-{}", c.name, c.version);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let entries = archive.entries().map_err(|e| err(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| err(e.to_string()))?;
            let path = entry.path().map_err(|e| err(e.to_string()))?.into_owned();
            if path.components().next().map(|c| c.as_os_str()) != Some(std::ffi::OsStr::new(&top)) {
                return Err(err(format!("{} is outside {top}/", path.display())));
            }
            // unpack_in refuses `..` and absolute paths.
            entry
                .unpack_in(dir)
                .map_err(|e| err(format!("unpacking {}: {e}", path.display())))?;
        }
        let unpacked = dir.join(&top);
        if !unpacked.join("Cargo.toml").is_file() {
            return Err(err(format!("does not unpack to {top}/Cargo.toml")));
        }
        std::fs::write(
            unpacked.join(".cargo-checksum.json"),
            format!("{{\"files\":{{}},\"package\":\"{}\"}}", c.checksum),
        )
        .map_err(|e| err(format!("writing .cargo-checksum.json: {e}")))?;
    }
    Ok(())
}

fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |error| Error::Sys { what, error }
}

fn check(rc: libc::c_int, what: &str) -> Result<(), Error> {
    if rc == 0 {
        Ok(())
    } else {
        Err(sys(what)(std::io::Error::last_os_error()))
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("store paths hold no NUL")
}

/// `mount --rbind from to`.
fn bind(from: &Path, to: &Path) -> Result<(), Error> {
    // SAFETY: both are valid NUL-terminated paths; the other arguments are
    // null as MS_BIND allows.
    let rc = unsafe {
        libc::mount(
            cstr(from).as_ptr(),
            cstr(to).as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    check(
        rc,
        &format!("binding {} to {}", from.display(), to.display()),
    )
}

/// Enters a new user and mount namespace (uid and gid 0 inside, mapped to
/// the build user) and chroots into a tree made of `root`'s top-level
/// entries and the sandbox's own /proc, /dev, /nix, /build and /tmp. /nix
/// is read-only there but for `out`: the program writes its output, its
/// scratch in /build and /tmp, and nothing else.
fn enter(root: &Path, at: &Path, out: &Path) -> Result<(), Error> {
    // SAFETY: plain system calls with constant arguments.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    check(
        unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) },
        "unshare(CLONE_NEWUSER | CLONE_NEWNS) (are user namespaces enabled? sysctl user.max_user_namespaces)",
    )?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(sys("writing /proc/self/setgroups"))?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).map_err(sys("writing uid_map"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).map_err(sys("writing gid_map"))?;
    // Mounts made here stay here.
    let slash = CString::new("/").unwrap();
    // SAFETY: valid path; no source, type or data for a propagation change.
    check(
        unsafe {
            libc::mount(
                std::ptr::null(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        },
        "making / private",
    )?;
    std::fs::create_dir_all(at).map_err(sys(format!("creating {}", at.display())))?;
    let tmpfs = CString::new("tmpfs").unwrap();
    // SAFETY: valid NUL-terminated strings.
    check(
        unsafe {
            libc::mount(
                tmpfs.as_ptr(),
                cstr(at).as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            )
        },
        "mounting the tmpfs root",
    )?;
    let entries = std::fs::read_dir(root).map_err(sys(format!("reading {}", root.display())))?;
    for e in entries {
        let e = e.map_err(sys(format!("reading {}", root.display())))?;
        let target = at.join(e.file_name());
        let ty = e.file_type().map_err(sys("reading an entry's type"))?;
        if ty.is_symlink() {
            let link = std::fs::read_link(e.path()).map_err(sys("reading a link"))?;
            std::os::unix::fs::symlink(link, &target).map_err(sys("copying a link"))?;
        } else if ty.is_dir() {
            std::fs::create_dir(&target).map_err(sys("creating a mount point"))?;
            bind(&e.path(), &target)?;
        }
    }
    for d in ["proc", "dev", "nix", "build", "tmp"] {
        let target = at.join(d);
        if target.symlink_metadata().is_ok() {
            continue;
        }
        std::fs::create_dir(&target).map_err(sys("creating a mount point"))?;
        bind(&Path::new("/").join(d), &target)?;
    }
    // The sandbox lets the build user create entries in its /nix/store
    // (that is how an output comes to be); here only the output may be
    // written.
    read_only_below(&at.join("nix"))?;
    let out_in_root = at.join(out.strip_prefix("/").unwrap_or(out));
    bind(out, &out_in_root)?;
    std::os::unix::fs::chroot(at).map_err(sys(format!("chroot {}", at.display())))?;
    Ok(())
}

/// Remounts every mount at or below `top` read-only. The sandbox's
/// /nix/store and each input in it are mounts of their own, so the one
/// at `top` is not enough. A mount's own flags (nosuid, nodev, atime...)
/// are kept: a user namespace may not clear what its parent locked.
fn read_only_below(top: &Path) -> Result<(), Error> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(sys("reading /proc/self/mountinfo"))?;
    let top_text = top.to_string_lossy().into_owned();
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        // mountinfo escapes spaces and the like as octal; store paths have none.
        if *point != top_text && !point.starts_with(&format!("{top_text}/")) {
            continue;
        }
        let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        for o in options.split(',') {
            flags |= match o {
                "nosuid" => libc::MS_NOSUID,
                "nodev" => libc::MS_NODEV,
                "noexec" => libc::MS_NOEXEC,
                "noatime" => libc::MS_NOATIME,
                "nodiratime" => libc::MS_NODIRATIME,
                "relatime" => libc::MS_RELATIME,
                _ => 0,
            };
        }
        let path = Path::new(point);
        // SAFETY: a valid path; a remount takes no source, type or data.
        check(
            unsafe {
                libc::mount(
                    std::ptr::null(),
                    cstr(path).as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                )
            },
            &format!("making {point} read-only"),
        )?;
    }
    Ok(())
}

/// The `chroot` step.
pub fn run(input: &[u8], out: &Path) -> Result<(), Error> {
    let input: Input = serde_json::from_slice(input).map_err(Error::Input)?;
    let Some((program, args)) = input.argv.split_first() else {
        return Err(Error::Failed {
            command: String::new(),
            status: "no argv".into(),
        });
    };
    std::fs::create_dir_all(out).map_err(sys(format!("creating {}", out.display())))?;
    if input.go_vendor {
        let dir = PathBuf::from(input.cwd.as_deref().unwrap_or("/build"));
        crate::gomod::vendored_modules(&dir).map_err(|error| Error::GoModules { dir, error })?;
    }
    if !input.crates.is_empty() {
        vendor(&input.crates, Path::new(VENDOR_DIR))?;
    }
    if let Some(src) = &input.src {
        copy_tree(src, Path::new(SRC_DIR))?;
    }
    enter(&input.root, Path::new("/build/.kiln-root"), out)?;
    let default_cwd = if input.src.is_some() {
        SRC_DIR
    } else {
        "/build"
    };
    let cwd = input.cwd.clone().unwrap_or_else(|| default_cwd.into());
    let status = std::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(&input.env)
        .env("out", out)
        .current_dir(&cwd)
        .status()
        .map_err(sys(format!("running {program} in the root")))?;
    if !status.success() {
        return Err(Error::Failed {
            command: input.argv.join(" "),
            status: status.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    fn crate_file(dir: &Path, top: &str) -> (PathBuf, String) {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        let data = b"[package]\nname = \"x\"\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("{top}/Cargo.toml"), &data[..])
            .unwrap();
        let bytes = b.into_inner().unwrap().finish().unwrap();
        let file = dir.join(format!("{top}.crate"));
        std::fs::write(&file, &bytes).unwrap();
        (file, hex::encode(Sha256::digest(&bytes)))
    }

    #[test]
    fn a_read_only_tree_is_copied_writable() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = crate::oci::tests::scratch("chroot-copy");
        let from = tmp.join("from");
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("sub/f"), "x").unwrap();
        std::fs::set_permissions(from.join("sub/f"), std::fs::Permissions::from_mode(0o444))
            .unwrap();
        std::os::unix::fs::symlink("sub/f", from.join("l")).unwrap();
        copy_tree(&from, &tmp.join("to")).unwrap();
        let mode = std::fs::metadata(tmp.join("to/sub/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(
            std::fs::read_link(tmp.join("to/l")).unwrap(),
            Path::new("sub/f")
        );
    }

    #[test]
    fn crates_are_checked_and_unpacked_as_cargo_vendors_them() {
        let tmp = crate::oci::tests::scratch("chroot-vendor");
        let (file, checksum) = crate_file(&tmp, "x-1.0.0");
        let good = VendorCrate {
            name: "x".into(),
            version: "1.0.0".into(),
            checksum: checksum.clone(),
            file: file.clone(),
        };
        let vendor_dir = tmp.join("vendor");
        vendor(std::slice::from_ref(&good), &vendor_dir).unwrap();
        assert!(vendor_dir.join("x-1.0.0/Cargo.toml").is_file());
        let sum = std::fs::read_to_string(vendor_dir.join("x-1.0.0/.cargo-checksum.json")).unwrap();
        assert!(sum.contains(&checksum));

        let tampered = VendorCrate {
            checksum: "0".repeat(64),
            ..good.clone()
        };
        let e = vendor(&[tampered], &tmp.join("v2"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("crate x 1.0.0") && e.contains("the lock pins"),
            "{e}"
        );

        let (other, other_sum) = crate_file(&tmp, "y-2.0.0");
        let wrong = VendorCrate {
            file: other,
            checksum: other_sum,
            ..good
        };
        let e = vendor(&[wrong], &tmp.join("v3")).unwrap_err().to_string();
        assert!(e.contains("outside x-1.0.0/"), "{e}");
    }
}
