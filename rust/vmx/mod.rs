// SPDX-License-Identifier: GPL-2.0

//! Intel VMX: capability probing (and, as it lands, the VMX window, VMCS
//! management and guest entry/exit).

pub(crate) mod caps;
pub(crate) mod probe;
