// SPDX-License-Identifier: GPL-2.0

//! The KVM user ABI as rkvm implements it: ioctl numbers and constants from
//! `include/uapi/linux/kvm.h` (same values, so binaries built for KVM work).

use kernel::ioctl::_IO;

/// The ioctl type byte of every KVM ioctl.
const KVMIO: u32 = 0xae;

/// The API version KVM has reported since Linux 2.6.22.
pub(crate) const KVM_API_VERSION: isize = 12;

/// System ioctl: returns [`KVM_API_VERSION`].
pub(crate) const KVM_GET_API_VERSION: u32 = _IO(KVMIO, 0x00);
/// System and VM ioctl: is a capability supported, and with which value.
pub(crate) const KVM_CHECK_EXTENSION: u32 = _IO(KVMIO, 0x03);

/// Capabilities rkvm reports as present through `KVM_CHECK_EXTENSION`, with
/// the value each one reports. A capability is listed here only once
/// everything it promises works; every other one reports 0, as KVM does for
/// capabilities it does not know.
const SUPPORTED_CAPS: &[(usize, isize)] = &[];

/// The answer to `KVM_CHECK_EXTENSION(cap)`.
pub(crate) fn check_extension(cap: usize) -> isize {
    SUPPORTED_CAPS
        .iter()
        .find(|(c, _)| *c == cap)
        .map_or(0, |(_, v)| *v)
}
