// SPDX-License-Identifier: GPL-2.0

//! The VMX window: the interrupts-off stretch in which a CPU is in VMX
//! operation running one vCPU.
//!
//! Linux 7.3 lets only the modules named kvm/kvm-intel update the kernel's
//! CR4 shadow, so rkvm may set CR4.VMXE only while nothing else on the CPU
//! can write CR4: with interrupts disabled. [`Window::open`] saves what a
//! VM exit does not restore, sets CR4.VMXE, VMXON, VMCLEAR + VMPTRLD of the
//! vCPU's VMCS and writes the host-state fields for this CPU. Dropping the
//! window VMCLEARs (so the vCPU may run on another CPU next time), VMXOFFs,
//! restores CR4 and the saved host state, and only then lets interrupts
//! back in. See `Documentation/rkvm/design.rst`, "The VMX window".

use core::{
    arch::asm,
    sync::atomic::{
        AtomicI32,
        Ordering, //
    },
};

use kernel::{
    cpu::CpuId,
    interrupt::{
        local_interrupt_disable,
        LocalInterruptDisabled, //
    },
    prelude::*,
};

use super::{
    caps::CR4_VMXE,
    vmcs::{
        self,
        field, //
    },
};
use crate::{
    abi::KvmFpu,
    mmu::Page4k,
    shim::{
        self,
        FpuGuard, //
    },
};

extern "C" {
    /// `c/vmenter.S`.
    fn rkvm_vmx_enter(gprs: *mut u64, resume: i32) -> i32;
    /// The VM-exit landing point (HOST_RIP) inside `rkvm_vmx_enter`.
    fn rkvm_vmx_exit();
}

mod msr {
    pub(super) const SYSENTER_CS: u32 = 0x174;
    pub(super) const SYSENTER_ESP: u32 = 0x175;
    pub(super) const SYSENTER_EIP: u32 = 0x176;
    pub(super) const DEBUGCTL: u32 = 0x1d9;
    pub(super) const PAT: u32 = 0x277;
    pub(super) const EFER: u32 = 0xc000_0080;
    pub(super) const FS_BASE: u32 = 0xc000_0100;
    pub(super) const GS_BASE: u32 = 0xc000_0101;
    pub(super) const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub(super) const STAR: u32 = 0xc000_0081;
    pub(super) const LSTAR: u32 = 0xc000_0082;
    pub(super) const CSTAR: u32 = 0xc000_0083;
    pub(super) const SFMASK: u32 = 0xc000_0084;
}

/// The MSRs SYSCALL, SYSRET and SWAPGS use, which a VM exit does not
/// switch: STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE (the order of
/// `x86::msr::Msrs::syscall()`). The guest's values are in the CPU from
/// [`Window::load_syscall_msrs`] until the window closes; the host's are
/// back before interrupts are enabled.
pub(crate) const SYSCALL_MSRS: [u32; 5] = [
    msr::STAR,
    msr::LSTAR,
    msr::CSTAR,
    msr::SFMASK,
    msr::KERNEL_GS_BASE,
];

/// Reads debug register `n` (0-3, 6).
fn read_dr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading a debug register at CPL 0 has no side effects.
    unsafe {
        match n {
            0 => asm!("mov {}, dr0", out(reg) v, options(nomem, nostack, preserves_flags)),
            1 => asm!("mov {}, dr1", out(reg) v, options(nomem, nostack, preserves_flags)),
            2 => asm!("mov {}, dr2", out(reg) v, options(nomem, nostack, preserves_flags)),
            3 => asm!("mov {}, dr3", out(reg) v, options(nomem, nostack, preserves_flags)),
            _ => asm!("mov {}, dr6", out(reg) v, options(nomem, nostack, preserves_flags)),
        }
    }
    v
}

