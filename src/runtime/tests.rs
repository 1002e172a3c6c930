use super::*;

fn report() -> ProbeReport {
    serde_json::from_value(json!({
        "arch": "amd64", "uid": 65532, "gid": 65532, "euid": 65532, "egid": 65532,
        "groups": [65532], "userName": "nonroot",
        "capabilities": {"effective": "0000000000000000", "permitted": "0000000000000000",
            "inheritable": "0000000000000000", "bounding": "0000000000000000",
            "ambient": "0000000000000000", "noNewPrivs": 1, "seccomp": 2},
        "rootfs": {"writable": false, "writeError": "read-only file system", "writeErrno": "EROFS", "tmpWritable": true},
        "shell": {"path": "/bin/sh", "present": false, "ran": false,
            "execError": "fork/exec /bin/sh: no such file or directory", "execErrno": "ENOENT", "output": ""},
        "caBundle": {"path": "/etc/ssl/certs/ca-certificates.crt", "fromEnv": true, "present": true,
            "readError": "", "certificates": 3, "parseErrors": 0, "systemPool": true,
            "systemPoolError": "", "chainsVerified": 3, "verifyError": "", "sample": "CN=x"},
        "zoneinfo": {"name": "America/New_York", "resolved": false, "error": "unknown time zone", "winter": "", "summer": ""},
        "network": {"interfaces": ["lo"], "routes": 0, "dialTarget": "192.0.2.1:9", "dialed": false,
            "dialError": "network is unreachable", "dialErrno": "ENETUNREACH"},
        "problems": []
    }))
    .unwrap()
}

fn expect() -> Expect {
    Expect {
        arch: Arch::Amd64,
        uid: 65532,
        gid: 65532,
        debug: false,
        tls: true,
        tzdata: false,
    }
}

fn failed(checks: &[Check]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect()
}

#[test]
fn a_hardened_report_passes() {
    assert_eq!(
        failed(&judge(&report(), &expect(), None)),
        Vec::<&str>::new()
    );
}

#[test]
fn each_weakness_fails_its_own_check() {
    let mut r = report();
    r.uid = 0;
    r.euid = 0;
    assert_eq!(failed(&judge(&r, &expect(), None)), vec!["user"]);
    let mut r = report();
    r.capabilities.effective = "00000000a80425fb".into();
    assert_eq!(failed(&judge(&r, &expect(), None)), vec!["capabilities"]);
    let mut r = report();
    r.rootfs.writable = true;
    assert_eq!(failed(&judge(&r, &expect(), None)), vec!["read-only root"]);
    let mut r = report();
    r.shell.present = true;
    r.shell.ran = true;
    assert_eq!(failed(&judge(&r, &expect(), None)), vec!["no shell"]);
    let mut r = report();
    r.ca_bundle.chains_verified = 2;
    assert_eq!(failed(&judge(&r, &expect(), None)), vec!["CA bundle"]);
    let mut r = report();
    r.network.interfaces.push("eth0".into());
    assert_eq!(failed(&judge(&r, &expect(), None)), vec!["no network"]);
    let mut r = report();
    r.zoneinfo.resolved = true;
    assert_eq!(
        failed(&judge(&r, &expect(), None)),
        vec!["no zoneinfo (no tzdata)"]
    );
    let e = Expect {
        tzdata: true,
        ..expect()
    };
    assert_eq!(failed(&judge(&report(), &e, None)), vec!["zoneinfo"]);
    let mut r = report();
    r.arch = "arm64".into();
    assert_eq!(failed(&judge(&r, &expect(), None)), vec!["arch"]);
}

#[test]
fn debug_images_need_a_root_shell() {
    let e = Expect {
        debug: true,
        uid: 0,
        gid: 0,
        ..expect()
    };
    let mut r = report();
    r.uid = 0;
    r.euid = 0;
    r.gid = 0;
    r.egid = 0;
    r.shell.present = true;
    r.shell.ran = true;
    assert_eq!(
        failed(&judge(&r, &e, Some("uid=0(root) gid=0(root)"))),
        Vec::<&str>::new()
    );
    assert_eq!(
        failed(&judge(&r, &e, Some("uid=65532"))),
        vec!["debug shell runs as root"]
    );
}
