//! Building on a Nix remote builder over `ssh-ng://`, as a team shares
//! build machines for a large catalogue: the "builder" is a second Nix
//! store on this machine, reached through a real sshd on 127.0.0.1 whose
//! key only runs `nix-daemon --stdio` for that store (a forced command, as
//! on a dedicated build host), with the host key checked. The "laptop" is a
//! fresh store that may build nothing itself (`max-jobs = 0`): `kiln fetch`
//! and `kiln build` run there, the seed comes from a signed binary cache,
//! every step runs on the builder, and the result is the committed digest.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// sshd on 127.0.0.1:`port`, accepting only `client_public`, which may run
/// nothing but the Nix daemon of the builder's store.
fn start_sshd(dir: &Path, port: u16, host_key: &Path, client_public: &str, daemon: &str) -> Sshd {
    // sshd's privilege separation directory, which its package's service
    // would create.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let authorized = dir.join("authorized_keys");
    std::fs::write(
        &authorized,
        format!("command=\"{daemon}\",restrict {client_public}\n"),
    )
    .unwrap();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nUsePAM no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             StrictModes no\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    let sshd = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
        .spawn()
        .map(Sshd)
        .expect("sshd (openssh-server, installed by scripts/setup)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return sshd;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "sshd did not listen on 127.0.0.1:{port}: {}",
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

#[test]
fn a_laptop_that_builds_nothing_gets_the_committed_digest_from_a_remote_builder() {
    require_setup();
    build(&["scratch-plus"]);
    let dir = scratch("e2e-remote-builder");

    // A signed cache of the inputs only (the seed, the .debs): the outputs
    // must be built, and on the builder.
    let (cache_secret, cache_public) = nix_cache_key_pair(&dir, "kiln-test-builders-1");
    let cache_public = std::fs::read_to_string(&cache_public).unwrap();
    let cache = format!("file://{}", dir.join("cache").display());
    cache_push_scratch_plus(&cache, &cache_secret, &[]);

    let (host_key, host_public) = ssh_key(&dir, "builder-host");
    let (client_key, client_public) = ssh_key(&dir, "laptop-key");
    let builder_root = dir.join("builder");
    let port = free_port();
    // The builder takes what it can from the cache itself
    // (builders-use-substitutes), as each machine of a build farm would.
    let daemon = format!(
        "nix-daemon --stdio --store local?root={} --option substituters {cache} \
         --option trusted-public-keys {}",
        builder_root.display(),
        cache_public.trim()
    );
    let _sshd = start_sshd(&dir, port, &host_key, &client_public, &daemon);
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_public}\n")).unwrap();

    let laptop_root = dir.join("laptop");
    // A store that does not exist yet is an error to Nix, not an empty one.
    for root in [&laptop_root, &builder_root] {
        std::fs::create_dir_all(root).unwrap();
    }
    let builder_uri = format!("ssh-ng://root@127.0.0.1?ssh-key={}", client_key.display());
    let nix_config = format!(
        "builders = {builder_uri} x86_64-linux\nmax-jobs = 0\nbuilders-use-substitutes = true\n\
         substituters = {cache}\ntrusted-public-keys = {}\n",
        cache_public.trim()
    );
    let ssh_options = format!(
        "-p {port} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        known_hosts.display()
    );
    let on_laptop = |args: &[&str]| {
        kiln_cmd(&project(), args)
            .env(
                "NIX_REMOTE",
                format!("local?root={}", laptop_root.display()),
            )
            .env("NIX_CONFIG", &nix_config)
            .env("NIX_SSHOPTS", &ssh_options)
            .output()
            .unwrap()
    };
    let fetched = on_laptop(&["fetch", "scratch-plus"]);
    assert!(fetched.status.success(), "kiln fetch: {}", stderr(&fetched));
    let built = on_laptop(&["build", "--json", "scratch-plus"]);
    let log = stderr(&built);
    assert!(built.status.success(), "kiln build: {log}");
    assert!(
        log.contains("-kiln-layer-amd64-ca-certificates.drv' on 'ssh-ng://root@127.0.0.1")
            && log.contains("-kiln-scratch-plus.drv' on 'ssh-ng://root@127.0.0.1"),
        "the steps did not run on the builder:\n{log}"
    );
    let outputs: serde_json::Value = serde_json::from_str(&stdout(&built)).unwrap();
    let out = outputs[0]["out"].as_str().unwrap().trim_start_matches('/');
    // The result was copied back from the builder, and is the digest
    // committed for the image.
    for root in [&laptop_root, &builder_root] {
        let summary = read_json(&root.join(out).join("image.json"));
        let committed = read_json(&project().join("images/scratch-plus/digests.json"));
        assert_eq!(
            summary["index"]["digest"],
            committed["images"]["scratch-plus"]["index"],
            "{}",
            root.display()
        );
    }
}
