// SPDX-License-Identifier: GPL-2.0

//! Intel VMX: capability probing, VMCS fields, the VMX window and guest
//! entry/exit.

pub(crate) mod caps;
pub(crate) mod exit;
pub(crate) mod probe;
pub(crate) mod vmcs;
pub(crate) mod window;
