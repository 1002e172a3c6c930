//! Outside programs (nix, nix-store, git, podman, skopeo) run through one
//! place: one way to show a command in an error, one way to report that it
//! could not start or failed, and a [`Runner`] trait so that the logic
//! that reads their output can be unit-tested with [`Fake`] answers
//! instead of a real Nix.

use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("running {command}: {error} (is it installed? scripts/setup installs it)")]
    Spawn {
        command: String,
        error: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

/// What a finished program left behind.
#[derive(Clone, Debug, Default)]
pub struct Ran {
    /// The command line, for messages.
    pub command: String,
    pub ok: bool,
    /// The exit status as text (`exit status: 1`, `signal: 9`).
    pub status: String,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    /// The run as an error unless it succeeded.
    pub fn checked(self) -> Result<Ran, ToolError> {
        if self.ok {
            Ok(self)
        } else {
            Err(ToolError::Failed {
                command: self.command,
                status: self.status,
                stderr: self.stderr.trim().to_string(),
            })
        }
    }

    /// Standard output as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs commands to completion, capturing their output.
pub trait Runner {
    fn run(&self, cmd: &mut Command) -> Result<Ran, ToolError>;
}

/// The real thing: the programs on this machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct Host;

impl Runner for Host {
    fn run(&self, cmd: &mut Command) -> Result<Ran, ToolError> {
        let command = display(cmd);
        let out = cmd.output().map_err(|error| ToolError::Spawn {
            command: command.clone(),
            error,
        })?;
        Ok(Ran {
            command,
            ok: out.status.success(),
            status: out.status.to_string(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Runs `cmd` on the host.
pub fn run(cmd: &mut Command) -> Result<Ran, ToolError> {
    Host.run(cmd)
}

/// Runs `cmd` on the host; its standard output when it succeeded.
pub fn checked(cmd: &mut Command) -> Result<String, ToolError> {
    Ok(run(cmd)?.checked()?.text())
}

/// `program arg arg...`, as a user would type it.
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `git -C dir args...`: its standard output when it succeeded, else
/// `None` (no git, not a repository, no such revision: the callers treat
/// all of these as "unknown").
pub fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let ran = run(Command::new("git").arg("-C").arg(dir).args(args)).ok()?;
    ran.ok.then(|| ran.text())
}

/// A [`Runner`] that answers from a script: for tests of the logic that
/// reads a program's output, without the program.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Fake {
    /// (a substring of the command line, what the run leaves).
    answers: Vec<(String, Ran)>,
    /// Every command line asked for, in order.
    pub calls: std::cell::RefCell<Vec<String>>,
}

#[cfg(test)]
impl Fake {
    /// Answers commands whose line contains `needle` with success and `stdout`.
    pub fn answer(mut self, needle: &str, stdout: &str) -> Fake {
        self.answers.push((
            needle.to_string(),
            Ran {
                ok: true,
                status: "exit status: 0".into(),
                stdout: stdout.as_bytes().to_vec(),
                ..Ran::default()
            },
        ));
        self
    }

    /// Answers commands whose line contains `needle` with a failure.
    pub fn fail(mut self, needle: &str, stderr: &str) -> Fake {
        self.answers.push((
            needle.to_string(),
            Ran {
                ok: false,
                status: "exit status: 1".into(),
                stderr: stderr.to_string(),
                ..Ran::default()
            },
        ));
        self
    }
}

#[cfg(test)]
impl Runner for Fake {
    fn run(&self, cmd: &mut Command) -> Result<Ran, ToolError> {
        let command = display(cmd);
        self.calls.borrow_mut().push(command.clone());
        match self
            .answers
            .iter()
            .find(|(n, _)| command.contains(n.as_str()))
        {
            Some((_, ran)) => Ok(Ran {
                command,
                ..ran.clone()
            }),
            None => Err(ToolError::Spawn {
                command,
                error: std::io::Error::new(std::io::ErrorKind::NotFound, "no fake answer"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_runs_programs_and_reports_failures_with_the_command() {
        let out = checked(Command::new("sh").args(["-c", "echo hi"])).unwrap();
        assert_eq!(out, "hi\n");
        let e = checked(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`sh -c echo oops >&2; exit 3` failed") && msg.contains("oops"),
            "{msg}"
        );
        let e = run(&mut Command::new("/nonexistent/kiln-tool")).unwrap_err();
        assert!(
            e.to_string().contains("running /nonexistent/kiln-tool"),
            "{e}"
        );
    }

    #[test]
    fn a_fake_answers_from_its_script_and_records_the_calls() {
        let fake = Fake::default()
            .answer("show-config", "{}")
            .fail("build", "no");
        let r = fake.run(Command::new("nix").arg("show-config")).unwrap();
        assert_eq!(r.text(), "{}");
        assert!(fake
            .run(Command::new("nix").arg("build"))
            .unwrap()
            .checked()
            .is_err());
        assert!(fake.run(&mut Command::new("git")).is_err());
        assert_eq!(fake.calls.borrow().len(), 3);
    }
}