/// Writes debug register `n` (0-3, 6).
///
/// # Safety
///
/// Interrupts disabled in a VMX window, DR7 with no breakpoint of the
/// host's enabled (0x400, as a VM exit leaves it); DR6 values have bits 63:32
/// clear. The caller restores the host's value before the window closes.
unsafe fn write_dr(n: u8, v: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match n {
            0 => asm!("mov dr0, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            1 => asm!("mov dr1, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            2 => asm!("mov dr2, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            3 => asm!("mov dr3, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            _ => asm!("mov dr6, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
        }
    }
}

/// DR7 after reset and after every VM exit.
const DR7_RESET: u64 = 0x400;
/// CR4.OSXSAVE.
const CR4_OSXSAVE: u64 = 1 << 18;
/// XCR0 state components rkvm never lets the guest area load: PKRU.
const XCR0_PKRU: u64 = 1 << 9;

/// The per-vCPU pages of the VMX window.
pub(crate) struct VmxPages {
    vmxon: KBox<Page4k>,
    vmcs: KBox<Page4k>,
    /// The guest's x87/SSE/AVX state between windows (XSAVE standard
    /// format, or FXSAVE format without XSAVE).
    fpu: KBox<Page4k>,
}

impl VmxPages {
    /// Pages for a vCPU, stamped with the VMCS revision id; the guest FPU
    /// state is the reset state (FCW 0x37f, MXCSR 0x1f80).
    pub(crate) fn new(revision_id: u32) -> Result<Self> {
        let mut vmxon = Page4k::new_zeroed()?;
        let mut vmcs = Page4k::new_zeroed()?;
        vmxon.0[0] = u64::from(revision_id);
        vmcs.0[0] = u64::from(revision_id);
        let mut fpu = Page4k::new_zeroed()?;
        // FCW (bytes 0-1) and MXCSR (bytes 24-27).
        fpu.0[0] = 0x37f;
        fpu.0[3] = 0x1f80;
        Ok(Self { vmxon, vmcs, fpu })
    }
}

/// Byte offsets in the FXSAVE/XSAVE legacy region and header.
mod fx {
    pub(super) const FCW: usize = 0;
    pub(super) const FSW: usize = 2;
    pub(super) const FTW: usize = 4;
    pub(super) const FOP: usize = 6;
    pub(super) const FIP: usize = 8;
    pub(super) const FDP: usize = 16;
    pub(super) const ST: usize = 32;
    pub(super) const XMM: usize = 160;
    pub(super) const XSTATE_BV: usize = 512;
}

impl VmxPages {
    fn fpu_bytes(&self) -> &[u8; 4096] {
        // SAFETY: `Page4k` is 4096 bytes of plain integers; viewing them as
        // bytes is always valid and the borrow keeps the page alive.
        unsafe { &*self.fpu.0.as_ptr().cast::<[u8; 4096]>() }
    }

    fn fpu_bytes_mut(&mut self) -> &mut [u8; 4096] {
        // SAFETY: as above, with exclusive access through `&mut self`.
        unsafe { &mut *self.fpu.0.as_mut_ptr().cast::<[u8; 4096]>() }
    }

    /// `KVM_GET_FPU`: the legacy region as saved by the last window (MXCSR
    /// is not reported, as on KVM).
    pub(crate) fn get_fpu(&self) -> KvmFpu {
        let b = self.fpu_bytes();
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u64_at = |o: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(v)
        };
        let mut f = KvmFpu {
            fpr: [[0; 16]; 8],
            fcw: u16_at(fx::FCW),
            fsw: u16_at(fx::FSW),
            ftwx: b[fx::FTW],
            pad1: 0,
            last_opcode: u16_at(fx::FOP),
            last_ip: u64_at(fx::FIP),
            last_dp: u64_at(fx::FDP),
            xmm: [[0; 16]; 16],
            mxcsr: 0,
            pad2: 0,
        };
        for (i, r) in f.fpr.iter_mut().enumerate() {
            r.copy_from_slice(&b[fx::ST + 16 * i..fx::ST + 16 * i + 16]);
        }
        for (i, r) in f.xmm.iter_mut().enumerate() {
            r.copy_from_slice(&b[fx::XMM + 16 * i..fx::XMM + 16 * i + 16]);
        }
        f
    }

    /// `KVM_SET_FPU`: writes the legacy region (MXCSR untouched, as on
    /// KVM) and marks x87 and SSE state as present, so XRSTOR loads them.
    pub(crate) fn set_fpu(&mut self, f: &KvmFpu) {
        let b = self.fpu_bytes_mut();
        b[fx::FCW..fx::FCW + 2].copy_from_slice(&f.fcw.to_le_bytes());
        b[fx::FSW..fx::FSW + 2].copy_from_slice(&f.fsw.to_le_bytes());
        b[fx::FTW] = f.ftwx;
        b[fx::FOP..fx::FOP + 2].copy_from_slice(&f.last_opcode.to_le_bytes());
        b[fx::FIP..fx::FIP + 8].copy_from_slice(&f.last_ip.to_le_bytes());
        b[fx::FDP..fx::FDP + 8].copy_from_slice(&f.last_dp.to_le_bytes());
        for (i, r) in f.fpr.iter().enumerate() {
            b[fx::ST + 16 * i..fx::ST + 16 * i + 16].copy_from_slice(r);
        }
        for (i, r) in f.xmm.iter().enumerate() {
            b[fx::XMM + 16 * i..fx::XMM + 16 * i + 16].copy_from_slice(r);
        }
        b[fx::XSTATE_BV] |= 0b11;
    }
}

/// Whether the host saves FPU state with XSAVE (CR4.OSXSAVE), which is
/// also how the window saves the guest's (else FXSAVE).
pub(crate) fn host_has_xsave() -> bool {
    read_cr4() & CR4_OSXSAVE != 0
}

impl VmxPages {
    /// `KVM_GET_XSAVE`: fills `out` (4096 bytes, zeroed) with the x87 and
    /// SSE components in the standard XSAVE layout and their XSTATE_BV; a
    /// component in its initial state (XSTATE_BV bit clear) reads as that
    /// state, as the kernel's `copy_xstate_to_uabi_buf()` writes it.
    pub(crate) fn get_xsave(&self, out: &mut [u8]) {
        use crate::x86::xsave::{
            off,
            USER_XFEATURES, //
        };
        let b = self.fpu_bytes();
        let bv = if host_has_xsave() {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[off::XSTATE_BV..off::XSTATE_BV + 8]);
            u64::from_le_bytes(v) & USER_XFEATURES
        } else {
            USER_XFEATURES
        };
        out[..off::XMM_END].copy_from_slice(&b[..off::XMM_END]);
        init_missing(out, bv);
        out[off::XSTATE_BV..off::XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
    }

    /// `KVM_SET_XSAVE` of a checked image (`x86::xsave::check_image`)
    /// whose XSTATE_BV is `bv`: the components it holds are copied, the
    /// others return to their initial state (MXCSR is kept unless x87 or
    /// SSE state comes with it), as `copy_uabi_to_xstate()` does.
    pub(crate) fn set_xsave(&mut self, img: &[u8], bv: u64) {
        use crate::x86::xsave::{
            off,
            XFEATURE_FP,
            XFEATURE_SSE, //
        };
        let b = self.fpu_bytes_mut();
        if bv & XFEATURE_FP != 0 {
            b[..off::XMM].copy_from_slice(&img[..off::XMM]);
        } else if bv & XFEATURE_SSE != 0 {
            b[off::MXCSR..off::MXCSR + 4].copy_from_slice(&img[off::MXCSR..off::MXCSR + 4]);
        }
        if bv & XFEATURE_SSE != 0 {
            b[off::XMM..off::XMM_END].copy_from_slice(&img[off::XMM..off::XMM_END]);
        }
        init_missing(&mut b[..], bv);
        // Components outside x87/SSE go back to their initial state too
        // (the guest cannot use them: no XSAVE, no AVX).
        b[off::XSTATE_BV..off::XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
    }
}

/// Writes the initial state of the x87 (FCW 0x37f, the rest 0; MXCSR
/// kept) and SSE (XMM registers 0) components `bv` lacks into the legacy
/// region `b`.
fn init_missing(b: &mut [u8], bv: u64) {
    use crate::x86::xsave::{
        off,
        XFEATURE_FP,
        XFEATURE_SSE, //
    };
    if bv & XFEATURE_FP == 0 {
        b[..off::MXCSR].fill(0);
        b[off::MXCSR + 8..off::XMM].fill(0);
        b[off::FCW..off::FCW + 2].copy_from_slice(&0x37fu16.to_le_bytes());
    }
    if bv & XFEATURE_SSE == 0 {
        b[off::XMM..off::XMM_END].fill(0);
    }
}

/// A descriptor-table register image (SGDT/SIDT layout).
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
struct DescPtr {
    limit: u16,
    base: u64,
}

/// What VM exit does not restore, saved at [`Window::open`].
struct HostState {
    cr4: u64,
    ds: u16,
    es: u16,
    fs: u16,
    gs: u16,
    ldt: u16,
    gdt: DescPtr,
    idt: DescPtr,
    fs_base: u64,
    kernel_gs_base: u64,
    dr7: u64,
    debugctl: u64,
    xsave_mask: Option<u64>,
}

fn rdmsr(index: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called for architectural MSRs every x86-64 CPU has.
    unsafe {
        asm!("rdmsr", in("ecx") index, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags));
    }
    u64::from(hi) << 32 | u64::from(lo)
}

fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes CR4 behind the kernel's shadow.
///
/// # Safety
///
/// Interrupts disabled; the value differs from the shadow only in VMXE,
/// and the caller restores the shadow's value before enabling interrupts.
unsafe fn write_cr4(v: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack, preserves_flags)) };
}

