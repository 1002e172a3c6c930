//! The layer kiln generates on top of the package layers: what Debian's
//! maintainer scripts would have created (accounts, the CA bundle,
//! nsswitch.conf, home directories) plus the definition's declared paths.
//!
//! Every entry gets mtime = the image's `created` time and uid/gid 0 unless
//! stated. The layer is always the last one, so where it shares a path with a
//! package its entry is what the container sees; that is intended (a
//! maintainer script would have rewritten the file too). Only a change of
//! kind (a generated directory where a package ships a symlink, say) is an
//! error, because the result would silently replace the package's entry.

use crate::layerinfo::FileType;
use crate::spec::{Accounts, Group, ImageSpec, PathKind, User};
use crate::tarwrite::{Entry, EntryKind};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub const PASSWD_PATH: &str = "/etc/passwd";
pub const GROUP_PATH: &str = "/etc/group";
pub const NSSWITCH_PATH: &str = "/etc/nsswitch.conf";
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A home directory of this value is not created (Debian's convention for
/// system users without a home).
pub const NO_HOME: &str = "/nonexistent";

/// Debian 12's `/usr/share/libc-bin/nsswitch.conf`, which libc-bin's
/// postinst installs as `/etc/nsswitch.conf`, byte for byte. (distroless
/// still ships the older `compat` variant; with no `+`/`-` entries in
/// /etc/passwd, `files` answers the same and needs no extra NSS module.)
pub const NSSWITCH_CONF: &str = "\
# /etc/nsswitch.conf
#
# Example configuration of GNU Name Service Switch functionality.
# If you have the `glibc-doc-reference' and `info' packages installed, try:
# `info libc \"Name Service Switch\"' for information about this file.

passwd:         files
group:          files
shadow:         files
gshadow:        files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("accounts: {0}")]
    Accounts(String),
    #[error("{path}: {message}")]
    Path { path: String, message: String },
}

fn path_err(path: &str, message: impl Into<String>) -> Error {
    Error::Path {
        path: path.to_string(),
        message: message.into(),
    }
}

/// A path some package layer puts into the image (the entry of the last
/// layer that has it, since that is what the container sees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagePath {
    pub kind: FileType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub package: String,
}

/// What the generated layer is made from.
pub struct Context<'a> {
    pub spec: &'a ImageSpec,
    /// Epoch seconds, the mtime of every entry.
    pub created: u64,
    /// Every path of the package layers (absolute), with its entry.
    pub package_paths: &'a BTreeMap<String, PackagePath>,
    /// Whether glibc (`libc6`) is installed, which makes nsswitch.conf matter.
    pub has_libc: bool,
    /// The CA bundle (the layers' `ca-certificates.pem` concatenated), if any.
    pub ca_bundle: Option<Vec<u8>>,
}

/// A regular file of the generated layer, for the SBOMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Absolute path in the image.
    pub path: String,
    pub size: u64,
    pub sha1: String,
    pub sha256: String,
}

/// The generated layer's entries (for [`crate::tarwrite::write_layer`]) and
/// its regular files.
#[derive(Debug, Clone)]
pub struct Generated {
    pub entries: Vec<Entry>,
    pub files: Vec<GeneratedFile>,
}

impl Generated {
    /// Absolute paths of every entry.
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.entries.iter().map(|e| format!("/{}", e.path))
    }
}

#[derive(Debug, Clone)]
struct Planned {
    kind: EntryKind,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Why this entry exists, for error messages.
    origin: String,
}

fn gecos_field(u: &User) -> Result<&str, Error> {
    let g = u.gecos.as_deref().unwrap_or(&u.name.0);
    if g.contains([':', '\n']) {
        return Err(Error::Accounts(format!(
            "user {}: gecos {g:?} may not contain ':' or a newline",
            u.name.0
        )));
    }
    Ok(g)
}

fn root_user() -> User {
    User {
        name: crate::spec::AccountName("root".into()),
        uid: crate::spec::Id(0),
        gid: crate::spec::Id(0),
        home: crate::spec::AbsPath("/root".into()),
        shell: crate::spec::AbsPath("/sbin/nologin".into()),
        gecos: None,
    }
}

fn root_group() -> Group {
    Group {
        name: crate::spec::AccountName("root".into()),
        gid: crate::spec::Id(0),
        members: vec![],
    }
}

