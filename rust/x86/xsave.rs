// SPDX-License-Identifier: GPL-2.0

//! The `struct kvm_xsave` image and XCR0 of a guest: which state
//! components rkvm lets user space see and set, and the checks on what
//! `KVM_SET_XSAVE` and `KVM_SET_XCRS` bring. Pure logic over `core`, shared
//! with the host tests.
//!
//! rkvm does not offer XSAVE to guests (CPUID.1:ECX.XSAVE is clear and
//! CR4.OSXSAVE cannot be set), so, as KVM does for such a guest
//! (`kvm_vcpu_ioctl_x86_get_xsave2()`, `fpu_copy_uabi_to_guest_fpstate()`
//! and `validate_user_xstate_header()` in `arch/x86/kernel/fpu/`), only the
//! x87 and SSE components travel through the image, in the standard
//! (non-compacted) format, and XCR0 can only be 1 (`__kvm_set_xcr()` with
//! no guest-supported XCR0 beyond x87).

/// XCR0/XSTATE_BV bit of the x87 state.
pub(crate) const XFEATURE_FP: u64 = 1 << 0;
/// XCR0/XSTATE_BV bit of the SSE state.
pub(crate) const XFEATURE_SSE: u64 = 1 << 1;
/// XCR0 bit of the AVX state.
pub(crate) const XFEATURE_YMM: u64 = 1 << 2;
/// The components `KVM_GET/SET_XSAVE` carry.
pub(crate) const USER_XFEATURES: u64 = XFEATURE_FP | XFEATURE_SSE;
/// The XCR0 bits a guest may enable beyond x87: none, XSAVE is not
/// offered.
pub(crate) const GUEST_SUPPORTED_XCR0: u64 = 0;
/// XCR0 at reset.
pub(crate) const XCR0_RESET: u64 = XFEATURE_FP;

/// Byte offsets in the image (the FXSAVE legacy region, then the header).
pub(crate) mod off {
    /// FCW; the x87 component is bytes 0-159 (MXCSR included, as the
    /// kernel copies it).
    pub(crate) const FCW: usize = 0;
    /// MXCSR.
    pub(crate) const MXCSR: usize = 24;
    /// The end of the x87 component: XMM0 starts here.
    pub(crate) const XMM: usize = 160;
    /// The end of XMM15.
    pub(crate) const XMM_END: usize = 416;
    /// XSTATE_BV.
    pub(crate) const XSTATE_BV: usize = 512;
    /// XCOMP_BV.
    pub(crate) const XCOMP_BV: usize = 520;
    /// The reserved bytes of the header, up to the first extended component.
    pub(crate) const HEADER_RESERVED: usize = 528;
    /// The end of the header.
    pub(crate) const HEADER_END: usize = 576;
}

/// MXCSR bits that may be set: the 16 defined ones (the kernel checks
/// against the CPU's MXCSR_MASK; every CPU rkvm runs on has DAZ, so this
/// is the same mask).
pub(crate) const MXCSR_VALID: u32 = 0xffff;

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(v)
}

/// Why `KVM_SET_XSAVE` refuses an image (all `EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadXsave {
    /// A component bit outside x87 and SSE in XSTATE_BV.
    Features,
    /// A non-zero XCOMP_BV: user space must use the standard format.
    Compacted,
    /// Non-zero reserved header bytes.
    Reserved,
    /// MXCSR with reserved bits set while x87 or SSE state is loaded.
    Mxcsr,
}

/// Checks a `struct kvm_xsave` image (at least the legacy region and the
/// header) and returns its XSTATE_BV, in the kernel's order of checks.
pub(crate) fn check_image(b: &[u8]) -> Result<u64, BadXsave> {
    let bv = u64_at(b, off::XSTATE_BV);
    if bv & !USER_XFEATURES != 0 {
        return Err(BadXsave::Features);
    }
    if u64_at(b, off::XCOMP_BV) != 0 {
        return Err(BadXsave::Compacted);
    }
    if b[off::HEADER_RESERVED..off::HEADER_END]
        .iter()
        .any(|&x| x != 0)
    {
        return Err(BadXsave::Reserved);
    }
    if bv & USER_XFEATURES != 0 {
        let mxcsr = u32::from_le_bytes([
            b[off::MXCSR],
            b[off::MXCSR + 1],
            b[off::MXCSR + 2],
            b[off::MXCSR + 3],
        ]);
        if mxcsr & !MXCSR_VALID != 0 {
            return Err(BadXsave::Mxcsr);
        }
    }
    Ok(bv)
}

/// `__kvm_set_xcr(0, v)` for a guest whose CPUID grants `supported`
/// XCR0 bits beyond x87: x87 always on, AVX only with SSE, nothing the
/// guest may not enable.
pub(crate) fn xcr0_valid(v: u64, supported: u64) -> bool {
    v & XFEATURE_FP != 0
        && !(v & XFEATURE_YMM != 0 && v & XFEATURE_SSE == 0)
        && v & !(supported | XFEATURE_FP) == 0
}
