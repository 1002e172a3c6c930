//! Perturbations for `kiln repro` (docs/internals.md): derivation attributes
//! that change how the seed runs but must not change what it builds.
//!
//! - `kilnUmask` (octal): the umask the step runs with.
//! - `kilnReverseOrder` = `1`: the step reads its input JSON with every
//!   object's keys and the order-free lists (a layer's packages and
//!   exclusions, an index's images) reversed, and its output files are
//!   created in reverse order.
//! - `kilnTestNondeterminism` = `1`: the image step writes the time into
//!   `/etc/kiln-nondeterminism`, a deliberately non-deterministic build that
//!   `kiln repro` must catch (its own tests use it).
//!
//! None of these is set by a normal build; lib.nix adds them only from
//! `KILN_PERTURB` in an impure evaluation.

use serde_json::Value;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file the non-determinism test hook writes into the image.
pub const NONDETERMINISM_FILE: &str = "/etc/kiln-nondeterminism";

extern "C" {
    // std has no umask; glibc (linked statically) has.
    fn umask(mask: u32) -> u32;
}

fn flag(name: &str) -> bool {
    std::env::var(name).as_deref() == Ok("1")
}

/// Sets the umask from `kilnUmask`, if given.
pub fn apply_umask() -> Result<(), String> {
    let Ok(text) = std::env::var("kilnUmask") else {
        return Ok(());
    };
    let mask = u32::from_str_radix(&text, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("kilnUmask {text:?} is not an octal mode like 077"))?;
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe { umask(mask) };
    Ok(())
}

/// Whether outputs are to be created in reverse order.
pub fn reverse_order() -> bool {
    flag("kilnReverseOrder")
}

/// The step input after the perturbations that apply to it.
pub fn input(step: &str, input: Vec<u8>) -> Result<Vec<u8>, String> {
    let reverse = reverse_order();
    let nondeterministic = flag("kilnTestNondeterminism") && step == "image";
    if !reverse && !nondeterministic {
        return Ok(input);
    }
    let mut v: Value =
        serde_json::from_slice(&input).map_err(|e| format!("the input is not JSON: {e}"))?;
    if nondeterministic {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let entry = serde_json::json!({
            "path": NONDETERMINISM_FILE,
            "type": "file",
            "content": format!("built at {now} ns by process {}\n", std::process::id()),
        });
        match v.pointer_mut("/definition").and_then(Value::as_object_mut) {
            Some(def) => match def.entry("paths").or_insert_with(|| Value::Array(vec![])) {
                Value::Array(paths) => paths.push(entry),
                _ => return Err("definition.paths is not a list".into()),
            },
            None => return Err("the image input has no definition".into()),
        }
    }
    if reverse {
        let lists: &[&str] = match step {
            "layer" => &["/packages", "/excludePaths"],
            "index" => &["/images"],
            _ => &[],
        };
        for l in lists {
            if let Some(Value::Array(a)) = v.pointer_mut(l) {
                a.reverse();
            }
        }
        let mut out = String::new();
        write_reversed(&v, &mut out);
        return Ok(out.into_bytes());
    }
    Ok(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

/// JSON with every object's keys in reverse order (serde_json would sort them).
fn write_reversed(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().rev().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("a string serializes"));
                out.push(':');
                write_reversed(x, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_reversed(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Where the step writes: `$out` itself, or with `kilnReverseOrder` a
/// scratch directory that [`finish`] copies to `$out` in reverse order.
pub fn output_dir(out: &Path) -> PathBuf {
    if !reverse_order() {
        return out.to_path_buf();
    }
    let top = std::env::var_os("NIX_BUILD_TOP")
        .or_else(|| std::env::var_os("TMPDIR"))
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    top.join("kiln-reverse-order-out")
}

/// Moves the step's output from `written` to `out` (when they differ).
pub fn finish(written: &Path, out: &Path) -> Result<(), String> {
    if written == out {
        return Ok(());
    }
    copy_reversed(written, out).map_err(|e| {
        format!(
            "copying {} to {} in reverse order: {e}",
            written.display(),
            out.display()
        )
    })?;
    fs::remove_dir_all(written).map_err(|e| format!("removing {}: {e}", written.display()))
}

/// Copies a tree, creating the entries of every directory in reverse name order.
fn copy_reversed(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        return std::os::unix::fs::symlink(fs::read_link(from)?, to);
    }
    if meta.is_file() {
        fs::copy(from, to)?;
        return Ok(());
    }
    fs::create_dir(to)?;
    let mut names: Vec<_> = fs::read_dir(from)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names.iter().rev() {
        copy_reversed(&from.join(name), &to.join(name))?;
    }
    fs::set_permissions(to, meta.permissions())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_json_has_the_same_meaning() {
        let v =
            serde_json::json!({"a": 1, "b": {"y": [1, "two", null], "x": true}, "c": "q\"uote"});
        let mut s = String::new();
        write_reversed(&v, &mut s);
        assert_eq!(
            s,
            r#"{"c":"q\"uote","b":{"y":[1,"two",null],"x":true},"a":1}"#
        );
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v);
    }

    #[test]
    fn copies_trees_in_reverse_order() {
        let base = std::env::temp_dir().join(format!("kiln-seed-perturb-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let src = base.join("src");
        fs::create_dir_all(src.join("blobs/sha256")).unwrap();
        fs::write(src.join("blobs/sha256/aa"), b"a").unwrap();
        fs::write(src.join("index.json"), b"{}").unwrap();
        std::os::unix::fs::symlink("index.json", src.join("link")).unwrap();
        finish(&src, &base.join("out")).unwrap();
        assert!(!src.exists());
        assert_eq!(fs::read(base.join("out/blobs/sha256/aa")).unwrap(), b"a");
        assert_eq!(
            fs::read_link(base.join("out/link")).unwrap(),
            Path::new("index.json")
        );
        fs::remove_dir_all(&base).unwrap();
    }
}
