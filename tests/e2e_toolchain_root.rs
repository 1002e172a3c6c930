//! The seed's `root` step in the Nix sandbox: pinned .debs unpacked into
//! one tree a toolchain can run in (the shared toolchain roots), shown on
//! the smallest one, busybox-static with its `/bin/sh` link
//! (`nix build .#root-busybox`).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn a_root_holds_the_debs_bytes_and_its_declared_links_and_rebuilds_identically() {
    let root = build(&["root-busybox"]).remove(0);

    // The binary is the .deb's, byte for byte (dpkg-deb reads the .deb the
    // lock pins), executable, and runs.
    let lock = kiln::lock::Lock::read(&project().join("kiln.lock")).unwrap();
    let pkg = &lock.packages["bookworm"][&kiln_seed::spec::Arch::Amd64]["busybox-static"];
    let deb = pkg.store_path("busybox-static");
    assert!(Path::new(&deb).is_file(), "{deb} (kiln fetch adds it)");
    let unpacked = scratch("e2e-root-busybox");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    assert_eq!(
        std::fs::read(root.join("bin/busybox")).unwrap(),
        std::fs::read(unpacked.join("bin/busybox")).unwrap()
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(root.join("bin/busybox"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");
    let said = run(Command::new(root.join("bin/busybox")).args(["echo", "from the root"]));
    assert_eq!(said, "from the root\n");

    // The declared alternative, relative, as the root's own /bin/sh.
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );

    // No store references: a build that enters the root carries none of it.
    let refs = run(Command::new("nix-store")
        .args(["--query", "--references"])
        .arg(&root));
    assert_eq!(refs.trim(), "", "{refs}");

    // Bit-identical on rebuild.
    let again = kiln(&["build", "--rebuild", "root-busybox"]);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn a_program_runs_inside_the_root_through_the_seeds_chroot_step() {
    // `/bin/sh -c ...` of root-busybox, run by the seed (no shell of the
    // host or the sandbox): uid 0 in its own user namespace, and a `/` that
    // holds the root's tree and the sandbox's own mounts, nothing else.
    let out = build(&["root-busybox-check"]).remove(0);
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("uid"), "0\n");
    assert_eq!(read("hello"), "hello\n");
    let listed: Vec<String> = read("ls").lines().map(String::from).collect();
    assert_eq!(
        listed,
        ["bin", "build", "dev", "nix", "proc", "tmp", "usr"],
        "the chroot's /"
    );
    let again = kiln(&["build", "--rebuild", "root-busybox-check"]);
    assert!(again.status.success(), "{}", stderr(&again));
}