macro_rules! read_seg {
    ($seg:literal) => {{
        let v: u16;
        // SAFETY: reading a segment selector has no side effects.
        unsafe {
            asm!(concat!("mov {0:x}, ", $seg), out(reg) v,
                 options(nomem, nostack, preserves_flags));
        }
        v
    }};
}

impl HostState {
    fn save() -> Self {
        let mut gdt = DescPtr::default();
        let mut idt = DescPtr::default();
        let (ldt, dr7): (u16, u64);
        // SAFETY: SGDT/SIDT store 10 bytes into the `DescPtr`s; SLDT and
        // reading DR7 have no side effects.
        unsafe {
            asm!("sgdt [{}]", in(reg) &raw mut gdt, options(nostack, preserves_flags));
            asm!("sidt [{}]", in(reg) &raw mut idt, options(nostack, preserves_flags));
            asm!("sldt {0:x}", out(reg) ldt, options(nomem, nostack, preserves_flags));
            asm!("mov {}, dr7", out(reg) dr7, options(nomem, nostack, preserves_flags));
        }
        let cr4 = read_cr4();
        let xsave_mask = (cr4 & CR4_OSXSAVE != 0).then(|| {
            let (lo, hi): (u32, u32);
            // SAFETY: XGETBV(0) is valid with CR4.OSXSAVE set.
            unsafe {
                asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
                     options(nomem, nostack, preserves_flags));
            }
            (u64::from(hi) << 32 | u64::from(lo)) & !XCR0_PKRU
        });
        Self {
            cr4,
            ds: read_seg!("ds"),
            es: read_seg!("es"),
            fs: read_seg!("fs"),
            gs: read_seg!("gs"),
            ldt,
            gdt,
            idt,
            fs_base: rdmsr(msr::FS_BASE),
            kernel_gs_base: rdmsr(msr::KERNEL_GS_BASE),
            dr7,
            debugctl: shim::rdmsr_safe(msr::DEBUGCTL).unwrap_or(0),
            xsave_mask,
        }
    }

    /// The base of the TSS the current TR selects, from its GDT descriptor.
    fn tr_base(&self) -> u64 {
        let tr: u16;
        // SAFETY: STR has no side effects.
        unsafe { asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags)) };
        let desc = (self.gdt.base + u64::from(tr & !7)) as *const u64;
        // SAFETY: TR selects a 16-byte system descriptor inside the GDT,
        // which is mapped (it is the live GDT of this CPU).
        let (lo, hi) = unsafe { (desc.read_unaligned(), desc.add(1).read_unaligned()) };
        ((lo >> 16) & 0xff_ffff) | ((lo >> 56) << 24) | ((hi & 0xffff_ffff) << 32)
    }

    /// Restores what VM exit changed: data segment selectors, FS/GS with
    /// their bases, LDTR, the GDT and IDT limits, DR7 and DEBUGCTL.
    ///
    /// # Safety
    ///
    /// Interrupts disabled, after the last VM exit of the window.
    unsafe fn restore(&self) {
        // SAFETY: every value was read from this CPU at `save`, with
        // interrupts disabled since; reloading them undoes VM exit.
        unsafe {
            if self.ds != 0 {
                asm!("mov ds, {0:x}", in(reg) self.ds, options(nostack, preserves_flags));
            }
            if self.es != 0 {
                asm!("mov es, {0:x}", in(reg) self.es, options(nostack, preserves_flags));
            }
            if self.fs != 0 {
                asm!("mov fs, {0:x}", in(reg) self.fs, options(nostack, preserves_flags));
                shim::wrmsr(msr::FS_BASE, self.fs_base);
            }
            if self.gs != 0 {
                shim::load_gs_index(self.gs);
                shim::wrmsr(msr::KERNEL_GS_BASE, self.kernel_gs_base);
            }
            if self.ldt != 0 {
                asm!("lldt {0:x}", in(reg) self.ldt, options(nostack, preserves_flags));
            }
            asm!("lgdt [{}]", in(reg) &raw const self.gdt, options(nostack, preserves_flags));
            asm!("lidt [{}]", in(reg) &raw const self.idt, options(nostack, preserves_flags));
            if self.dr7 != DR7_RESET {
                asm!("mov dr7, {}", in(reg) self.dr7, options(nostack, preserves_flags));
            }
            if self.debugctl != 0 {
                shim::wrmsr(msr::DEBUGCTL, self.debugctl);
            }
        }
    }
}

