//! A misspelt image name gets the same answer from every command: the
//! project's images and the closest one, exit 2, and no Nix internals.

mod common;

use common::*;

#[test]
fn every_command_answers_a_typo_with_the_images_and_the_closest_one() {
    for args in [
        &["build", "scratch-plu"][..],
        &["push", "scratch-plu", "127.0.0.1:5999/x"],
        &["repro", "scratch-plu"],
        &["sign", "scratch-plu", "--key", "no-such.key"],
        &["fetch", "scratch-plu"],
        &["lock", "scratch-plu"],
        &["test", "scratch-plu"],
    ] {
        let out = kiln(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("no image named scratch-plu (known: base, "),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("did you mean scratch-plus?"),
            "{args:?}: {err}"
        );
        for internal in [
            "getAttr",
            "nix eval",
            "attribute 'scratch-plu' missing",
            "run `kiln lock`",
            "run `kiln build",
        ] {
            assert!(!err.contains(internal), "{args:?} says {internal:?}: {err}");
        }
    }
}

#[test]
fn sign_says_a_path_that_is_not_a_layout_is_not_one() {
    let out = kiln(&["sign", "/nope/layout", "--key", "no-such.key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nope/layout does not exist"),
        "{}",
        stderr(&out)
    );
    let out = kiln(&["sign", "docs", "--key", "no-such.key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("docs is not an OCI image layout"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn kiln_finds_its_project_from_a_subdirectory_as_git_does() {
    let out = std::process::Command::new(kiln_bin())
        .current_dir(project().join("images/scratch-plus"))
        .env_remove("KILN_PROJECT")
        .args(["lock", "--check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!("{}/kiln.lock is up to date", project().display())),
        "{said}"
    );
    let out = std::process::Command::new(kiln_bin())
        .args(["--project", "/nonexistent-kiln-project", "lock", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--project /nonexistent-kiln-project: no such directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_definition_git_does_not_track_is_named_with_the_git_add_to_run() {
    let dir = project_copy("cli-untracked-definition");
    git_commit_all(&dir, "the project");
    let new = copy_definition(&dir, "scratch-plus", "scratch-plus-too");
    let out = kiln_in(&dir, &["build", "scratch-plus-too"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("images/scratch-plus-too/image.toml is not tracked by git")
            && err.contains("run `git add images/scratch-plus-too/image.toml`"),
        "{err}"
    );

    // A dirty checkout is said once by kiln, not once per nix invocation.
    require_setup();
    std::fs::remove_dir_all(&new).unwrap();
    let flake = dir.join("flake.nix");
    let text = std::fs::read_to_string(&flake).unwrap();
    std::fs::write(&flake, format!("{text}# an uncommitted edit\n")).unwrap();
    let out = kiln_in(&dir, &["build", "scratch-plus-amd64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("Git tree"), "{err}");
    assert_eq!(err.matches("uncommitted changes").count(), 1, "{err}");
}

#[test]
fn a_push_to_a_port_where_nothing_listens_says_so_once() {
    require_setup();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}/kiln-e2e/nothing-here");
    let out = kiln(&["push", "scratch-plus", &target]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("connection refused").count(), 1, "{err}");
    assert!(err.contains("is the registry running"), "{err}");
    assert!(!err.contains("retrying"), "{err}");
}
