//! Devices whose queues another process serves (vhost-user): the VMM presents the
//! device on PCI and sets it up, the backend reads and writes guest memory itself.
//! Guest RAM is then a shared memfd (see [`crate::memory::Backing`]).

pub mod connection;
mod deadline;
pub mod fs;
mod relay;
mod transfer;

pub use connection::{Connection, Ring, VhostUserError};
pub use fs::Fs;
