// SPDX-License-Identifier: GPL-2.0

//! x86 architectural state and the rules that govern it.

pub(crate) mod cpuid;
pub(crate) mod debugreg;
pub(crate) mod decode;
pub(crate) mod hypercall;
pub(crate) mod kvmclock;
pub(crate) mod lapic;
pub(crate) mod mce;
pub(crate) mod msr;
pub(crate) mod msr_filter;
pub(crate) mod mtrr;
pub(crate) mod pio;
pub(crate) mod segment;
pub(crate) mod sregs;
pub(crate) mod xsave;
