//! Policy as code. `kiln policy` and `nix flake check` evaluate
//! the Rego policies of policy/ (and the user's) on the real catalogue,
//! built for real in the Nix sandbox; broken policies, failing rules, a
//! shell in a non-debug image and a root definition are each reported.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory outside the checkout: a project copy inside the git
/// work tree would be read by Nix as part of the git flake (without its
/// untracked files); outside, it is a `path:` flake of its own.
fn outside(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("kiln-e2e-policy").join(name);
    if dir.exists() {
        make_writable(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh directory outside the checkout holding one policy file.
fn rules_dir(name: &str, file: &str, rego: &str) -> PathBuf {
    let rules = outside(name);
    std::fs::write(rules.join(file), rego).unwrap();
    rules
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\nstdout: {}\nstderr: {}",
            stdout(out),
            stderr(out)
        )
    })
}

fn catalogue() -> Vec<String> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(project().join("images")).unwrap() {
        let e = e.unwrap();
        if e.path().join("image.toml").is_file() {
            let d = kiln::definition::load(&e.path().join("image.toml")).unwrap();
            for s in d.definition.images().unwrap() {
                names.push(s.full_name());
            }
        }
    }
    names.sort();
    names
}

/// The architectures the definition of `image` (full name) declares.
fn declared_archs(image: &str) -> Vec<&'static str> {
    for e in std::fs::read_dir(project().join("images")).unwrap() {
        let path = e.unwrap().path().join("image.toml");
        if !path.is_file() {
            continue;
        }
        let d = kiln::definition::load(&path).unwrap();
        for s in d.definition.images().unwrap() {
            if s.full_name() == image {
                let mut archs: Vec<&'static str> = s.archs.iter().map(|a| a.debian()).collect();
                archs.sort_unstable();
                return archs;
            }
        }
    }
    panic!("no definition of {image}")
}

/// Appends a variant that adds `/bin/sh` to scratch-plus without declaring
/// it debug, and a lock entry for it (its package set is scratch-plus's,
/// so the lock inputs are the same).
fn add_shell_variant(dir: &Path) {
    let def = dir.join("images/scratch-plus/image.toml");
    let mut text = std::fs::read_to_string(&def).unwrap();
    text.push_str(
        "\n[variants.shell]\ndescription = \"scratch-plus with a shell, not declared debug\"\n\
         paths = [{ path = \"/bin/sh\", type = \"file\", mode = \"0755\", content = \"#!/bin/sh\\n\" }]\n",
    );
    std::fs::write(&def, text).unwrap();
    let lock_path = dir.join("kiln.lock");
    let mut lock = read_json(&lock_path);
    let entry = lock["images"]["scratch-plus"].clone();
    lock["images"]["scratch-plus-shell"] = entry;
    std::fs::write(&lock_path, kiln::json::pretty(&lock)).unwrap();
}

