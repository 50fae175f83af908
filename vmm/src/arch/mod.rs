//! x86_64 CPU state at boot: CPUID, MSRs, registers, page tables, LAPIC.

pub mod cpuid;
pub mod regs;
