//! Saving a running machine and restoring it in a new VMM process.

pub mod devices;
