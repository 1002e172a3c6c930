//! The in-container probe: a static Go program (probe/) built for each
//! platform, with the host's Go, reproducibly.

use super::*;

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