/// Why a window could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// CR4.VMXE was already set: another hypervisor owns VMX on this CPU.
    Busy,
    /// VMXON, VMCLEAR or VMPTRLD failed.
    VmxFailed,
}

/// An open VMX window on the current CPU.
///
/// # Invariants
///
/// While it exists: interrupts are disabled, the CPU is in VMX root
/// operation with CR4.VMXE set behind the kernel's CR4 shadow, the vCPU's
/// VMCS is current (after a successful [`Window::open`]), and the vCPU's
/// `running` cell holds this CPU's number.
pub(crate) struct Window<'a> {
    host: HostState,
    pages: &'a mut VmxPages,
    running: &'a AtomicI32,
    cpu: u32,
    launched: bool,
    /// The guest's FPU state is in the registers.
    fpu_loaded: bool,
    /// The first VMCS field a VMWRITE failed on.
    write_failed: Option<u32>,
    /// The run controls load IA32_PAT on entry and exit.
    pat_controls: bool,
    /// The host's values of [`SYSCALL_MSRS`] while the guest's are in the
    /// CPU.
    host_syscall: Option<[u64; 5]>,
    /// The host's DR0-DR3 and DR6 while the guest's are in the CPU.
    host_debug: Option<[u64; 5]>,
    // Drop order: interrupts are enabled before the FPU section ends.
    _irq: LocalInterruptDisabled,
    _fpu: FpuGuard,
}

