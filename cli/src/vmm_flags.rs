//! The values of `hvbox vmm run`'s flags, parsed as clap reads them: a bad one is a
//! usage error (exit status 2) that names its flag.

use hvbox_vmm::MachineConfig;

/// `--config FILE`: a [`MachineConfig`] as JSON; errors carry FILE:LINE:COLUMN.
/// Boxed: it is by far the largest of the arguments.
pub fn config_file(path: &str) -> Result<Box<MachineConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let config: MachineConfig = serde_json::from_str(&text).map_err(|e| {
        let message = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&position).unwrap_or(&message);
        format!("{path}:{}:{}: {message}", e.line(), e.column())
    })?;
    config.validate().map_err(|e| format!("{path}: {e}"))?;
    Ok(Box::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_point_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.json");
        let write = |text: &str| {
            std::fs::write(&path, text).unwrap();
            config_file(path.to_str().unwrap())
        };
        let p = path.display();
        assert_eq!(
            write("{\n  \"cpus\": 1,\n  \"memroy\": 4096\n}").unwrap_err(),
            format!("{p}:3:10: unknown field `memroy`, expected one of `cpus`, `memory`, `kernel`, `initrd`, `cmdline`, `disks`, `nics`, `nested_virtualization`, `serial_log`")
        );
        assert_eq!(
            write("{\"cpus\": 1,\n \"memory\": \"1G\"").unwrap_err(),
            format!("{p}:2:15: invalid type: string \"1G\", expected u64")
        );
        let invalid = write(r#"{"cpus": 1, "memory": 1000, "kernel": "/k"}"#).unwrap_err();
        assert!(
            invalid.starts_with(&format!("{p}: memory of 1000 bytes")),
            "{invalid}"
        );
        let config = write(r#"{"cpus": 2, "memory": 1572864, "kernel": "/k"}"#).unwrap();
        assert_eq!((config.cpus, config.memory), (2, 1536 << 10));
        assert!(config_file("/nonexistent/vm.json")
            .unwrap_err()
            .contains("cannot read /nonexistent/vm.json"));
    }
}
