// SPDX-License-Identifier: GPL-2.0

//! The KVM ABI structures rkvm reads and writes: `#[repr(C)]` copies of
//! `include/uapi/linux/kvm.h` and `arch/x86/include/uapi/asm/kvm.h`. Pure
//! `core` code, shared with the host tests, which check every offset listed
//! in `selftests/abi_layout.h` (whose values the C compiler checks against
//! the kernel's own header when the selftests are built).

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmUserspaceMemoryRegion {
    pub(crate) slot: u32,
    pub(crate) flags: u32,
    pub(crate) guest_phys_addr: u64,
    pub(crate) memory_size: u64,
    pub(crate) userspace_addr: u64,
}

/// `struct kvm_dirty_log` (the bitmap pointer of its union).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmDirtyLog {
    pub(crate) slot: u32,
    pub(crate) padding1: u32,
    pub(crate) dirty_bitmap: u64,
}

/// `struct kvm_userspace_memory_region2`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmUserspaceMemoryRegion2 {
    pub(crate) slot: u32,
    pub(crate) flags: u32,
    pub(crate) guest_phys_addr: u64,
    pub(crate) memory_size: u64,
    pub(crate) userspace_addr: u64,
    pub(crate) guest_memfd_offset: u64,
    pub(crate) guest_memfd: u32,
    pub(crate) pad1: u32,
    pub(crate) pad2: [u64; 14],
}

/// `struct kvm_regs`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmRegs {
    pub(crate) rax: u64,
    pub(crate) rbx: u64,
    pub(crate) rcx: u64,
    pub(crate) rdx: u64,
    pub(crate) rsi: u64,
    pub(crate) rdi: u64,
    pub(crate) rsp: u64,
    pub(crate) rbp: u64,
    pub(crate) r8: u64,
    pub(crate) r9: u64,
    pub(crate) r10: u64,
    pub(crate) r11: u64,
    pub(crate) r12: u64,
    pub(crate) r13: u64,
    pub(crate) r14: u64,
    pub(crate) r15: u64,
    pub(crate) rip: u64,
    pub(crate) rflags: u64,
}

/// `struct kvm_segment`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmSegment {
    pub(crate) base: u64,
    pub(crate) limit: u32,
    pub(crate) selector: u16,
    pub(crate) type_: u8,
    pub(crate) present: u8,
    pub(crate) dpl: u8,
    pub(crate) db: u8,
    pub(crate) s: u8,
    pub(crate) l: u8,
    pub(crate) g: u8,
    pub(crate) avl: u8,
    pub(crate) unusable: u8,
    pub(crate) padding: u8,
}

/// `struct kvm_dtable`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmDtable {
    pub(crate) base: u64,
    pub(crate) limit: u16,
    pub(crate) padding: [u16; 3],
}

/// `struct kvm_sregs`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmSregs {
    pub(crate) cs: KvmSegment,
    pub(crate) ds: KvmSegment,
    pub(crate) es: KvmSegment,
    pub(crate) fs: KvmSegment,
    pub(crate) gs: KvmSegment,
    pub(crate) ss: KvmSegment,
    pub(crate) tr: KvmSegment,
    pub(crate) ldt: KvmSegment,
    pub(crate) gdt: KvmDtable,
    pub(crate) idt: KvmDtable,
    pub(crate) cr0: u64,
    pub(crate) cr2: u64,
    pub(crate) cr3: u64,
    pub(crate) cr4: u64,
    pub(crate) cr8: u64,
    pub(crate) efer: u64,
    pub(crate) apic_base: u64,
    pub(crate) interrupt_bitmap: [u64; 4],
}

/// `struct kvm_fpu`: the x87/SSE state in FXSAVE terms.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmFpu {
    pub(crate) fpr: [[u8; 16]; 8],
    pub(crate) fcw: u16,
    pub(crate) fsw: u16,
    pub(crate) ftwx: u8,
    pub(crate) pad1: u8,
    pub(crate) last_opcode: u16,
    pub(crate) last_ip: u64,
    pub(crate) last_dp: u64,
    pub(crate) xmm: [[u8; 16]; 16],
    pub(crate) mxcsr: u32,
    pub(crate) pad2: u32,
}