impl<'a> Window<'a> {
    /// Opens the window for the vCPU owning `pages`; `running` is its
    /// "in a window on CPU n" cell.
    pub(crate) fn open(
        pages: &'a mut VmxPages,
        running: &'a AtomicI32,
        pat_controls: bool,
    ) -> Result<Self, OpenError> {
        let fpu = FpuGuard::new();
        let irq = local_interrupt_disable();
        let host = HostState::save();
        if host.cr4 & CR4_VMXE != 0 {
            return Err(OpenError::Busy);
        }
        // SAFETY: interrupts are disabled; CR4 is restored from `host.cr4`
        // on every path below (here or in `drop`).
        unsafe { write_cr4(host.cr4 | CR4_VMXE) };
        // SAFETY: CR4.VMXE is set, interrupts are off; the VMXON page holds
        // the revision id and belongs to this vCPU, which runs on one CPU
        // at a time (its state mutex is held).
        if !unsafe { vmcs::vmxon(pages.vmxon.phys()) } {
            // SAFETY: as for the write above.
            unsafe { write_cr4(host.cr4) };
            return Err(OpenError::VmxFailed);
        }
        let cpu = CpuId::current().as_u32();
        // INVARIANT: interrupts stay disabled (`irq`), VMX is on.
        let mut w = Self {
            host,
            pages,
            running,
            cpu,
            launched: false,
            fpu_loaded: false,
            write_failed: None,
            pat_controls,
            host_syscall: None,
            host_debug: None,
            _irq: irq,
            _fpu: fpu,
        };
        let vmcs_pa = w.pages.vmcs.phys();
        // SAFETY: VMX root operation; the VMCS was VMCLEARed when its last
        // window closed (or is fresh), so it is active on no other CPU.
        if !unsafe { vmcs::vmclear(vmcs_pa) && vmcs::vmptrld(vmcs_pa) } {
            return Err(OpenError::VmxFailed);
        }
        // Publish the CPU only now: a kicker that reads it IPIs this CPU,
        // which takes the IPI when the window closes.
        w.running.store(cpu as i32, Ordering::SeqCst);
        w.write_host_state();
        w.load_guest_fpu();
        Ok(w)
    }

