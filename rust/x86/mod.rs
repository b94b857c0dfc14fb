// SPDX-License-Identifier: GPL-2.0

//! x86 architectural state and the rules that govern it.

pub(crate) mod cpuid;
pub(crate) mod segment;
pub(crate) mod sregs;

// `decode.rs` (the MMIO instruction decoder) lives here too but joins the
// module with KVM_RUN, its first user; until then only the host tests
// (`rust/host`) build it.