/// `struct kvm_vcpu_events`, flattened (the C sub-structs are byte
/// groups with no padding).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmVcpuEvents {
    pub(crate) exception_injected: u8,
    pub(crate) exception_nr: u8,
    pub(crate) exception_has_error_code: u8,
    pub(crate) exception_pending: u8,
    pub(crate) exception_error_code: u32,
    pub(crate) interrupt_injected: u8,
    pub(crate) interrupt_nr: u8,
    pub(crate) interrupt_soft: u8,
    pub(crate) interrupt_shadow: u8,
    pub(crate) nmi_injected: u8,
    pub(crate) nmi_pending: u8,
    pub(crate) nmi_masked: u8,
    pub(crate) nmi_pad: u8,
    pub(crate) sipi_vector: u32,
    pub(crate) flags: u32,
    pub(crate) smi: [u8; 4],
    pub(crate) triple_fault_pending: u8,
    pub(crate) reserved: [u8; 26],
    pub(crate) exception_has_payload: u8,
    pub(crate) exception_payload: u64,
}

/// `struct kvm_msrs` without its flexible array of entries.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmMsrs {
    pub(crate) nmsrs: u32,
    pub(crate) pad: u32,
}

/// `struct kvm_msr_entry`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmMsrEntry {
    pub(crate) index: u32,
    pub(crate) reserved: u32,
    pub(crate) data: u64,
}

/// `struct kvm_cpuid2` without its flexible array of entries.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmCpuid2 {
    pub(crate) nent: u32,
    pub(crate) padding: u32,
}

/// `struct kvm_cpuid_entry2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmCpuidEntry2 {
    pub(crate) function: u32,
    pub(crate) index: u32,
    pub(crate) flags: u32,
    pub(crate) eax: u32,
    pub(crate) ebx: u32,
    pub(crate) ecx: u32,
    pub(crate) edx: u32,
    pub(crate) padding: [u32; 3],
}

impl From<KvmUserspaceMemoryRegion> for KvmUserspaceMemoryRegion2 {
    fn from(r: KvmUserspaceMemoryRegion) -> Self {
        Self {
            slot: r.slot,
            flags: r.flags,
            guest_phys_addr: r.guest_phys_addr,
            memory_size: r.memory_size,
            userspace_addr: r.userspace_addr,
            guest_memfd_offset: 0,
            guest_memfd: 0,
            pad1: 0,
            pad2: [0; 14],
        }
    }
}

/// `struct kvm_debugregs`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmDebugregs {
    pub(crate) db: [u64; 4],
    pub(crate) dr6: u64,
    pub(crate) dr7: u64,
    pub(crate) flags: u64,
    pub(crate) reserved: [u64; 9],
}

/// `struct kvm_xcr`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmXcr {
    pub(crate) xcr: u32,
    pub(crate) reserved: u32,
    pub(crate) value: u64,
}

/// `KVM_MAX_XCRS`.
pub(crate) const MAX_XCRS: usize = 16;

/// `struct kvm_xcrs`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmXcrs {
    pub(crate) nr_xcrs: u32,
    pub(crate) flags: u32,
    pub(crate) xcrs: [KvmXcr; MAX_XCRS],
    pub(crate) padding: [u64; 16],
}

/// `struct kvm_x86_mce`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmX86Mce {
    pub(crate) status: u64,
    pub(crate) addr: u64,
    pub(crate) misc: u64,
    pub(crate) mcg_status: u64,
    pub(crate) bank: u8,
    pub(crate) pad1: [u8; 7],
    pub(crate) pad2: [u64; 3],
}

/// `struct kvm_ioeventfd`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmIoeventfd {
    pub(crate) datamatch: u64,
    pub(crate) addr: u64,
    pub(crate) len: u32,
    pub(crate) fd: i32,
    pub(crate) flags: u32,
    pub(crate) pad: [u8; 36],
}

/// `sizeof(struct kvm_xsave)`: the 4096-byte `region` (the flexible
/// `extra` array adds nothing to the size `KVM_GET/SET_XSAVE` move).
pub(crate) const XSAVE_SIZE: usize = 4096;
/// `struct kvm_lapic_state`: the first KiB of the APIC page.
pub(crate) const LAPIC_SIZE: usize = 1024;

