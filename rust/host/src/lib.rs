// SPDX-License-Identifier: GPL-2.0

//! Host build of rkvm's pure logic.
//!
//! Each module below is the very file the kernel module compiles, included by
//! path, so `cargo test` here checks the code that runs in the kernel. Those
//! files depend on `core` only.

#![allow(dead_code)]

#[path = "../../vmx/caps.rs"]
pub mod caps;
#[path = "../../abi/structs.rs"]
pub mod structs;

#[path = "../../ioeventfd/rules.rs"]
pub mod ioeventfd_rules;

#[path = "../../memslot/region.rs"]
pub mod region;

#[path = "../../coalesced/ring.rs"]
pub mod coalesced_ring;
#[path = "../../x86/cpuid.rs"]
pub mod cpuid;
#[path = "../../x86/debugreg.rs"]
pub mod debugreg;
#[path = "../../x86/decode.rs"]
pub mod decode;
#[path = "../../vmx/exit.rs"]
pub mod exit;
#[path = "../../x86/hypercall.rs"]
pub mod hypercall;
#[path = "../../x86/kvmclock.rs"]
pub mod kvmclock;
#[path = "../../x86/lapic.rs"]
pub mod lapic;
#[path = "../../x86/mce.rs"]
pub mod mce;
#[path = "../../x86/msr.rs"]
pub mod msr;
#[path = "../../x86/msr_filter.rs"]
pub mod msr_filter;
#[path = "../../x86/mtrr.rs"]
pub mod mtrr;
#[path = "../../x86/pio.rs"]
pub mod pio;
#[path = "../../mmu/pte_list.rs"]
pub mod pte_list;
#[path = "../../x86/segment.rs"]
pub mod segment;
#[path = "../../x86/sregs.rs"]
pub mod sregs;
#[path = "../../stats/layout.rs"]
pub mod stats_layout;
#[path = "../../mmu/walk.rs"]
pub mod walk;
#[path = "../../x86/xsave.rs"]
pub mod xsave;

#[cfg(test)]
mod abi_tests;
#[cfg(test)]
mod caps_tests;
#[cfg(test)]
mod coalesced_tests;
#[cfg(test)]
mod cpuid_tests;
#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod exit_tests;
#[cfg(test)]
mod hypercall_tests;
#[cfg(test)]
mod kvmclock_tests;
#[cfg(test)]
mod lapic_tests;
#[cfg(test)]
mod msr_filter_tests;
#[cfg(test)]
mod msr_tests;
#[cfg(test)]
mod mtrr_tests;
#[cfg(test)]
mod pio_tests;
#[cfg(test)]
mod pte_list_tests;
#[cfg(test)]
mod region_tests;
#[cfg(test)]
mod segment_tests;
#[cfg(test)]
mod sregs_tests;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod stats_tests;
#[cfg(test)]
mod walk_tests;
