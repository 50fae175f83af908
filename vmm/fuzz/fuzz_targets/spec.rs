//! hvbox.yaml as `hvbox validate` and `up` read it: YAML, the layered keys (top
//! level and machines), every value's own checks, the rules between keys, problem
//! locations (line and column), then what a command takes from each machine.
//! Files the spec names on the host are not looked at (that is `check`, not a
//! parser).
//!
//! Checks: nothing panics; every problem names the file.
#![no_main]

use hvbox_vmm_fuzz::spec::{mounts, ProjectSpec};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let path = Path::new("/project/hvbox.yaml");
    match ProjectSpec::parse(text, path) {
        Ok(project) => {
            for (_, spec) in project.machines() {
                let _ = spec.kernel.cmdline("root=/dev/vda1 ro", "ttyS0");
                let _ = mounts::resolve(spec.mounts.as_deref(), Path::new("/project"));
            }
            let _ = project.boxes();
        }
        Err(problems) => {
            assert!(problems.to_string().contains("hvbox.yaml"), "{problems}");
            for line in problems.details() {
                assert!(line.contains("hvbox.yaml"), "{line}");
            }
        }
    }
});
