//! A new user's first hour, in one fresh copy of the project: the README's
//! commands from top to bottom, then the mistakes people make. Each
//! mistake must be answered with what it names and the fix it suggests,
//! and exit 0 (did its job), 1 (a check failed) or 2 (could not run); none
//! may lose a file.
//!
//! The machine is set up first (`scripts/setup`, which `scripts/test`
//! runs): the builds here are the ones it already made, so this test is
//! about what kiln says, not about building.

mod common;

use common::registry::Registry;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSWORD: &str = "first-hour";

/// The user's checkout: a git clone of the project (every image, the
/// applications' sources and the shipped policies), as `git clone` would
/// leave it.
fn checkout() -> PathBuf {
    let dir = project_copy_with("first-hour", &["images", "apps"]);
    git_commit_all(&dir, "kiln, as cloned");
    dir
}

/// `kiln args...` run in `dir` as the user would, without `--project`.
fn user(dir: &Path, args: &[&str]) -> Output {
    kiln_as_user(dir, PASSWORD, args)
}

/// Asserts the exit code and that stderr (and stdout) say each of `says`
/// and none of `never`; returns both texts.
#[track_caller]
fn answers(out: &Output, code: i32, says: &[&str], never: &[&str]) -> String {
    let text = format!("{}{}", stdout(out), stderr(out));
    assert_eq!(out.status.code(), Some(code), "{text}");
    for s in says {
        assert!(text.contains(s), "does not say {s:?}:\n{text}");
    }
    for s in never {
        assert!(!text.contains(s), "says {s:?}:\n{text}");
    }
    text
}

/// `kiln sign scratch-plus --key cosign.key extra...`, as the user runs it.
fn sign_scratch_plus(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["sign", "scratch-plus", "--key", "cosign.key"];
    args.extend_from_slice(extra);
    user(dir, &args)
}

fn nix_run_verify(dir: &Path, args: &[&str]) -> Output {
    Command::new("nix")
        .current_dir(dir)
        .args(["run", ".#verify", "--"])
        .args(args)
        .output()
        .expect("running nix run .#verify")
}

