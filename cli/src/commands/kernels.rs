//! `hvbox kernels [NAME] [--json]`: the kernels a machine has booted.

use super::select::{Need, Selection};
use crate::machine::kernels::KernelRecord;
use anyhow::{bail, Result};
use std::process::ExitCode;

pub fn run(name: Option<&str>, json: bool) -> Result<ExitCode> {
    let target = Selection::load(Need::Names)?.one(name, "kernels")?;
    let machine = &target.machine;
    if !machine.is_created() {
        bail!(
            "{} is not created yet; {} creates it",
            target.subject(),
            target.hint("up")
        );
    }
    let state = machine.load_state()?;
    let current = state.kernels.len().checked_sub(1);
    if json {
        let value = serde_json::json!({
            "pinned": state.pinned_kernel,
            "kernels": state.kernels.iter().enumerate().map(|(i, k)| {
                let mut v = serde_json::to_value(k).expect("plain data");
                v["current"] = (Some(i) == current).into();
                v
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if state.kernels.is_empty() {
        println!("{} has not booted yet", target.subject());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "  {:<28} {:<17} {:<17} {:<12} CMDLINE",
        "VERSION", "FIRST BOOTED", "LAST BOOTED", "SHA256"
    );
    for (i, k) in state.kernels.iter().enumerate() {
        println!("{}", row(k, Some(i) == current));
    }
    if let Some(v) = &state.pinned_kernel {
        println!("pinned to {v} (by a rollback, or an upgrade whose kernel the disk does not boot by default); `hvbox upgrade-kernel --no-install` unpins");
    }
    Ok(ExitCode::SUCCESS)
}

fn row(k: &KernelRecord, current: bool) -> String {
    format!(
        "{} {:<28} {:<17} {:<17} {:<12} {}",
        if current { "*" } else { " " },
        k.version,
        utc_minutes(k.first_booted_unix),
        utc_minutes(k.last_booted_unix),
        &k.kernel_sha256[..k.kernel_sha256.len().min(12)],
        k.cmdline
    )
}

/// `YYYY-MM-DD HH:MM` in UTC, from seconds since the epoch.
fn utc_minutes(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

#[cfg(test)]
mod tests {
    use super::utc_minutes;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_minutes(0), "1970-01-01 00:00");
        assert_eq!(utc_minutes(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minutes(1_795_243_380), "2026-11-21 06:43");
    }
}