/// The declared users plus root (uid 0) when none is declared, sorted by uid.
pub fn users(accounts: &Accounts) -> Vec<User> {
    let mut users = accounts.users.clone();
    if !users.iter().any(|u| u.uid.0 == 0) {
        users.push(root_user());
    }
    users.sort_by_key(|u| u.uid);
    users
}

/// The declared groups plus root (gid 0) when none is declared, sorted by gid.
pub fn groups(accounts: &Accounts) -> Vec<Group> {
    let mut groups = accounts.groups.clone();
    if !groups.iter().any(|g| g.gid.0 == 0) {
        groups.push(root_group());
    }
    groups.sort_by_key(|g| g.gid);
    groups
}

/// `/etc/passwd` in Debian's format: `name:x:uid:gid:gecos:home:shell`, the
/// gecos defaulting to the name as base-passwd does.
pub fn passwd(accounts: &Accounts) -> Result<String, Error> {
    let mut out = String::new();
    for u in users(accounts) {
        out.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{}\n",
            u.name.0,
            u.uid.0,
            u.gid.0,
            gecos_field(&u)?,
            u.home.0,
            u.shell.0
        ));
    }
    Ok(out)
}

/// `/etc/group` in Debian's format: `name:x:gid:member,member`.
pub fn group(accounts: &Accounts) -> String {
    let mut out = String::new();
    for g in groups(accounts) {
        let members: Vec<&str> = g.members.iter().map(|m| m.0.as_str()).collect();
        out.push_str(&format!(
            "{}:x:{}:{}\n",
            g.name.0,
            g.gid.0,
            members.join(",")
        ));
    }
    out
}

fn same_kind(a: &EntryKind, b: FileType) -> bool {
    matches!(
        (a, b),
        (EntryKind::Directory, FileType::Directory)
            | (
                EntryKind::File(_) | EntryKind::Stored(_),
                FileType::File | FileType::Hardlink
            )
            | (EntryKind::Symlink(_), FileType::Symlink)
    )
}

fn kind_name(k: &EntryKind) -> &'static str {
    match k {
        EntryKind::Directory => "a directory",
        EntryKind::File(_) | EntryKind::Stored(_) => "a file",
        EntryKind::Symlink(_) => "a symlink",
        EntryKind::Hardlink(_) => "a hard link",
    }
}

fn file_type_name(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "a directory",
        FileType::File => "a file",
        FileType::Symlink => "a symlink",
        FileType::Hardlink => "a hard link",
    }
}