/// The files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_first_hour() {
    require_setup();
    let dir = checkout();
    let reg = Registry::start();
    let repo = format!("{}/kiln/scratch-plus", reg.host());

    // ---- The README, top to bottom ------------------------------------
    answers(
        &user(&dir, &["build", "scratch-plus", "-o", "result"]),
        0,
        &[],
        &[],
    );
    let result = dir.join("result");
    assert!(result.join("index.json").is_file());
    skopeo_inspect(&result, "latest", &[]);
    answers(
        &user(&dir, &["keygen"]),
        0,
        &["cosign.key", "cosign.pub"],
        &[],
    );
    let (key, public) = (dir.join("cosign.key"), dir.join("cosign.pub"));
    assert!(key.is_file() && public.is_file());
    answers(
        &sign_scratch_plus(&dir, &[]),
        0,
        &[".kiln/signed/scratch-plus"],
        &[],
    );
    let v = nix_run_verify(
        &dir,
        &[
            ".kiln/signed/scratch-plus",
            "--key",
            "cosign.pub",
            "--source",
            ".",
        ],
    );
    answers(&v, 0, &["✓"], &["✗"]);

    // Signed for the repository it goes to, pushed, pulled, verified there.
    answers(
        &sign_scratch_plus(&dir, &["--reference", &repo]),
        0,
        &[],
        &[],
    );
    let target = format!("{repo}:latest");
    answers(
        &user(&dir, &["push", "scratch-plus", &target]),
        0,
        &["pushed"],
        &[],
    );
    let pulled = dir.join("pulled");
    answers(
        &user(&dir, &["pull", &target, pulled.to_str().unwrap()]),
        0,
        &[],
        &[],
    );
    answers(
        &nix_run_verify(&dir, &[&target, "--key", "cosign.pub"]),
        0,
        &["✓"],
        &["✗"],
    );

    // ---- The mistakes -------------------------------------------------

    // Nothing is deleted: `sign -o` and `pull --force` into a directory
    // that is not a layout kiln wrote (a checkout, a folder with one
    // file) are refused, naming it, and leave every file there.
    let precious = dir.join("precious");
    std::fs::create_dir_all(precious.join(".git")).unwrap();
    std::fs::write(precious.join("notes.txt"), "mine").unwrap();
    std::fs::write(precious.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let before = files(&precious);
    answers(
        &sign_scratch_plus(&dir, &["-o", "precious"]),
        2,
        &["precious"],
        &[],
    );
    answers(
        &user(&dir, &["pull", "--force", &target, "precious"]),
        2,
        &["precious"],
        &[],
    );
    assert_eq!(files(&precious), before);

    // No flag that cannot work: keyless signing is offered, and without
    // an identity token it says where one comes from (it works against a
    // Sigstore instance: tests/e2e_keyless.rs).
    answers(
        &user(&dir, &["sign", "--help"]),
        0,
        &["--key", "--keyless"],
        &[],
    );
    answers(
        &user(&dir, &["sign", "scratch-plus", "--keyless"]),
        2,
        &["SIGSTORE_ID_TOKEN", "id-token: write", "kiln keygen"],
        &[],
    );

    // A denied build moves nothing, and sign then signs nothing stale.
    let link = std::fs::read_link(&result).unwrap();
    let rule = dir.join("policy/first-hour.rego");
    std::fs::write(
        &rule,
        "package firsthour\n\nimport rego.v1\n\ndeny contains {\"msg\": \"this team ships no scratch-plus\", \"field\": \"name\"} if {\n\tinput.kind == \"definition\"\n\tinput.name == \"scratch-plus\"\n}\n",
    )
    .unwrap();
    answers(
        &user(&dir, &["build", "scratch-plus", "-o", "result"]),
        1,
        &["this team ships no scratch-plus", "--skip-policy"],
        &[],
    );
    assert_eq!(std::fs::read_link(&result).unwrap(), link);
    std::fs::remove_file(&rule).unwrap();

    // A misspelt name: the images and the closest one, no Nix internals.
    for args in [
        &["build", "scratch-plu"][..],
        &["push", "scratch-plu", &target],
        &["sign", "scratch-plu", "--key", "cosign.key"],
        &["fetch", "scratch-plu"],
    ] {
        answers(
            &user(&dir, args),
            2,
            &["no image named scratch-plu", "did you mean scratch-plus?"],
            &[
                "nix eval",
                "attribute 'scratch-plu' missing",
                "run `kiln lock`",
                "kiln build scratch-plu",
            ],
        );
    }
    answers(
        &user(&dir, &["sign", "/nope", "--key", "cosign.key"]),
        2,
        &["/nope does not exist"],
        &["kiln build /nope"],
    );

    // A new image git does not track: the git add to run.
    let new = copy_definition(&dir, "scratch-plus", "scratch-plus-too");
    answers(
        &user(&dir, &["build", "scratch-plus-too"]),
        2,
        &["run `git add images/scratch-plus-too/image.toml`"],
        &["attribute"],
    );
    std::fs::remove_dir_all(&new).unwrap();

    // A misspelt key: the file, the line and the key.
    let toml = dir.join("images/scratch-plus/image.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replacen("\n[", "\nfrobnicate = 1\n\n[", 1)).unwrap();
    answers(
        &user(&dir, &["build", "scratch-plus"]),
        2,
        &["images/scratch-plus/image.toml", "frobnicate"],
        &["column 511"],
    );
    std::fs::write(&toml, &text).unwrap();

    // From a subdirectory, kiln finds the project as git does.
    answers(
        &user(&dir.join("images/scratch-plus"), &["lock", "--check"]),
        0,
        &["kiln.lock is up to date"],
        &[],
    );
    answers(
        &user(&dir.join("images"), &["policy", "--image", "scratch-plus"]),
        0,
        &[],
        &[],
    );

    // verify: the user's mistakes could not run (2), with a plain message;
    // an image that fails a check is 1.
    for (args, says) in [
        (
            &["/nonexistent/layout", "--key", "cosign.pub"][..],
            "no such layout directory",
        ),
        (
            &["oci:/nonexistent/layout:latest", "--key", "cosign.pub"],
            "no such layout directory",
        ),
        (
            &[".kiln/signed/scratch-plus", "--key", "missing.pub"],
            "missing.pub",
        ),
        (&["result", "--key", "cosign.pub"], "not signed"),
    ] {
        let mut all = vec!["verify"];
        all.extend_from_slice(args);
        answers(&user(&dir, &all), 2, &[says], &["✗", "https://oci"]);
    }
    // A closed pipe ends the output quietly.
    let out = with_stdout_closed(Command::new(kiln_bin()).current_dir(&dir).args([
        "verify",
        ".kiln/signed/scratch-plus",
        "--key",
        "cosign.pub",
    ]));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_ne!(out.status.code(), Some(101));

    // Verify by a platform's digest, as runtimes resolve it.
    let index = read_json(&pulled.join("index.json"));
    let root = read_json(&blob(
        &pulled,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let amd64 = root["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    answers(
        &nix_run_verify(&dir, &[&format!("{repo}@{amd64}"), "--key", "cosign.pub"]),
        0,
        &["✓"],
        &["✗"],
    );

    // Signed for one repository, pushed to another: refused before
    // anything is sent, with the sign command that fixes it.
    let elsewhere = format!("{}/kiln/elsewhere", reg.host());
    answers(
        &user(
            &dir,
            &["push", "scratch-plus", &format!("{elsewhere}:latest")],
        ),
        2,
        &[
            &format!("--reference {elsewhere}`"),
            "--no-signatures",
            "matchRepository",
        ],
        &[],
    );
    assert!(reg.tags("kiln/elsewhere").is_empty());

    // One reference syntax: skopeo's forms everywhere.
    answers(
        &user(
            &dir,
            &[
                "push",
                "oci:.kiln/signed/scratch-plus:latest",
                &format!("docker://{target}"),
            ],
        ),
        0,
        &["pushed"],
        &[],
    );

    // Nothing listening: one line that names the address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = answers(
        &user(
            &dir,
            &["push", "result", &format!("127.0.0.1:{port}/kiln/x:v1")],
        ),
        2,
        &[&format!("127.0.0.1:{port}"), "is the registry running"],
        &["retrying"],
    );
    assert_eq!(text.matches("connection refused").count(), 1, "{text}");

    // The user's own files are all still there.
    assert!(key.is_file() && public.is_file() && pulled.join("index.json").is_file());
}
