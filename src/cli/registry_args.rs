//! How to reach a registry: the flags every command that reads or writes
//! a registry shares (push, pull, verify, diff).

use anyhow::{bail, Context};
use kiln::registry::{Credentials, Options, Retry};
use std::io::BufRead;

/// Plain HTTP, credentials and retries for a registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Allow plain HTTP to a registry that is not on loopback.
    #[arg(long)]
    pub insecure: bool,
    #[arg(long, short, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Tries per request before giving up on transient errors.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub retries: u32,
}

impl RegistryArgs {
    /// The client options (reading the password from standard input when asked).
    pub fn options(&self, mount_from: Vec<String>) -> anyhow::Result<Options> {
        Ok(Options {
            insecure: self.insecure,
            credentials: self.credentials()?,
            retry: Retry {
                attempts: self.retries,
                ..Retry::default()
            },
            concurrency: 0,
            mount_from,
            progress: false,
        })
    }

    /// The client options with a progress bar when standard error is a
    /// terminal and the output is for people (not `--json`, not `--quiet`).
    pub fn options_with_progress(
        &self,
        mount_from: Vec<String>,
        for_people: bool,
    ) -> anyhow::Result<Options> {
        use std::io::IsTerminal;
        let mut o = self.options(mount_from)?;
        o.progress = for_people && std::io::stderr().is_terminal();
        Ok(o)
    }

    /// The same, for the verifier's registry client (the seed's).
    pub fn client_options(&self) -> anyhow::Result<kiln_seed::regclient::ClientOptions> {
        Ok(kiln_seed::regclient::ClientOptions {
            insecure: self.insecure,
            credentials: self.credentials()?,
            attempts: self.retries,
        })
    }

    /// `--username` with the password from standard input (one line);
    /// clap makes the two flags come together.
    fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        let Some(username) = &self.username else {
            return Ok(None);
        };
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            bail!("--password-stdin: standard input held no password");
        }
        Ok(Some(Credentials {
            username: username.clone(),
            password,
        }))
    }
}
