//! podman with the project's own configuration and storage (runc,
//! cgroupfs, no network), as the tests run it.

use super::*;

/// The project's podman configuration (runc, cgroupfs, no network).
pub const CONTAINERS_CONF: &str = "[containers]
# Limits of their own: the host's may be unlimited, which runc rejects.
default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]
netns = \"none\"

[engine]
# crun fails on this machine's hybrid cgroup hierarchy.
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
";

/// A podman that reads only the project's configuration.
#[derive(Debug, Clone)]
pub struct Podman {
    pub(super) dir: PathBuf,
    /// The user's podman storage for kiln ([`state_dir`]).
    state: PathBuf,
    pub(super) env: Vec<(&'static str, OsString)>,
}

/// Where podman's storage for `kiln test` lives: `$XDG_DATA_HOME/kiln/podman`
/// (`~/.local/share/kiln/podman`), independent of any checkout.
pub fn state_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("kiln")
        .join("podman")
}

impl Podman {
    /// Writes `.kiln/podman/{containers,storage,registries}.conf` and
    /// `policy.json` (when their content changed) and returns a podman
    /// that uses them.
    pub fn setup(project: &Path) -> Result<Podman, RuntimeError> {
        which("podman")?;
        which("runc")?;
        let project = std::path::absolute(project).map_err(io("resolving", project))?;
        let dir = project.join(".kiln/podman");
        // Podman's database records where its storage is; kept inside the
        // checkout, a copied or moved checkout would find a database that
        // points at the old place ("image not known"). The storage is the
        // user's, shared by every checkout (test images carry the pid).
        let state = state_dir();
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            state.join("storage").display(),
            state.join("run").display()
        );
        let files: [(&str, String); 4] = [
            ("containers.conf", CONTAINERS_CONF.to_string()),
            ("storage.conf", storage),
            // Images come from local layouts only; no registry is searched.
            (
                "registries.conf",
                "unqualified-search-registries = []\n".into(),
            ),
            // Test copies are made here and are not signed.
            (
                "policy.json",
                "{\"default\": [{\"type\": \"insecureAcceptAnything\"}]}\n".into(),
            ),
        ];
        for (name, content) in &files {
            let p = dir.join(name);
            if std::fs::read_to_string(&p).ok().as_deref() != Some(content.as_str()) {
                write_atomic(&p, content.as_bytes()).map_err(io("writing", &p))?;
            }
        }
        Ok(Podman {
            env: vec![
                ("CONTAINERS_CONF", dir.join("containers.conf").into()),
                ("CONTAINERS_STORAGE_CONF", dir.join("storage.conf").into()),
                (
                    "CONTAINERS_REGISTRIES_CONF",
                    dir.join("registries.conf").into(),
                ),
            ],
            dir,
            state,
        })
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Copies `oci:<layout>:<tag>` into podman's storage as
    /// `localhost/kiln-test/<image>:<tag>-<pid>` and returns that name.
    /// skopeo copies it (with the same storage configuration): `podman
    /// pull` would name the image after the layout's path, which is not a
    /// valid reference under `.kiln/`; the pid keeps concurrent runs apart.
    pub fn pull(&self, layout: &Path, tag: &str, image: &str) -> Result<String, RuntimeError> {
        let name = format!("localhost/kiln-test/{image}:{tag}-{}", std::process::id());
        let _storage = self.lock_storage()?;
        let mut cmd = Command::new(which("skopeo")?);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["copy", "--quiet", "--policy"])
            .arg(self.dir.join("policy.json"))
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("containers-storage:{name}"));
        checked(&mut cmd)?;
        Ok(name)
    }

    pub fn remove(&self, id: &str) {
        let _storage = self.lock_storage();
        let _ = self.command().args(["rmi", "--force", id]).output();
    }

    /// Adding an image to the shared storage and removing one take turns,
    /// across processes: a removal deletes the layers no committed image
    /// uses, including one that a concurrent copy has just found present
    /// and is about to use ("writing blob: adding layer ...: layer not
    /// known"). The lock is released when the returned file is dropped.
    fn lock_storage(&self) -> Result<std::fs::File, RuntimeError> {
        let path = self.state.join("storage.lock");
        std::fs::create_dir_all(&self.state).map_err(io("creating", &self.state))?;
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        file.lock().map_err(io("locking", &path))?;
        Ok(file)
    }
}

/// The hardened `podman run` flags every test run uses: read-only root,
/// every capability dropped, no privilege gain, no network.
pub const RUN_FLAGS: [&str; 8] = [
    "--rm",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "none",
    "--pull=never",
];