    /// The CPU the window is open on.
    pub(crate) fn cpu(&self) -> u32 {
        self.cpu
    }

    /// Writes a VMCS field, remembering the first failure.
    pub(crate) fn write(&mut self, f: u32, v: u64) {
        // SAFETY: the window invariant: VMX root with the VMCS current.
        if !unsafe { vmcs::vmwrite(f, v) } && self.write_failed.is_none() {
            self.write_failed = Some(f);
        }
    }

    /// Reads a VMCS field.
    pub(crate) fn read(&self, f: u32) -> u64 {
        // SAFETY: the window invariant.
        unsafe { vmcs::vmread(f) }
    }

    /// The first field a VMWRITE failed on, if any.
    pub(crate) fn write_failed(&self) -> Option<u32> {
        self.write_failed
    }

    /// Loads the guest's IA32_PAT on entry (and the host's on exit) when
    /// the CPU has the PAT controls; without them the guest runs with the
    /// host's PAT.
    pub(crate) fn write_pat(&mut self, guest_pat: u64) {
        if self.pat_controls {
            self.write(field::GUEST_IA32_PAT, guest_pat);
        }
    }

    /// Puts the guest's SYSCALL/SWAPGS MSRs (in [`SYSCALL_MSRS`] order)
    /// into the CPU for the rest of the window, keeping the host's. Every
    /// value must be one WRMSR accepts (canonical addresses, FMASK bits
    /// 63:32 clear: `x86::msr::write_valid`).
    pub(crate) fn load_syscall_msrs(&mut self, guest: &[u64; 5]) {
        if self.host_syscall.is_some() {
            return;
        }
        let mut host = [0; 5];
        for (i, &m) in SYSCALL_MSRS.iter().enumerate() {
            host[i] = if m == msr::KERNEL_GS_BASE {
                self.host.kernel_gs_base
            } else {
                rdmsr(m)
            };
            // SAFETY: interrupts are off (window invariant) and nothing
            // the host runs before `drop` restores `host` uses these MSRs
            // (no SYSCALL, no SWAPGS: an NMI taken from kernel mode does
            // not swap GS); the value is valid for the MSR (caller).
            unsafe { shim::wrmsr(m, guest[i]) };
        }
        self.host_syscall = Some(host);
    }

    /// Writes the guest's value of `SYSCALL_MSRS[i]` to the CPU, if the
    /// guest's are loaded; the value must be valid for the MSR.
    pub(crate) fn write_syscall_msr(&mut self, i: usize, v: u64) {
        if self.host_syscall.is_some() {
            // SAFETY: as in `load_syscall_msrs`.
            unsafe { shim::wrmsr(SYSCALL_MSRS[i], v) };
        }
    }

    /// The guest's KERNEL_GS_BASE as SWAPGS left it, if loaded.
    pub(crate) fn guest_kernel_gs_base(&self) -> Option<u64> {
        self.host_syscall.map(|_| rdmsr(msr::KERNEL_GS_BASE))
    }