/// Builds the generated layer's entries.
pub fn generate(ctx: &Context) -> Result<Generated, Error> {
    let spec = ctx.spec;
    let mut plan: BTreeMap<String, Planned> = BTreeMap::new();
    let file = |data: Vec<u8>, mode: u32, origin: &str| Planned {
        kind: EntryKind::File(data),
        mode,
        uid: 0,
        gid: 0,
        origin: origin.to_string(),
    };

    plan.insert(
        PASSWD_PATH.into(),
        file(
            passwd(&spec.accounts)?.into_bytes(),
            0o644,
            "accounts (/etc/passwd)",
        ),
    );
    plan.insert(
        GROUP_PATH.into(),
        file(
            group(&spec.accounts).into_bytes(),
            0o644,
            "accounts (/etc/group)",
        ),
    );
    if ctx.has_libc {
        plan.insert(
            NSSWITCH_PATH.into(),
            file(
                NSSWITCH_CONF.as_bytes().to_vec(),
                0o644,
                "nsswitch.conf (libc6 is installed)",
            ),
        );
    }
    if let Some(bundle) = &ctx.ca_bundle {
        plan.insert(
            CA_BUNDLE_PATH.into(),
            file(bundle.clone(), 0o644, "the CA bundle"),
        );
    }

    // Declared paths first, so that a home directory also declared in
    // `paths` takes the declared mode and owner.
    let mut declared: BTreeMap<String, Planned> = BTreeMap::new();
    for p in &spec.paths {
        let path = p.path.0.clone();
        if plan.contains_key(&path) {
            return Err(path_err(&path, "is generated by kiln (accounts, nsswitch.conf or the CA bundle) and cannot be declared in paths"));
        }
        let (kind, default_mode) = match p.kind {
            PathKind::Directory => (EntryKind::Directory, 0o755),
            PathKind::File => (
                EntryKind::File(p.content.clone().unwrap_or_default().into_bytes()),
                0o644,
            ),
            PathKind::Symlink => (
                EntryKind::Symlink(p.target.clone().unwrap_or_default()),
                0o777,
            ),
        };
        let planned = Planned {
            kind,
            mode: p.mode.map_or(default_mode, |m| m.0),
            uid: p.uid.map_or(0, |i| i.0),
            gid: p.gid.map_or(0, |i| i.0),
            origin: "paths".into(),
        };
        declared.insert(path, planned);
    }

    let mut homes: BTreeMap<String, Planned> = BTreeMap::new();
    for u in users(&spec.accounts) {
        if u.home.0 == NO_HOME || u.home.0 == "/" || declared.contains_key(&u.home.0) {
            continue;
        }
        if let Some(prev) = homes.get(&u.home.0) {
            if (prev.uid, prev.gid) != (u.uid.0, u.gid.0) {
                return Err(Error::Accounts(format!(
                    "{} and user {} share the home directory {} but not its owner",
                    prev.origin, u.name.0, u.home.0
                )));
            }
            continue;
        }
        if plan.contains_key(&u.home.0) {
            return Err(path_err(
                &u.home.0,
                format!(
                    "is the home of user {} but kiln generates a file there",
                    u.name.0
                ),
            ));
        }
        homes.insert(
            u.home.0.clone(),
            Planned {
                kind: EntryKind::Directory,
                mode: 0o700,
                uid: u.uid.0,
                gid: u.gid.0,
                origin: format!("user {}", u.name.0),
            },
        );
    }
    plan.extend(homes);
    plan.extend(declared);

    // Parents: declared or generated entries keep theirs; a directory some
    // package ships keeps the package's metadata (the layer must not change
    // it); anything else is 0755 root.
    let mut parents: BTreeMap<String, Planned> = BTreeMap::new();
    for (path, p) in &plan {
        let mut cur = path.as_str();
        while let Some(i) = cur.rfind('/') {
            cur = &cur[..i];
            if cur.is_empty() {
                break;
            }
            if let Some(q) = plan.get(cur) {
                if !matches!(q.kind, EntryKind::Directory) {
                    return Err(path_err(
                        path,
                        format!("its parent {cur} is {} ({})", kind_name(&q.kind), q.origin),
                    ));
                }
                continue;
            }
            if parents.contains_key(cur) {
                continue;
            }
            let parent = match ctx.package_paths.get(cur) {
                Some(pp) if pp.kind == FileType::Directory => Planned {
                    kind: EntryKind::Directory,
                    mode: pp.mode,
                    uid: pp.uid,
                    gid: pp.gid,
                    origin: format!("package {}", pp.package),
                },
                Some(pp) => {
                    return Err(path_err(
                        path,
                        format!(
                            "({}) needs the directory {cur}, which package {} ships as {}",
                            p.origin,
                            pp.package,
                            file_type_name(pp.kind)
                        ),
                    ))
                }
                None => Planned {
                    kind: EntryKind::Directory,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    origin: format!("parent of {path}"),
                },
            };
            parents.insert(cur.to_string(), parent);
        }
    }

    for (path, p) in &plan {
        if let Some(pp) = ctx.package_paths.get(path) {
            if !same_kind(&p.kind, pp.kind) {
                return Err(path_err(
                    path,
                    format!(
                        "{} makes it {} but package {} ships it as {}",
                        p.origin,
                        kind_name(&p.kind),
                        pp.package,
                        file_type_name(pp.kind)
                    ),
                ));
            }
        }
    }
    plan.extend(parents);

    let mut entries = Vec::with_capacity(plan.len());
    let mut files = Vec::new();
    for (path, p) in plan {
        if let EntryKind::File(data) = &p.kind {
            files.push(GeneratedFile {
                path: path.clone(),
                size: data.len() as u64,
                sha1: hex::encode(Sha1::digest(data)),
                sha256: hex::encode(Sha256::digest(data)),
            });
        }
        entries.push(Entry {
            path: path[1..].to_string(),
            kind: p.kind,
            mode: p.mode,
            uid: p.uid,
            gid: p.gid,
            mtime: ctx.created,
        });
    }
    Ok(Generated { entries, files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Definition;

    fn spec(extra: serde_json::Value) -> ImageSpec {
        let mut j = serde_json::json!({
            "name": "x",
            "description": "d",
            "packages": {"include": ["ca-certificates"]},
            "accounts": {
                "run_as": "nonroot",
                "users": [{"name": "nonroot", "uid": 65532, "gid": 65532, "home": "/home/nonroot"}],
                "groups": [{"name": "nonroot", "gid": 65532}]
            }
        });
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                j[k] = v;
            }
        }
        let d: Definition = serde_json::from_value(j).unwrap();
        d.validate(None).unwrap();
        d.image(None).unwrap()
    }

    fn gen(
        spec: &ImageSpec,
        pkgs: &BTreeMap<String, PackagePath>,
        libc: bool,
        ca: Option<&[u8]>,
    ) -> Result<Generated, Error> {
        generate(&Context {
            spec,
            created: 1000,
            package_paths: pkgs,
            has_libc: libc,
            ca_bundle: ca.map(|c| c.to_vec()),
        })
    }

    fn entry<'a>(g: &'a Generated, path: &str) -> &'a Entry {
        g.entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no {path} in {:?}", g.entries))
    }

    fn content(g: &Generated, path: &str) -> String {
        match &entry(g, path).kind {
            EntryKind::File(d) => String::from_utf8(d.clone()).unwrap(),
            k => panic!("{path} is {k:?}"),
        }
    }

    #[test]
    fn passwd_and_group_match_debian_format() {
        let s = spec(serde_json::json!({}));
        let g = gen(&s, &BTreeMap::new(), false, None).unwrap();
        assert_eq!(
            content(&g, "etc/passwd"),
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
        );
        assert_eq!(content(&g, "etc/group"), "root:x:0:\nnonroot:x:65532:\n");
        assert_eq!(entry(&g, "etc/passwd").mode, 0o644);
        assert_eq!(entry(&g, "etc/passwd").mtime, 1000);
    }

    #[test]
    fn users_sorted_by_uid_and_members_listed() {
        let s = spec(serde_json::json!({"accounts": {
            "run_as": "app",
            "users": [
                {"name": "app", "uid": 1000, "gid": 1000, "gecos": "The App"},
                {"name": "root", "uid": 0, "gid": 0, "home": "/root", "shell": "/bin/sh"},
                {"name": "aux", "uid": 10, "gid": 1000}
            ],
            "groups": [{"name": "app", "gid": 1000, "members": ["aux", "app"]}, {"name": "wheel", "gid": 0}]
        }}));
        let g = gen(&s, &BTreeMap::new(), false, None).unwrap();
        assert_eq!(
            content(&g, "etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\naux:x:10:1000:aux:/nonexistent:/sbin/nologin\napp:x:1000:1000:The App:/nonexistent:/sbin/nologin\n"
        );
        assert_eq!(content(&g, "etc/group"), "wheel:x:0:\napp:x:1000:aux,app\n");
        // /nonexistent homes are not created.
        assert!(!g.entries.iter().any(|e| e.path == "nonexistent"));
    }

    #[test]
    fn nsswitch_only_with_libc() {
        let s = spec(serde_json::json!({}));
        let without = gen(&s, &BTreeMap::new(), false, None).unwrap();
        assert!(!without
            .entries
            .iter()
            .any(|e| e.path == "etc/nsswitch.conf"));
        let with = gen(&s, &BTreeMap::new(), true, None).unwrap();
        let text = content(&with, "etc/nsswitch.conf");
        for line in [
            "passwd:         files\n",
            "hosts:          files dns\n",
            "protocols:      db files\n",
            "netgroup:       nis\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in {text}");
        }
        assert_eq!(entry(&with, "etc/nsswitch.conf").mode, 0o644);
    }

    #[test]
    fn ca_bundle_is_written_with_parents() {
        let s = spec(serde_json::json!({}));
        let g = gen(
            &s,
            &BTreeMap::new(),
            false,
            Some(b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"),
        )
        .unwrap();
        assert!(content(&g, "etc/ssl/certs/ca-certificates.crt").starts_with("-----BEGIN"));
        assert_eq!(entry(&g, "etc/ssl/certs/ca-certificates.crt").mode, 0o644);
        for d in ["etc", "etc/ssl", "etc/ssl/certs"] {
            let e = entry(&g, d);
            assert_eq!(
                (e.kind.clone(), e.mode, e.uid, e.gid),
                (EntryKind::Directory, 0o755, 0, 0),
                "{d}"
            );
        }
        assert!(g.files.iter().any(|f| f.path == CA_BUNDLE_PATH));
    }

    #[test]
    fn home_directories_are_owned_by_their_user() {
        let s = spec(serde_json::json!({}));
        let g = gen(&s, &BTreeMap::new(), false, None).unwrap();
        let h = entry(&g, "home/nonroot");
        assert_eq!((h.mode, h.uid, h.gid), (0o700, 65532, 65532));
        let home = entry(&g, "home");
        assert_eq!((home.mode, home.uid, home.gid), (0o755, 0, 0));
        let root = entry(&g, "root");
        assert_eq!((root.mode, root.uid, root.gid), (0o700, 0, 0));
    }

    #[test]
    fn declared_paths_with_defaults_and_overrides() {
        let s = spec(serde_json::json!({"paths": [
            {"path": "/tmp", "type": "directory", "mode": "1777"},
            {"path": "/var/lib/app/conf", "type": "file", "content": "x=1\n", "uid": 65532, "gid": 65532},
            {"path": "/usr/bin/app", "type": "symlink", "target": "/opt/app/bin/app"},
            {"path": "/home/nonroot", "type": "directory", "mode": "0750", "uid": 65532, "gid": 65532}
        ]}));
        let g = gen(&s, &BTreeMap::new(), false, None).unwrap();
        assert_eq!(entry(&g, "tmp").mode, 0o1777);
        let c = entry(&g, "var/lib/app/conf");
        assert_eq!((c.mode, c.uid, c.gid), (0o644, 65532, 65532));
        assert_eq!(content(&g, "var/lib/app/conf"), "x=1\n");
        assert_eq!(entry(&g, "var/lib/app").mode, 0o755);
        assert_eq!(
            entry(&g, "usr/bin/app").kind,
            EntryKind::Symlink("/opt/app/bin/app".into())
        );
        assert_eq!(entry(&g, "home/nonroot").mode, 0o750);
    }

    #[test]
    fn parents_keep_package_metadata_and_symlinked_parents_are_refused() {
        let s = spec(serde_json::json!({"paths": [{"path": "/var/run/app", "type": "directory"}]}));
        let mut pkgs = BTreeMap::new();
        pkgs.insert(
            "/etc".to_string(),
            PackagePath {
                kind: FileType::Directory,
                mode: 0o751,
                uid: 0,
                gid: 0,
                package: "base-files".into(),
            },
        );
        pkgs.insert(
            "/var/run".to_string(),
            PackagePath {
                kind: FileType::Symlink,
                mode: 0o777,
                uid: 0,
                gid: 0,
                package: "base-files".into(),
            },
        );
        let e = gen(&s, &pkgs, false, None).unwrap_err().to_string();
        assert!(
            e.contains("/var/run") && e.contains("base-files") && e.contains("symlink"),
            "{e}"
        );

        let s = spec(serde_json::json!({}));
        let g = gen(&s, &pkgs, false, None).unwrap();
        assert_eq!(entry(&g, "etc").mode, 0o751);
    }

    #[test]
    fn generated_file_over_package_file_wins_but_not_over_a_directory() {
        let s = spec(serde_json::json!({}));
        let mut pkgs = BTreeMap::new();
        pkgs.insert(
            "/etc/passwd".to_string(),
            PackagePath {
                kind: FileType::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                package: "base-passwd".into(),
            },
        );
        gen(&s, &pkgs, false, None).unwrap();
        pkgs.insert(
            "/etc/group".to_string(),
            PackagePath {
                kind: FileType::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                package: "weird".into(),
            },
        );
        let e = gen(&s, &pkgs, false, None).unwrap_err().to_string();
        assert!(e.contains("/etc/group") && e.contains("weird"), "{e}");
    }

    #[test]
    fn declaring_a_generated_file_is_refused() {
        let s = spec(
            serde_json::json!({"paths": [{"path": "/etc/passwd", "type": "file", "content": "x"}]}),
        );
        let e = gen(&s, &BTreeMap::new(), false, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/passwd"), "{e}");
    }

    #[test]
    fn gecos_with_colon_is_refused() {
        let s = spec(serde_json::json!({"accounts": {
            "run_as": "nonroot",
            "users": [{"name": "nonroot", "uid": 65532, "gid": 65532, "gecos": "a:b"}],
            "groups": [{"name": "nonroot", "gid": 65532}]
        }}));
        assert!(gen(&s, &BTreeMap::new(), false, None)
            .unwrap_err()
            .to_string()
            .contains("gecos"));
    }
}