/// Byte offsets in `struct kvm_run` (the page at vCPU mmap offset 0), and
/// the exit reasons rkvm produces. Checked against `<linux/kvm.h>` through
/// `selftests/abi_layout.h`.
#[allow(dead_code)]
/// `struct kvm_clock_data`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmClockData {
    pub(crate) clock: u64,
    pub(crate) flags: u32,
    pub(crate) pad0: u32,
    pub(crate) realtime: u64,
    pub(crate) host_tsc: u64,
    pub(crate) pad: [u32; 4],
}

/// `struct kvm_guest_debug` (x86: eight debug registers).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmGuestDebug {
    pub(crate) control: u32,
    pub(crate) pad: u32,
    pub(crate) debugreg: [u64; 8],
}

/// `struct kvm_device_attr`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmDeviceAttr {
    pub(crate) flags: u32,
    pub(crate) group: u32,
    pub(crate) attr: u64,
    pub(crate) addr: u64,
}

/// `struct kvm_coalesced_mmio_zone` (`pio` shares a union with `pad`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmCoalescedMmioZone {
    pub(crate) addr: u64,
    pub(crate) size: u32,
    pub(crate) pio: u32,
}

/// `struct kvm_irqfd`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmIrqfd {
    pub(crate) fd: u32,
    pub(crate) gsi: u32,
    pub(crate) flags: u32,
    pub(crate) resamplefd: u32,
    pub(crate) pad: [u8; 16],
}

/// `struct kvm_msi`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmMsi {
    pub(crate) address_lo: u32,
    pub(crate) address_hi: u32,
    pub(crate) data: u32,
    pub(crate) flags: u32,
    pub(crate) devid: u32,
    pub(crate) pad: [u8; 12],
}

/// `struct kvm_enable_cap`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmEnableCap {
    pub(crate) cap: u32,
    pub(crate) flags: u32,
    pub(crate) args: [u64; 4],
    pub(crate) pad: [u8; 64],
}

/// `struct kvm_msr_filter_range`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmMsrFilterRange {
    pub(crate) flags: u32,
    pub(crate) nmsrs: u32,
    pub(crate) base: u32,
    pub(crate) pad: u32,
    /// User address of the bitmap.
    pub(crate) bitmap: u64,
}

/// `struct kvm_msr_filter`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmMsrFilter {
    pub(crate) flags: u32,
    pub(crate) pad: u32,
    /// `KVM_MSR_FILTER_MAX_RANGES` of them.
    pub(crate) ranges: [KvmMsrFilterRange; 16],
}

/// `struct kvm_irq_routing` (the header before the entries).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmIrqRouting {
    pub(crate) nr: u32,
    pub(crate) flags: u32,
}

/// `struct kvm_irq_routing_entry` (the union as its MSI member and
/// padding).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmIrqRoutingEntry {
    pub(crate) gsi: u32,
    pub(crate) kind: u32,
    pub(crate) flags: u32,
    pub(crate) pad: u32,
    pub(crate) address_lo: u32,
    pub(crate) address_hi: u32,
    pub(crate) data: u32,
    pub(crate) devid: u32,
    pub(crate) rest: [u32; 4],
}