    /// Puts the guest's DR0-DR3 and DR6 into the CPU for the rest of the
    /// window (its DR7, in the VMCS, enables breakpoints), keeping the
    /// host's. DR6 must have bits 63:32 clear.
    pub(crate) fn load_guest_debug(&mut self, db: &[u64; 4], dr6: u64) {
        if self.host_debug.is_some() {
            return;
        }
        // Before the first entry DR7 is still the host's, which may enable
        // breakpoints (a ptrace watchpoint of this task): disable them
        // first, as KVM does. `HostState::restore` puts the host's DR7
        // back when the window closes.
        // SAFETY: window invariant (interrupts off); DR7 = 0x400 only
        // disables breakpoints.
        unsafe {
            asm!("mov dr7, {}", in(reg) DR7_RESET, options(nomem, nostack, preserves_flags));
        }
        let mut host = [0; 5];
        for n in 0..4u8 {
            host[usize::from(n)] = read_dr(n);
            // SAFETY: window invariant; DR7 is 0x400 (set above, and a VM
            // exit leaves it so), so no host breakpoint uses DR0-DR3 until
            // `drop` restores them.
            unsafe { write_dr(n, db[usize::from(n)]) };
        }
        host[4] = read_dr(6);
        // SAFETY: as above; the caller checked DR6.
        unsafe { write_dr(6, dr6) };
        self.host_debug = Some(host);
    }

    /// Writes the guest's DR`n` (0-3, 6) to the CPU, if the guest's are
    /// loaded.
    pub(crate) fn write_guest_dr(&mut self, n: u8, v: u64) {
        if self.host_debug.is_some() {
            // SAFETY: as in `load_guest_debug`.
            unsafe { write_dr(n, v) };
        }
    }

    /// The guest's DR6 as the CPU holds it (a #DB in the guest sets its
    /// bits), if loaded.
    pub(crate) fn guest_dr6(&self) -> Option<u64> {
        self.host_debug.map(|_| read_dr(6))
    }

    /// INVEPT for `eptp` (single-context if the CPU has it, else all).
    pub(crate) fn invept(&self, eptp: u64, single: bool) {
        // SAFETY: the window invariant; the probe required the type used.
        unsafe { vmcs::invept(if single { 1 } else { 2 }, eptp) };
    }

