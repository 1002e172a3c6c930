//! The verifier's report: one line per check, ✓ or ✗ (and · for what was
//! looked at but not checked), as text or JSON.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not a check: what was found or skipped, and why.
    Info,
    /// Not a failure, but something the user should look at: a broken
    /// artifact that was tolerated because a valid one stood in for it.
    Warn,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What kind of check: `blobs`, `signature`, `attestation`,
    /// `provenance`, `sbom`, `rebuild`, ...
    pub check: String,
    pub status: Status,
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// What was verified (a layout, a registry reference).
    pub target: String,
    /// The digest the reference resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The registry reference pinned to that digest
    /// (`registry/repository@sha256:...`): what a deploy should use, so
    /// that it runs what was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// Why verification could not run at all (no such layout, a reference
    /// that does not parse, a registry that cannot be reached): the
    /// user's mistake or the environment, not a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub checks: Vec<Check>,
    pub ok: bool,
}

impl Report {
    pub fn new(target: String) -> Report {
        Report {
            target,
            ..Default::default()
        }
    }

    fn push(&mut self, check: &str, status: Status, message: String) {
        self.checks.push(Check {
            check: check.to_string(),
            status,
            message,
        });
        self.ok = self.passed();
    }

    pub fn pass(&mut self, check: &str, message: impl Into<String>) {
        self.push(check, Status::Pass, message.into());
    }

    pub fn fail(&mut self, check: &str, message: impl Into<String>) {
        self.push(check, Status::Fail, message.into());
    }

    pub fn info(&mut self, check: &str, message: impl Into<String>) {
        self.push(check, Status::Info, message.into());
    }

    pub fn warn(&mut self, check: &str, message: impl Into<String>) {
        self.push(check, Status::Warn, message.into());
    }

    pub fn warnings(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .count()
    }

    /// Passes or fails with the message of `result`.
    pub fn record(&mut self, check: &str, result: Result<String, String>) {
        match result {
            Ok(m) => self.pass(check, m),
            Err(m) => self.fail(check, m),
        }
    }

    /// The image could not be verified at all (`error`): not a failed
    /// check, and never a pass.
    pub fn cannot_verify(&mut self, message: String) {
        self.error = Some(message);
        self.ok = false;
    }

    /// True when the image could be verified, at least one check ran and
    /// none failed.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.checks.iter().any(|c| c.status == Status::Pass)
            && !self.checks.iter().any(|c| c.status == Status::Fail)
    }

    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }

    pub fn render_text(&self) -> String {
        if let Some(e) = &self.error {
            return format!("could not verify {}: {e}\n", self.target);
        }
        let mut out = format!("Verifying {}", self.target);
        if let Some(d) = &self.digest {
            out.push_str(&format!(" ({d})"));
        }
        out.push('\n');
        for c in &self.checks {
            let mark = match c.status {
                Status::Pass => "✓",
                Status::Fail => "✗",
                Status::Info => "·",
                Status::Warn => "!",
            };
            out.push_str(&format!("{mark} {}: {}\n", c.check, c.message));
        }
        let ran = self
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::Pass | Status::Fail))
            .count();
        let warnings = match self.warnings() {
            0 => String::new(),
            1 => ", 1 warning".into(),
            n => format!(", {n} warnings"),
        };
        if self.passed() {
            out.push_str(&format!("VERIFIED: {ran} checks passed{warnings}\n"));
            if let Some(p) = &self.pinned {
                out.push_str(&format!("Verified reference: {p}\n"));
            }
        } else if ran == 0 {
            out.push_str("FAILED: nothing was checked\n");
        } else {
            out.push_str(&format!(
                "FAILED: {} of {ran} checks failed\n",
                self.failures()
            ));
        }
        out
    }

    pub fn render_json(&self) -> String {
        let mut s = String::from_utf8(crate::json::pretty(self)).expect("JSON is UTF-8");
        if s.ends_with('\n') {
            s.pop();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_passes_only_with_checks_and_no_failure() {
        let mut r = Report::new("x".into());
        assert!(!r.passed());
        r.info("blobs", "nothing");
        assert!(!r.passed());
        r.pass("signature", "good");
        assert!(r.passed() && r.ok);
        r.fail("sbom", "bad");
        assert!(!r.passed() && !r.ok);
        let text = r.render_text();
        assert!(text.contains("✓ signature: good\n"), "{text}");
        assert!(text.contains("✗ sbom: bad\n"), "{text}");
        assert!(text.contains("· blobs: nothing\n"), "{text}");
        assert!(text.ends_with("FAILED: 1 of 2 checks failed\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.render_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][2]["status"], "fail");
    }
}
