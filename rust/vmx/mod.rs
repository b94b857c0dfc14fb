// SPDX-License-Identifier: GPL-2.0

//! Intel VMX: capability probing (and, as it lands, the VMX window, VMCS
//! management and guest entry/exit).

pub(crate) mod caps;
pub(crate) mod probe;

// `exit.rs` (exit reasons and qualification decoding) lives here too but
// joins the module with KVM_RUN, its first user; until then only the host
// tests (`rust/host`) build it.