    fn write_host_state(&mut self) {
        let (cr0, cr3, cs, ss, tr): (u64, u64, u16, u16, u16);
        // SAFETY: reading control registers and selectors has no side
        // effects.
        unsafe {
            asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags));
            asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags));
            asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags));
            asm!("mov {0:x}, ss", out(reg) ss, options(nomem, nostack, preserves_flags));
            asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags));
        }
        let tr_base = self.host.tr_base();
        let (gdt_base, idt_base) = (self.host.gdt.base, self.host.idt.base);
        self.write(field::HOST_CR0, cr0);
        self.write(field::HOST_CR3, cr3);
        self.write(field::HOST_CR4, self.host.cr4 | CR4_VMXE);
        self.write(field::HOST_CS_SELECTOR, u64::from(cs));
        self.write(field::HOST_SS_SELECTOR, u64::from(ss));
        // DS/ES/FS/GS: null at exit (user selectors have RPL 3, which the
        // host-state checks forbid); `HostState::restore` reloads them.
        for f in [
            field::HOST_DS_SELECTOR,
            field::HOST_ES_SELECTOR,
            field::HOST_FS_SELECTOR,
            field::HOST_GS_SELECTOR,
        ] {
            self.write(f, 0);
        }
        self.write(field::HOST_TR_SELECTOR, u64::from(tr));
        self.write(field::HOST_TR_BASE, tr_base);
        self.write(field::HOST_GDTR_BASE, gdt_base);
        self.write(field::HOST_IDTR_BASE, idt_base);
        self.write(field::HOST_FS_BASE, self.host.fs_base);
        self.write(field::HOST_GS_BASE, rdmsr(msr::GS_BASE));
        self.write(field::HOST_IA32_SYSENTER_CS, rdmsr(msr::SYSENTER_CS));
        self.write(field::HOST_IA32_SYSENTER_ESP, rdmsr(msr::SYSENTER_ESP));
        self.write(field::HOST_IA32_SYSENTER_EIP, rdmsr(msr::SYSENTER_EIP));
        self.write(field::HOST_IA32_EFER, rdmsr(msr::EFER));
        if self.pat_controls {
            self.write(field::HOST_IA32_PAT, rdmsr(msr::PAT));
        }
        self.write(field::HOST_RIP, rkvm_vmx_exit as usize as u64);
    }

    fn load_guest_fpu(&mut self) {
        let area = self.pages.fpu.0.as_ptr();
        match self.host.xsave_mask {
            // SAFETY: the FPU section is open (`_fpu`), so the registers
            // are free; the area is 4 KiB, 64-byte aligned, large enough
            // for every component the host enables in XCR0 (checked at VM
            // creation) and holds either the reset image (a zero XSAVE
            // header: every component in its initial state) or what the
            // last window saved.
            Some(mask) => unsafe {
                asm!("xrstor64 [{}]", in(reg) area, in("eax") mask as u32,
                     in("edx") (mask >> 32) as u32, options(nostack));
            },
            // SAFETY: as above, FXSAVE format.
            None => unsafe { asm!("fxrstor64 [{}]", in(reg) area, options(nostack)) },
        }
        self.fpu_loaded = true;
    }

    fn save_guest_fpu(&mut self) {
        if !self.fpu_loaded {
            return;
        }
        let area = self.pages.fpu.0.as_mut_ptr();
        match self.host.xsave_mask {
            // SAFETY: the area is ours and large enough (see load).
            Some(mask) => unsafe {
                asm!("xsave64 [{}]", in(reg) area, in("eax") mask as u32,
                     in("edx") (mask >> 32) as u32, options(nostack));
            },
            // SAFETY: as above.
            None => unsafe { asm!("fxsave64 [{}]", in(reg) area, options(nostack)) },
        }
    }

    /// Runs the guest until the next VM exit. `gprs` holds the guest's
    /// general-purpose registers in hardware order (slot 4, RSP, unused:
    /// the VMCS has it); `cr2` is the guest's CR2. `Err` carries the
    /// VM-instruction error when VMLAUNCH/VMRESUME itself failed.
    pub(crate) fn enter(&mut self, gprs: &mut [u64; 16], cr2: &mut u64) -> Result<(), u32> {
        // SAFETY: CR2 belongs to whoever runs; the host only reads it in
        // its page-fault handler, which cannot run (interrupts are off
        // and this code touches no unmapped memory).
        unsafe { asm!("mov cr2, {}", in(reg) *cr2, options(nostack, preserves_flags)) };
        // SAFETY: the window invariant; every host field was written at
        // open and the guest fields by the caller; `gprs` is valid for the
        // 16 reads and writes the entry code does.
        let failed = unsafe { rkvm_vmx_enter(gprs.as_mut_ptr(), i32::from(self.launched)) };
        // SAFETY: reading CR2 has no side effects.
        unsafe {
            asm!(
                "mov {}, cr2",
                out(reg) * cr2,
                options(nomem, nostack, preserves_flags)
            )
        };
        if failed != 0 {
            return Err(self.read(field::VM_INSTRUCTION_ERROR) as u32);
        }
        self.launched = true;
        Ok(())
    }

    /// Hands an NMI that exited the guest to the host's NMI handler.
    pub(crate) fn reraise_nmi(&self) {
        // SAFETY: INT 2 runs the kernel's NMI entry like a hardware NMI
        // (without NMI blocking); GS base and the stacks are the host's
        // again after the VM exit.
        unsafe { asm!("int 2") };
    }
}

impl Drop for Window<'_> {
    fn drop(&mut self) {
        self.save_guest_fpu();
        let vmcs_pa = self.pages.vmcs.phys();
        // SAFETY: VMX root operation (invariant). VMCLEAR writes the VMCS
        // back so another CPU may load it; then VMX is left and CR4, the
        // host's debug registers and SYSCALL MSRs (values read from this
        // CPU in this window) and the rest of the host state are restored
        // with interrupts still disabled.
        unsafe {
            vmcs::vmclear(vmcs_pa);
            vmcs::vmxoff();
            write_cr4(self.host.cr4);
            if let Some(h) = self.host_debug {
                for n in 0..4u8 {
                    write_dr(n, h[usize::from(n)]);
                }
                write_dr(6, h[4]);
            }
            if let Some(h) = self.host_syscall {
                for (i, &m) in SYSCALL_MSRS.iter().enumerate() {
                    shim::wrmsr(m, h[i]);
                }
            }
            self.host.restore();
        }
        self.running.store(-1, Ordering::SeqCst);
        // `_irq` then `_fpu` drop now: interrupts on, FPU section ends.
    }
}
