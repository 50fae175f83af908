//! A test that needs a tool or a device this host lacks is skipped, with the reason
//! printed, on a developer's machine; where every test must run (`HVBOX_REQUIRE_ALL`
//! set, as `scripts/test` and so CI set it) it fails instead, so a missing package can
//! never pass for a green run.

use std::fmt::Display;

pub mod http_proxy;
pub mod passt;

/// The environment variable that turns skips into failures.
pub const REQUIRE_ALL: &str = "HVBOX_REQUIRE_ALL";

/// Whether every test must run here.
pub fn required() -> bool {
    std::env::var_os(REQUIRE_ALL).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The calling test cannot run here because of `reason`: print it and let the
/// caller return, or fail the test where every test must run.
#[track_caller]
pub fn skip(reason: impl Display) {
    if required() {
        panic!("this test cannot run here, and {REQUIRE_ALL} says every test must: {reason}");
    }
    eprintln!("skipped: {reason}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The skip happens in a child (this same test binary), so the variable's value
    /// cannot leak into other tests of this process.
    fn child(value: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "tests::skip_in_child", "--nocapture"])
            .env("HVBOX_SKIP_CHILD", "1");
        match value {
            Some(v) => cmd.env(REQUIRE_ALL, v),
            None => cmd.env_remove(REQUIRE_ALL),
        };
        cmd.output().unwrap()
    }

    #[test]
    fn skip_in_child() {
        if std::env::var_os("HVBOX_SKIP_CHILD").is_some() {
            skip("no frobnicator installed");
        }
    }

    #[test]
    fn a_skip_prints_its_reason_or_fails_where_every_test_must_run() {
        for value in [None, Some(""), Some("0")] {
            let out = child(value);
            assert!(out.status.success(), "{value:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("skipped: no frobnicator installed"),
                "{stderr}"
            );
        }
        let out = child(Some("1"));
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("HVBOX_REQUIRE_ALL says every test must: no frobnicator installed"),
            "{text}"
        );
    }
}
