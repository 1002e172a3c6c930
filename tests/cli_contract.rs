//! The CLI contract, black box: every command exits 0 when it did its job
//! and every check passed, 1 when a check failed, 2 when it could not run
//! (bad input, a missing file, a usage error), and says why on stderr.
//! None of these needs Nix or a registry.

mod common;

use common::*;

/// Runs kiln; (exit code, stdout, stderr).
fn code(args: &[&str]) -> (i32, String, String) {
    let out = kiln(args);
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

/// A directory holding an empty but valid OCI layout.
fn empty_layout(name: &str) -> std::path::PathBuf {
    let dir = scratch(name).join("layout");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    dir
}

#[test]
fn verify_tells_could_not_run_from_a_failed_check() {
    let work = scratch("contract-verify");
    let key = cosign_key_pair(&work);
    let key = key.to_str().unwrap();
    // The user's mistakes: exit 2 with a plain message, no check lines.
    for (reference, want) in [
        ("/nonexistent/kiln-layout", "no such layout directory"),
        (
            "oci:/nonexistent/kiln-layout:latest",
            "no such layout directory",
        ),
        ("docker-archive:/tmp/x.tar", "docker-archive: transport"),
        ("scratch-plus:latest", "no registry"),
    ] {
        let (c, out, err) = code(&["verify", reference, "--key", key]);
        assert_eq!(c, 2, "{reference}: {out}{err}");
        assert!(err.contains(want), "{reference}: {err}");
        assert!(
            !out.contains('✗') && !err.contains("https://oci"),
            "{reference}: {out}"
        );
    }
    let layout = empty_layout("contract-verify-layout");
    let (c, _, err) = code(&[
        "verify",
        layout.to_str().unwrap(),
        "--key",
        "/nonexistent/cosign.pub",
    ]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("/nonexistent/cosign.pub"), "{err}");
    // --json still prints a report, with the reason.
    let (c, out, _) = code(&["verify", "/nonexistent/kiln-layout", "--key", key, "--json"]);
    assert_eq!(c, 2);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("no such layout directory"),
        "{report}"
    );
    // A layout that holds no image is a check that failed: nothing there
    // is what the consumer would run.
    let (c, out, _) = code(&["verify", layout.to_str().unwrap(), "--key", key]);
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("lists no image"), "{out}");
}

#[test]
fn usage_and_input_errors_are_2_and_differences_are_1() {
    let layout = empty_layout("contract-diff");
    // clap's own usage errors.
    assert_eq!(code(&["verify"]).0, 2);
    assert_eq!(code(&["frobnicate"]).0, 2);
    // diff: a path that is not a layout cannot be compared.
    let (c, _, err) = code(&["diff", "/nonexistent/a", layout.to_str().unwrap()]);
    assert_eq!(c, 2, "{err}");
    // --help says what the codes mean.
    let (c, out, _) = code(&["--help"]);
    assert_eq!(c, 0);
    assert!(
        out.contains("0 ok, 1 a check failed") && out.contains("2 could not run"),
        "{out}"
    );
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    // `kiln lock --check | head -0`: the reader is gone before kiln writes.
    let out = with_stdout_closed(&mut kiln_cmd(&project(), &["lock", "--check"]));
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc_sigpipe()),
        "{:?}: {err}",
        out.status
    );
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn completions_and_manual_pages_come_from_the_commands() {
    let (c, bash, _) = code(&["completions", "bash"]);
    assert_eq!(c, 0);
    assert!(bash.contains("verify") && bash.contains("--key"), "{bash}");
    // bash itself parses the script.
    let dir = scratch("contract-completions");
    std::fs::write(dir.join("kiln.bash"), &bash).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(dir.join("kiln.bash"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    for shell in ["zsh", "fish"] {
        let (c, out, _) = code(&["completions", shell]);
        assert!(c == 0 && out.contains("verify"), "{shell}: {out}");
    }
    assert_eq!(code(&["completions", "tcsh"]).0, 2);

    let man = dir.join("man");
    let (c, out, err) = code(&["man", "--out", man.to_str().unwrap()]);
    assert_eq!(c, 0, "{err}");
    assert!(out.contains("kiln-verify.1"), "{out}");
    let page = std::fs::read_to_string(man.join("kiln-verify.1")).unwrap();
    assert!(page.contains(".TH KILN-VERIFY 1"), "{page}");
    assert!(page.contains("\\-\\-key"), "{page}");
    let top = std::fs::read_to_string(man.join("kiln.1")).unwrap();
    assert!(top.contains("kiln\\-verify(1)"), "{top}");
}

#[test]
fn every_command_that_reads_a_registry_takes_the_registry_flags() {
    for command in ["push", "pull", "verify", "diff"] {
        let (c, help, _) = code(&[command, "--help"]);
        assert_eq!(c, 0);
        for flag in ["--insecure", "--username", "--password-stdin", "--retries"] {
            assert!(help.contains(flag), "kiln {command} --help lacks {flag}");
        }
    }
}