#[test]
fn the_catalogue_passes_the_default_policies_on_every_platform() {
    require_setup();
    let out = kiln(&["policy", "--json"]);
    let report = json_of(&out);
    assert!(
        out.status.success(),
        "kiln policy failed:\n{}",
        kiln::policy::render(
            &serde_json::from_value::<Vec<_>>(report["violations"].clone()).unwrap()
        )
    );
    // Every image once (reported definition by definition, each with its
    // variants).
    let mut evaluated: Vec<String> = report["evaluated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["image"].as_str().unwrap().to_string())
        .collect();
    evaluated.sort();
    assert_eq!(evaluated, catalogue());
    for e in report["evaluated"].as_array().unwrap() {
        let archs = e["archs"].as_object().unwrap();
        let name = e["image"].as_str().unwrap();
        assert_eq!(
            archs.keys().map(String::as_str).collect::<Vec<_>>(),
            declared_archs(name),
            "{e}"
        );
        for (arch, size) in archs {
            assert!(size["compressed"].as_u64().unwrap() > 0, "{arch}: {size}");
            println!(
                "figure: {} ({arch}) {} bytes compressed, {} files",
                e["image"], size["compressed"], size["files"]
            );
        }
    }
    // Nothing denied; the debug images are flagged (warn) each time.
    let violations = report["violations"].as_array().unwrap();
    assert!(violations.iter().all(|v| v["level"] == "warn"));
    for image in catalogue().iter().filter(|i| i.ends_with("-debug")) {
        assert!(
            violations
                .iter()
                .any(|v| v["image"] == image.as_str() && v["rule"] == "kiln.debug"),
            "{image} not flagged"
        );
    }
    let rules = report["rules"].as_object().unwrap();
    assert_eq!(rules.len(), 10, "{rules:?}");
    println!(
        "figure: policy evaluation of the catalogue ({} images, {} rule packages): {} s",
        evaluated.len(),
        rules.len(),
        report["elapsed"]
    );
}

#[test]
fn nix_flake_check_runs_the_policies_on_every_image() {
    require_setup();
    let out = Command::new("nix")
        .args(["flake", "check", "--print-build-logs"])
        .arg(project())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let checks = Command::new("nix")
        .args(["eval", "--json"])
        .arg(format!("{}#checks.x86_64-linux", project().display()))
        .args(["--apply", "builtins.attrNames"])
        .output()
        .unwrap();
    let names: Vec<String> = serde_json::from_slice(&checks.stdout).unwrap();
    let want: Vec<String> = catalogue().iter().map(|i| format!("{i}-policy")).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(names, want_sorted);
    // A check's output is its report.
    let out = Command::new("nix")
        .args(["build", "--no-link", "--json"])
        .arg(format!(
            "{}#checks.x86_64-linux.scratch-plus-policy",
            project().display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report =
        read_json(&Path::new(built[0]["outputs"]["out"].as_str().unwrap()).join("report.json"));
    assert_eq!(report["image"], "scratch-plus");
    assert_eq!(report["violations"], serde_json::json!([]));
    assert!(report["rules"]
        .as_array()
        .unwrap()
        .contains(&"kiln.shell".into()));
}

#[test]
fn a_shell_in_a_non_debug_variant_fails_kiln_policy_and_nix_flake_check() {
    require_setup();
    let dir = project_copy("shell-variant");
    add_shell_variant(&dir);

    let out = kiln_in(&dir, &["policy", "--image", "scratch-plus-shell"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    for arch in ["amd64", "arm64"] {
        assert!(
            text.contains(&format!(
                "DENY kiln.shell scratch-plus-shell ({arch}) path /bin/sh: /bin/sh is a shell (file) in an image not declared debug = true [policy/shell.rego]"
            )),
            "{text}"
        );
    }
    assert!(
        stderr(&out).contains("policy violation(s) denied"),
        "{}",
        stderr(&out)
    );
    // The other images of the copy still pass.
    let ok = kiln_in(&dir, &["policy", "--image", "scratch-plus-debug"]);
    assert!(ok.status.success(), "{}", stdout(&ok));

    // The same policy, inside the sandbox.
    let check = Command::new("nix")
        .args(["flake", "check", "--print-build-logs"])
        .arg(format!("path:{}", dir.display()))
        .output()
        .unwrap();
    assert!(!check.status.success(), "nix flake check passed");
    let log = stderr(&check);
    assert!(log.contains("kiln-policy-scratch-plus-shell"), "{log}");
    assert!(
        log.contains("DENY kiln.shell scratch-plus-shell (amd64) path /bin/sh"),
        "{log}"
    );
}

#[test]
fn a_debug_image_checked_as_a_non_debug_one_is_denied_its_shell_and_root() {
    require_setup();
    let debug = build(&["scratch-plus-debug"]).remove(0);
    let out = kiln(&[
        "policy",
        "--image",
        "scratch-plus",
        "--layout",
        debug.to_str().unwrap(),
        "--json",
    ]);
    assert!(!out.status.success());
    let report = json_of(&out);
    let denied: Vec<(String, String, String)> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["level"] == "deny")
        .map(|v| {
            (
                v["rule"].as_str().unwrap().to_string(),
                v["arch"].as_str().unwrap_or("-").to_string(),
                v["path"]
                    .as_str()
                    .or(v["field"].as_str())
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    for arch in ["amd64", "arm64"] {
        for (rule, at) in [
            ("kiln.shell", "/bin/sh"),
            ("kiln.shell", "/bin/busybox"),
            ("kiln.shell", "config.Entrypoint"),
            ("kiln.user", "config.User"),
            ("kiln.lock", "/var/lib/dpkg/status.d/busybox-static"),
            ("kiln.size", "size.compressed"),
        ] {
            assert!(
                denied.contains(&(rule.into(), arch.into(), at.into())),
                "{rule} {arch} {at} not in {denied:?}"
            );
        }
    }

    // A name in the layout is resolved as every kiln command resolves it:
    // `DIR:debug-amd64` judges that platform alone; a name that is not
    // there is an error naming the ones that are.
    let one = format!("{}:debug-amd64", debug.display());
    let out = kiln(&[
        "policy",
        "--image",
        "scratch-plus",
        "--layout",
        &one,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json_of(&out);
    let archs: std::collections::BTreeSet<&str> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["arch"].as_str())
        .collect();
    assert_eq!(archs, ["amd64"].into_iter().collect(), "{report}");
    let nope = format!("{}:nope", debug.display());
    let out = kiln(&["policy", "--image", "scratch-plus", "--layout", &nope]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no entry named \"nope\"") && stderr(&out).contains("debug-amd64"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn root_without_debug_is_reported_by_policy_though_the_loader_refuses_it() {
    require_setup();
    let dir = project_copy("root-definition");
    let def = dir.join("images/scratch-plus/image.toml");
    let text = std::fs::read_to_string(&def).unwrap().replacen(
        "run_as = \"nonroot\"",
        "run_as = \"root\"",
        1,
    );
    std::fs::write(&def, text).unwrap();

    let out = kiln_in(&dir, &["policy", "--definitions-only"]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("DENY kiln.user scratch-plus (definition) field accounts.run_as: the image runs as root (user root, uid 0) but is not declared debug = true [policy/user.rego]"),
        "{text}"
    );
    assert!(
        text.contains("DENY kiln.definition scratch-plus (definition)")
            && text.contains("accounts.run_as"),
        "{text}"
    );

    // A user's own rules see the same definition.
    let rules = rules_dir(
        "root-rules",
        "root.rego",
        "package acme.root\n\nimport rego.v1\n\ndeny contains {\"msg\": \"acme forbids root\", \"field\": \"accounts.run_as\"} if {\n\tinput.kind == \"definition\"\n\tinput.user.uid == 0\n\tnot input.debug\n}\n",
    );
    let out = kiln_in(
        &dir,
        &[
            "policy",
            "--definitions-only",
            "--no-default-policies",
            "--policy",
            rules.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(!out.status.success());
    let report = json_of(&out);
    let acme: Vec<&Value> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["rule"] == "acme.root")
        .collect();
    assert_eq!(acme.len(), 1, "{report}");
    assert_eq!(acme[0]["image"], "scratch-plus");
    assert_eq!(acme[0]["arch"], Value::Null);
    assert_eq!(acme[0]["msg"], "acme forbids root");
}

#[test]
fn a_policy_that_does_not_parse_is_an_error_naming_file_and_line() {
    let rules = rules_dir(
        "broken-rules",
        "broken.rego",
        "package acme.broken\n\nimport rego.v1\n\ndeny contains msg if {\n\tmsg := \n}\n",
    );
    let out = kiln(&[
        "policy",
        "--definitions-only",
        "--policy",
        rules.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let file = rules.join("broken.rego");
    assert!(
        err.contains(&format!("{}: not a valid Rego policy", file.display())),
        "{err}"
    );
    assert!(err.contains(&format!("--> {}:6:", file.display())), "{err}");
    assert!(stdout(&out).is_empty(), "nothing is reported as evaluated");
}

#[test]
fn a_rule_that_fails_at_evaluation_is_named() {
    let rules = rules_dir(
        "failing-rule",
        "bad.rego",
        "package acme.bad\n\nimport rego.v1\n\ndeny contains msg if {\n\tn := to_number(input.name)\n\tmsg := sprintf(\"%v\", [n])\n}\n",
    );
    let out = kiln(&[
        "policy",
        "--definitions-only",
        "--image",
        "scratch-plus",
        "--policy",
        rules.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "rule acme.bad.deny ({}) failed on the definition of image scratch-plus",
            rules.join("bad.rego").display()
        )),
        "{err}"
    );
}

#[test]
fn user_warnings_print_without_failing_and_json_carries_them() {
    let rules = rules_dir(
        "warn-rules",
        "vendor.rego",
        "package acme.vendor\n\nimport rego.v1\n\nwarn contains {\"msg\": sprintf(\"%v: no acme vendor\", [input.image]), \"field\": \"annotations\"} if {\n\tinput.kind == \"definition\"\n\tinput.definition.annotations[\"org.opencontainers.image.vendor\"] != \"acme\"\n}\n",
    );
    std::fs::write(rules.join("README.md"), "not a policy\n").unwrap();
    let out = kiln(&[
        "policy",
        "--definitions-only",
        "--image",
        "scratch-plus",
        "--policy",
        rules.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_of(&out);
    let warns: Vec<&Value> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["rule"] == "acme.vendor")
        .collect();
    // scratch-plus and its variants, each once (definitions only).
    assert!(!warns.is_empty());
    assert!(warns.iter().all(|w| w["level"] == "warn"));
    assert!(report["rules"]
        .as_object()
        .unwrap()
        .contains_key("acme.vendor"));
    assert!(report["rules"]
        .as_object()
        .unwrap()
        .contains_key("kiln.shell"));
}

#[test]
fn an_unlocked_image_is_reported_not_built() {
    require_setup();
    let dir = project_copy("unlocked");
    let text = std::fs::read_to_string(dir.join("images/scratch-plus/image.toml"))
        .unwrap()
        .replacen("name = \"scratch-plus\"", "name = \"extra\"", 1);
    std::fs::create_dir_all(dir.join("images/extra")).unwrap();
    std::fs::write(dir.join("images/extra/image.toml"), text).unwrap();
    let out = kiln_in(&dir, &["policy", "--image", "extra", "--json"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let report = json_of(&out);
    for image in ["extra", "extra-debug"] {
        assert!(
            report["violations"].as_array().unwrap().iter().any(|v| {
                v["image"] == image
                    && v["rule"] == "kiln.lock"
                    && v["msg"]
                        == format!("kiln.lock has no entry for image {image}; run `kiln lock`")
                            .as_str()
            }),
            "{report}"
        );
    }
    // Nothing was built: only the definitions were evaluated.
    for e in report["evaluated"].as_array().unwrap() {
        assert_eq!(e["archs"], serde_json::json!({}), "{e}");
    }
}

#[test]
fn kiln_build_fails_on_a_denied_rule_unless_skipped_and_the_skip_is_in_the_provenance() {
    require_setup();
    let dir = project_copy("build-gate");
    add_shell_variant(&dir);

    // A good build links ./result; a denied one moves nothing.
    let link = dir.join("result");
    let good = kiln_in(
        &dir,
        &["build", "scratch-plus", "-o", link.to_str().unwrap()],
    );
    assert!(good.status.success(), "{}", stderr(&good));
    let before = std::fs::read_link(&link).unwrap();
    let denied = kiln_in(
        &dir,
        &["build", "scratch-plus-shell", "-o", link.to_str().unwrap()],
    );
    assert_eq!(denied.status.code(), Some(1), "{}", stdout(&denied));
    assert_eq!(std::fs::read_link(&link).unwrap(), before);
    let err = stderr(&denied);
    assert!(err.contains("DENY kiln.shell scratch-plus-shell"), "{err}");
    assert!(
        err.contains("policy violation(s) denied") && err.contains("--skip-policy"),
        "{err}"
    );
    assert!(!dir
        .join(".kiln/provenance/scratch-plus-shell.intoto.json")
        .exists());

    let skipped = kiln_in(&dir, &["build", "--skip-policy", "scratch-plus-shell"]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    let statement = read_json(&dir.join(".kiln/provenance/scratch-plus-shell.intoto.json"));
    let bd = &statement["predicate"]["buildDefinition"];
    assert_eq!(
        bd["externalParameters"]["policy"]["enforced"], false,
        "{bd}"
    );
    assert_eq!(bd["internalParameters"]["policy"]["denied"], 2, "{bd}");
}

#[test]
fn sign_signs_what_the_image_builds_to_now_or_says_to_build_it() {
    require_setup();
    let dir = project_copy("sign-after-change");
    let env = |args: &[&str]| {
        kiln_cmd(&dir, args)
            .env("COSIGN_PASSWORD", "first-hour")
            .output()
            .unwrap()
    };
    let built = env(&["build", "scratch-plus"]);
    assert!(built.status.success(), "{}", stderr(&built));
    let key = dir.join("cosign");
    let made = env(&["keygen", "--output-key-prefix", key.to_str().unwrap()]);
    assert!(made.status.success(), "{}", stderr(&made));

    // The definition changes (a description is no lock input): the last
    // provenance now describes an image that is no longer what it builds to.
    let toml = dir.join("images/scratch-plus/image.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let changed = text.replacen("description = \"", "description = \"Changed: ", 1);
    assert_ne!(changed, text);
    std::fs::write(&toml, changed).unwrap();
    let signed = dir.join("signed");
    let key_file = dir.join("cosign.key");
    let args = [
        "sign",
        "scratch-plus",
        "--key",
        key_file.to_str().unwrap(),
        "-o",
        signed.to_str().unwrap(),
    ];
    let stale = env(&args);
    assert_eq!(stale.status.code(), Some(2), "{}", stderr(&stale));
    let err = stderr(&stale);
    assert!(err.contains("now builds to"), "{err}");
    assert!(
        err.contains("run `kiln build scratch-plus`, then sign"),
        "{err}"
    );
    assert!(!signed.exists());

    // Built again, it signs.
    let rebuilt = env(&["build", "scratch-plus"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    let ok = env(&args);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(signed.join("index.json").is_file());
}