pub(crate) mod kvm_run {
    pub(crate) const REQUEST_INTERRUPT_WINDOW: usize = 0;
    /// `kvm_valid_regs`, `kvm_dirty_regs` and the register sets of
    /// `s.regs` (`KVM_CAP_SYNC_REGS`).
    pub(crate) const VALID_REGS: usize = 288;
    pub(crate) const DIRTY_REGS: usize = 296;
    pub(crate) const SYNC_REGS: usize = 304;
    pub(crate) const SYNC_SREGS: usize = 448;
    pub(crate) const SYNC_EVENTS: usize = 760;
    pub(crate) const IMMEDIATE_EXIT: usize = 1;
    pub(crate) const EXIT_REASON: usize = 8;
    pub(crate) const READY_FOR_INTERRUPT_INJECTION: usize = 12;
    pub(crate) const IF_FLAG: usize = 13;
    pub(crate) const FLAGS: usize = 14;
    pub(crate) const CR8: usize = 16;
    pub(crate) const APIC_BASE: usize = 24;
    pub(crate) const IO_DIRECTION: usize = 32;
    pub(crate) const IO_SIZE: usize = 33;
    pub(crate) const IO_PORT: usize = 34;
    pub(crate) const IO_COUNT: usize = 36;
    pub(crate) const IO_DATA_OFFSET: usize = 40;
    pub(crate) const MMIO_PHYS_ADDR: usize = 32;
    pub(crate) const MMIO_DATA: usize = 40;
    pub(crate) const MMIO_LEN: usize = 48;
    pub(crate) const MMIO_IS_WRITE: usize = 52;
    pub(crate) const FAIL_ENTRY_REASON: usize = 32;
    pub(crate) const FAIL_ENTRY_CPU: usize = 40;
    pub(crate) const INTERNAL_SUBERROR: usize = 32;
    pub(crate) const INTERNAL_NDATA: usize = 36;
    pub(crate) const INTERNAL_DATA: usize = 40;
    /// `kvm_run.debug.arch`: exception, pc, dr6, dr7.
    pub(crate) const DEBUG_EXCEPTION: usize = 32;
    pub(crate) const DEBUG_PC: usize = 40;
    pub(crate) const DEBUG_DR6: usize = 48;
    pub(crate) const DEBUG_DR7: usize = 56;
    /// `kvm_run.msr` (KVM_EXIT_X86_RDMSR/WRMSR): user space's error
    /// byte, why the access left the kernel, the MSR and the data.
    pub(crate) const MSR_ERROR: usize = 32;
    pub(crate) const MSR_PAD: usize = 33;
    pub(crate) const MSR_REASON: usize = 40;
    pub(crate) const MSR_INDEX: usize = 44;
    pub(crate) const MSR_DATA: usize = 48;

    pub(crate) const EXIT_UNKNOWN: u32 = 0;
    pub(crate) const EXIT_IO: u32 = 2;
    pub(crate) const EXIT_HLT: u32 = 5;
    pub(crate) const EXIT_IRQ_WINDOW_OPEN: u32 = 7;
    pub(crate) const EXIT_MMIO: u32 = 6;
    pub(crate) const EXIT_SHUTDOWN: u32 = 8;
    pub(crate) const EXIT_FAIL_ENTRY: u32 = 9;
    pub(crate) const EXIT_INTR: u32 = 10;
    pub(crate) const EXIT_INTERNAL_ERROR: u32 = 17;
    pub(crate) const EXIT_DEBUG: u32 = 4;
    /// A level-triggered vector of user space's I/O APIC was EOIed
    /// (split irqchip); `kvm_run.eoi.vector` says which.
    pub(crate) const EXIT_IOAPIC_EOI: u32 = 26;
    /// A guest RDMSR/WRMSR user space handles (`KVM_CAP_X86_USER_SPACE_MSR`).
    pub(crate) const EXIT_X86_RDMSR: u32 = 29;
    pub(crate) const EXIT_X86_WRMSR: u32 = 30;
    pub(crate) const EOI_VECTOR: usize = 32;
    /// `kvm_run.io.direction`.
    pub(crate) const IO_IN: u8 = 0;
    pub(crate) const IO_OUT: u8 = 1;
    /// `kvm_run.internal.suberror` values.
    pub(crate) const INTERNAL_ERROR_EMULATION: u32 = 1;
    pub(crate) const INTERNAL_ERROR_DELIVERY_EV: u32 = 3;
    pub(crate) const INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: u32 = 4;

    /// `emulation_failure.flags`: `insn_size` and `insn_bytes` are valid.
    pub(crate) const EMULATION_FLAG_INSTRUCTION_BYTES: u64 = 1;

    /// The first three `internal.data` words of an emulation failure with
    /// instruction bytes, in KVM's `emulation_failure` layout: the flags,
    /// then 16 bytes holding a one-byte `insn_size` and up to 15 bytes of
    /// the instruction, the rest 0x90 (as KVM pads them).
    pub(crate) fn emulation_failure_data(bytes: &[u8]) -> [u64; 3] {
        let n = bytes.len().min(15);
        let mut b = [0x90u8; 16];
        b[0] = n as u8;
        b[1..=n].copy_from_slice(&bytes[..n]);
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        [EMULATION_FLAG_INSTRUCTION_BYTES, word(0), word(8)]
    }
}
