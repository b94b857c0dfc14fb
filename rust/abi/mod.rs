// SPDX-License-Identifier: GPL-2.0

//! The KVM user ABI as rkvm implements it: ioctl numbers, capabilities and
//! structures from `include/uapi/linux/kvm.h` and
//! `arch/x86/include/uapi/asm/kvm.h` (same values and layouts, so binaries
//! built for KVM work). Every structure has a compile-time size check; the
//! selftests use the kernel's own header for the numbers.

use kernel::{
    ioctl::{
        _IO,
        _IOR,
        _IOW,
        _IOWR, //
    },
    transmute::{
        AsBytes,
        FromBytes, //
    },
};

mod structs;
pub(crate) use structs::*;

/// The ioctl type byte of every KVM ioctl.
const KVMIO: u32 = 0xae;

/// The API version KVM has reported since Linux 2.6.22.
pub(crate) const KVM_API_VERSION: isize = 12;

/// System ioctl: returns [`KVM_API_VERSION`].
pub(crate) const KVM_GET_API_VERSION: u32 = _IO(KVMIO, 0x00);
/// System ioctl: creates a VM, returns its file descriptor.
pub(crate) const KVM_CREATE_VM: u32 = _IO(KVMIO, 0x01);
/// System and VM ioctl: is a capability supported, and with which value.
pub(crate) const KVM_CHECK_EXTENSION: u32 = _IO(KVMIO, 0x03);
/// System ioctl: size of the vCPU file's mmap area.
pub(crate) const KVM_GET_VCPU_MMAP_SIZE: u32 = _IO(KVMIO, 0x04);
/// VM ioctl: where the real-mode TSS would live (unused with unrestricted
/// guest, validated as KVM does).
pub(crate) const KVM_SET_TSS_ADDR: u32 = _IO(KVMIO, 0x47);
/// VM ioctl: where the real-mode identity page table would live (likewise).
pub(crate) const KVM_SET_IDENTITY_MAP_ADDR: u32 = _IOW::<u64>(KVMIO, 0x48);
/// VM and vCPU ioctl: the guest TSC frequency in kHz.
pub(crate) const KVM_GET_TSC_KHZ: u32 = _IO(KVMIO, 0xa3);
/// VM ioctl: creates a vCPU, returns its file descriptor.
pub(crate) const KVM_CREATE_VCPU: u32 = _IO(KVMIO, 0x41);
/// VM ioctl: creates, moves, changes or deletes a memory slot.
pub(crate) const KVM_SET_USER_MEMORY_REGION: u32 = _IOW::<KvmUserspaceMemoryRegion>(KVMIO, 0x46);
/// VM ioctl: the same with the extended structure.
pub(crate) const KVM_SET_USER_MEMORY_REGION2: u32 = _IOW::<KvmUserspaceMemoryRegion2>(KVMIO, 0x49);
/// vCPU ioctl: reads the general-purpose registers, RIP and RFLAGS.
pub(crate) const KVM_GET_REGS: u32 = _IOR::<KvmRegs>(KVMIO, 0x81);
/// vCPU ioctl: writes them.
pub(crate) const KVM_SET_REGS: u32 = _IOW::<KvmRegs>(KVMIO, 0x82);
/// vCPU ioctl: reads segment, descriptor-table and control registers.
pub(crate) const KVM_GET_SREGS: u32 = _IOR::<KvmSregs>(KVMIO, 0x83);
/// vCPU ioctl: writes them.
pub(crate) const KVM_SET_SREGS: u32 = _IOW::<KvmSregs>(KVMIO, 0x84);
/// System ioctl: the CPUID features rkvm can give a guest.
pub(crate) const KVM_GET_SUPPORTED_CPUID: u32 = _IOWR::<KvmCpuid2>(KVMIO, 0x05);
/// System ioctl: the MSRs `KVM_GET/SET_MSRS` save and restore.
pub(crate) const KVM_GET_MSR_INDEX_LIST: u32 = _IOWR::<u32>(KVMIO, 0x02);
/// vCPU ioctl: reads MSRs.
pub(crate) const KVM_GET_MSRS: u32 = _IOWR::<KvmMsrs>(KVMIO, 0x88);
/// vCPU ioctl: writes MSRs.
pub(crate) const KVM_SET_MSRS: u32 = _IOW::<KvmMsrs>(KVMIO, 0x89);
/// The most entries one `KVM_GET/SET_MSRS` may carry, plus one (KVM's
/// `MAX_IO_MSRS`).
pub(crate) const MAX_IO_MSRS: u32 = 256;
/// vCPU ioctl: reads the x87/SSE state.
pub(crate) const KVM_GET_FPU: u32 = _IOR::<KvmFpu>(KVMIO, 0x8c);
/// vCPU ioctl: writes the x87/SSE state.
pub(crate) const KVM_SET_FPU: u32 = _IOW::<KvmFpu>(KVMIO, 0x8d);
/// vCPU ioctl: reads DR0-DR3, DR6 and DR7.
pub(crate) const KVM_GET_DEBUGREGS: u32 = _IOR::<KvmDebugregs>(KVMIO, 0xa1);
/// vCPU ioctl: writes them.
pub(crate) const KVM_SET_DEBUGREGS: u32 = _IOW::<KvmDebugregs>(KVMIO, 0xa2);
/// vCPU ioctl: reads the FPU state as a 4096-byte XSAVE image.
pub(crate) const KVM_GET_XSAVE: u32 = _IOR::<[u8; XSAVE_SIZE]>(KVMIO, 0xa4);
/// vCPU ioctl: writes it.
pub(crate) const KVM_SET_XSAVE: u32 = _IOW::<[u8; XSAVE_SIZE]>(KVMIO, 0xa5);
/// vCPU ioctl: reads the extended control registers (XCR0).
pub(crate) const KVM_GET_XCRS: u32 = _IOR::<KvmXcrs>(KVMIO, 0xa6);
/// vCPU ioctl: writes them.
pub(crate) const KVM_SET_XCRS: u32 = _IOW::<KvmXcrs>(KVMIO, 0xa7);
/// System ioctl: the MCG_CAP bits `KVM_X86_SETUP_MCE` accepts.
pub(crate) const KVM_X86_GET_MCE_CAP_SUPPORTED: u32 = _IOR::<u64>(KVMIO, 0x9d);
/// vCPU ioctl: sets MCG_CAP (bank count and features).
pub(crate) const KVM_X86_SETUP_MCE: u32 = _IOW::<u64>(KVMIO, 0x9c);
/// vCPU ioctl: records a machine-check error (and raises #MC).
pub(crate) const KVM_X86_SET_MCE: u32 = _IOW::<KvmX86Mce>(KVMIO, 0x9e);
/// vCPU ioctl: reads the multiprocessing state.
pub(crate) const KVM_GET_MP_STATE: u32 = _IOR::<u32>(KVMIO, 0x98);
/// vCPU ioctl: sets the multiprocessing state.
pub(crate) const KVM_SET_MP_STATE: u32 = _IOW::<u32>(KVMIO, 0x99);
/// vCPU ioctl: reads pending and injected events.
pub(crate) const KVM_GET_VCPU_EVENTS: u32 = _IOR::<KvmVcpuEvents>(KVMIO, 0x9f);
/// vCPU ioctl: sets pending and injected events.
pub(crate) const KVM_SET_VCPU_EVENTS: u32 = _IOW::<KvmVcpuEvents>(KVMIO, 0xa0);
/// vCPU ioctl: queues an external interrupt (user-space irqchip).
pub(crate) const KVM_INTERRUPT: u32 = _IOW::<u32>(KVMIO, 0x86);
/// vCPU ioctl: queues an NMI.
pub(crate) const KVM_NMI: u32 = _IO(KVMIO, 0x9a);
/// vCPU ioctl: runs the guest until an exit user space must see.
pub(crate) const KVM_RUN: u32 = _IO(KVMIO, 0x80);
/// vCPU ioctl: sets the guest's CPUID.
pub(crate) const KVM_SET_CPUID2: u32 = _IOW::<KvmCpuid2>(KVMIO, 0x90);
/// vCPU ioctl: reads the guest's CPUID.
pub(crate) const KVM_GET_CPUID2: u32 = _IOWR::<KvmCpuid2>(KVMIO, 0x91);
/// VM ioctl: copies out a slot's dirty-page bitmap and re-arms it.
pub(crate) const KVM_GET_DIRTY_LOG: u32 = _IOW::<KvmDirtyLog>(KVMIO, 0x42);
/// VM ioctl: registers or removes an ioeventfd.
pub(crate) const KVM_IOEVENTFD: u32 = _IOW::<KvmIoeventfd>(KVMIO, 0x79);
/// vCPU ioctls on device attributes: only the TSC offset
/// (`KVM_VCPU_TSC_CTRL`, `KVM_VCPU_TSC_OFFSET`).
pub(crate) const KVM_SET_DEVICE_ATTR: u32 = _IOW::<KvmDeviceAttr>(KVMIO, 0xe1);
pub(crate) const KVM_GET_DEVICE_ATTR: u32 = _IOW::<KvmDeviceAttr>(KVMIO, 0xe2);
pub(crate) const KVM_HAS_DEVICE_ATTR: u32 = _IOW::<KvmDeviceAttr>(KVMIO, 0xe3);
pub(crate) const VCPU_TSC_CTRL: u32 = 0;
pub(crate) const VCPU_TSC_OFFSET: u64 = 0;
/// VM ioctls: add or remove a coalesced MMIO/PIO zone (`crate::coalesced`).
pub(crate) const KVM_REGISTER_COALESCED_MMIO: u32 = _IOW::<KvmCoalescedMmioZone>(KVMIO, 0x67);
pub(crate) const KVM_UNREGISTER_COALESCED_MMIO: u32 = _IOW::<KvmCoalescedMmioZone>(KVMIO, 0x68);
/// VM ioctl: the vCPU id of the boot CPU (the argument is the value).
pub(crate) const KVM_SET_BOOT_CPU_ID: u32 = _IO(KVMIO, 0x78);
/// VM ioctl: sets the shadow MMU's page budget.
pub(crate) const KVM_SET_NR_MMU_PAGES: u32 = _IO(KVMIO, 0x44);
/// VM and vCPU ioctl: returns a binary statistics fd (see `crate::stats`).
pub(crate) const KVM_GET_STATS_FD: u32 = _IO(KVMIO, 0xce);
/// `KVM_SIGNAL_MSI` (VM fd): needs an in-kernel irqchip (rkvm: split).
pub(crate) const KVM_SIGNAL_MSI: u32 = _IOW::<KvmMsi>(KVMIO, 0xa5);
/// `KVM_IRQFD` (VM fd): an eventfd that raises a GSI; needs an in-kernel
/// irqchip (rkvm: split, so the GSI's MSI route).
pub(crate) const KVM_IRQFD: u32 = _IOW::<KvmIrqfd>(KVMIO, 0x76);
/// `KVM_SYNC_X86_*`: the register sets `kvm_run.s.regs` carries.
pub(crate) mod sync_regs {
    pub(crate) const REGS: u64 = 1;
    pub(crate) const SREGS: u64 = 2;
    pub(crate) const EVENTS: u64 = 4;
    pub(crate) const VALID: u64 = REGS | SREGS | EVENTS;
}
/// `KVM_IRQFD_FLAG_*`.
pub(crate) mod irqfd_flag {
    pub(crate) const DEASSIGN: u32 = 1;
    /// A level-triggered irqfd with a resample eventfd: needs KVM's full
    /// in-kernel irqchip, so EINVAL on rkvm (as KVM with a split one).
    pub(crate) const RESAMPLE: u32 = 2;
}
/// `KVM_SET_GSI_ROUTING` (VM fd): needs an in-kernel irqchip (rkvm: split).
pub(crate) const KVM_SET_GSI_ROUTING: u32 = _IOW::<KvmIrqRouting>(KVMIO, 0x6a);
/// `KVM_GET_LAPIC` / `KVM_SET_LAPIC` (vCPU fd): the local APIC's register
/// page (`struct kvm_lapic_state`), with a split irqchip.
pub(crate) const KVM_GET_LAPIC: u32 = _IOR::<[u8; LAPIC_SIZE]>(KVMIO, 0x8e);
pub(crate) const KVM_SET_LAPIC: u32 = _IOW::<[u8; LAPIC_SIZE]>(KVMIO, 0x8f);
/// `KVM_SET_CLOCK` / `KVM_GET_CLOCK` (VM fd): the kvmclock base.
pub(crate) const KVM_SET_CLOCK: u32 = _IOW::<KvmClockData>(KVMIO, 0x7b);
pub(crate) const KVM_GET_CLOCK: u32 = _IOR::<KvmClockData>(KVMIO, 0x7c);
/// `KVM_ENABLE_CAP` (VM fd).
pub(crate) const KVM_ENABLE_CAP: u32 = _IOW::<KvmEnableCap>(KVMIO, 0xa3);
/// `KVM_X86_SET_MSR_FILTER` (VM fd).
pub(crate) const KVM_X86_SET_MSR_FILTER: u32 = _IOW::<KvmMsrFilter>(KVMIO, 0xc6);
/// `KVM_SET_GUEST_DEBUG` (vCPU fd).
pub(crate) const KVM_SET_GUEST_DEBUG: u32 = _IOW::<KvmGuestDebug>(KVMIO, 0x9b);

/// Capability numbers rkvm reports (`KVM_CAP_*`).
mod cap {
    pub(super) const MMU_SHADOW_CACHE_CONTROL: usize = 2;
    pub(super) const USER_MEMORY: usize = 3;
    pub(super) const SET_TSS_ADDR: usize = 4;
    pub(super) const EXT_CPUID: usize = 7;
    pub(super) const VCPU_EVENTS: usize = 41;
    pub(super) const USER_NMI: usize = 22;
    pub(super) const SET_IDENTITY_MAP_ADDR: usize = 37;
    pub(super) const GET_TSC_KHZ: usize = 61;
    pub(super) const NR_VCPUS: usize = 9;
    pub(super) const NR_MEMSLOTS: usize = 10;
    pub(super) const MP_STATE: usize = 14;
    pub(super) const DESTROY_MEMORY_REGION_WORKS: usize = 21;
    pub(super) const JOIN_MEMORY_REGIONS_WORKS: usize = 30;
    pub(super) const MAX_VCPUS: usize = 66;
    pub(super) const MAX_VCPU_ID: usize = 128;
    pub(super) const IMMEDIATE_EXIT: usize = 136;
    pub(super) const USER_MEMORY2: usize = 231;
    pub(super) const BINARY_STATS_FD: usize = 203;
    pub(super) const SYNC_MMU: usize = 16;
    pub(super) const READONLY_MEM: usize = 81;
    pub(super) const MCE: usize = 31;
    pub(super) const DEBUGREGS: usize = 50;
    pub(super) const XSAVE: usize = 55;
    pub(super) const XCRS: usize = 56;
    pub(super) const IOEVENTFD: usize = 36;
    pub(super) const IOEVENTFD_ANY_LENGTH: usize = 122;
    pub(super) const INTERNAL_ERROR_DATA: usize = 40;
    pub(super) const IRQ_ROUTING: usize = 25;
    pub(super) const SIGNAL_MSI: usize = 77;
    pub(super) const IRQFD: usize = 32;
    pub(super) const SET_BOOT_CPU_ID: usize = 34;
    pub(super) const VCPU_ATTRIBUTES: usize = 127;
    pub(super) const COALESCED_MMIO: usize = 15;
    pub(super) const SYNC_REGS: usize = 74;
    pub(super) const COALESCED_PIO: usize = 162;
    pub(super) const ENABLE_CAP: usize = 54;
    pub(super) const ENABLE_CAP_VM: usize = 98;
    pub(super) const ENFORCE_PV_FEATURE_CPUID: usize = 190;
    pub(super) const MSR_PLATFORM_INFO: usize = 159;
    pub(super) const EXIT_ON_EMULATION_FAILURE: usize = 204;
    pub(super) const ADJUST_CLOCK: usize = 39;
    pub(super) const X86_ROBUST_SINGLESTEP: usize = 51;
    pub(super) const DISABLE_QUIRKS: usize = 116;
    pub(super) const DISABLE_QUIRKS2: usize = 213;
    pub(super) const SPLIT_IRQCHIP: usize = 121;
    pub(super) const X2APIC_API: usize = 129;
    pub(super) const SET_GUEST_DEBUG: usize = 23;
    pub(super) const SET_GUEST_DEBUG2: usize = 195;
    pub(super) const X86_USER_SPACE_MSR: usize = 188;
    pub(super) const X86_MSR_FILTER: usize = 189;
}

/// Capabilities `KVM_ENABLE_CAP` takes besides the quirks.
pub(crate) const CAP_SPLIT_IRQCHIP: u32 = 121;
pub(crate) const CAP_MAX_VCPU_ID: u32 = 128;
pub(crate) const CAP_X2APIC_API: u32 = 129;
pub(crate) const CAP_MSR_PLATFORM_INFO: u32 = 159;
pub(crate) const CAP_ENFORCE_PV_FEATURE_CPUID: u32 = 190;
pub(crate) const CAP_EXIT_ON_EMULATION_FAILURE: u32 = 204;
pub(crate) const CAP_X86_USER_SPACE_MSR: u32 = 188;
/// `KVM_X2APIC_API_*` flags: 32-bit x2APIC ids in the APIC state
/// ioctls, and no x2APIC broadcast for MSIs to id 0xff.
pub(crate) const X2APIC_API_USE_32BIT_IDS: u64 = 1;
pub(crate) const X2APIC_API_DISABLE_BROADCAST_QUIRK: u64 = 2;
pub(crate) const X2APIC_API_VALID: u64 =
    X2APIC_API_USE_32BIT_IDS | X2APIC_API_DISABLE_BROADCAST_QUIRK;
/// Routing entries: the most (KVM's `KVM_MAX_IRQ_ROUTES` on x86) and the
/// one type a split irqchip takes (IRQCHIP, 1, is user space's).
pub(crate) const MAX_IRQ_ROUTES: u32 = 4096;
pub(crate) const IRQ_ROUTING_MSI: u32 = 2;
/// `KVM_MSI_VALID_DEVID`: the MSI carries a device id.
pub(crate) const MSI_VALID_DEVID: u32 = 1;
/// `KVM_MP_STATE_*` on x86.
pub(crate) mod mp_state {
    pub(crate) const RUNNABLE: u32 = 0;
    pub(crate) const UNINITIALIZED: u32 = 1;
    pub(crate) const INIT_RECEIVED: u32 = 2;
    pub(crate) const HALTED: u32 = 3;
    pub(crate) const SIPI_RECEIVED: u32 = 4;
}

/// `KVM_CAP_DISABLE_QUIRKS` and `KVM_CAP_DISABLE_QUIRKS2`, as
/// `KVM_ENABLE_CAP` sees them.
pub(crate) mod cap_disable_quirks {
    pub(crate) const V1: u32 = 116;
    pub(crate) const V2: u32 = 213;
}

/// `KVM_X86_QUIRK_*` rkvm has: the default behaviours user space may turn
/// off with `KVM_CAP_DISABLE_QUIRKS2`.
pub(crate) mod quirks {
    /// Deleting or moving a memslot zaps every shadow page (not only the
    /// slot's).
    pub(crate) const SLOT_ZAP_ALL: u64 = 1 << 7;
    /// MISC_ENABLE.MWAIT does not drive CPUID.MWAIT; MONITOR/MWAIT follow
    /// CPUID.MWAIT (when they may fault at all).
    pub(crate) const MISC_ENABLE_NO_MWAIT: u64 = 1 << 4;
    /// MONITOR/MWAIT are NOPs, never #UD.
    pub(crate) const MWAIT_NEVER_UD_FAULTS: u64 = 1 << 6;
    pub(crate) const SUPPORTED: u64 = SLOT_ZAP_ALL | MISC_ENABLE_NO_MWAIT | MWAIT_NEVER_UD_FAULTS;
}

/// `KVM_CLOCK_*` flags of `struct kvm_clock_data`.
pub(crate) mod clock_flags {
    /// The clock is the same on every vCPU (KVM's master clock).
    pub(crate) const TSC_STABLE: u32 = 2;
    /// `realtime` holds the host's wall clock at the reading.
    pub(crate) const REALTIME: u32 = 1 << 2;
    /// `host_tsc` holds the host's TSC at the reading.
    pub(crate) const HOST_TSC: u32 = 1 << 3;
}

/// `KVM_GUESTDBG_*` flags of `struct kvm_guest_debug`.
pub(crate) mod guestdbg {
    pub(crate) const ENABLE: u32 = 0x1;
    pub(crate) const SINGLESTEP: u32 = 0x2;
    pub(crate) const USE_SW_BP: u32 = 0x1_0000;
    pub(crate) const USE_HW_BP: u32 = 0x2_0000;
    pub(crate) const INJECT_DB: u32 = 0x4_0000;
    pub(crate) const INJECT_BP: u32 = 0x8_0000;
    pub(crate) const BLOCKIRQ: u32 = 0x10_0000;
    /// Every flag KVM knows on x86 (`KVM_GUESTDBG_VALID_MASK`): ENABLE,
    /// SINGLESTEP, USE_SW_BP, USE_HW_BP, INJECT_DB, INJECT_BP, BLOCKIRQ.
    pub(crate) const VALID: u32 = 0x3 | 0x1f_0000;
}

/// The most vCPUs one VM may have, and the bound on their ids.
pub(crate) const MAX_VCPUS: u32 = 64;
/// Pages of the vCPU mmap area: the `kvm_run` page, the PIO data page
/// (the vCPU's own) and the VM's coalesced MMIO ring.
pub(crate) const VCPU_MMAP_PAGES: usize = 3;
pub(crate) const VCPU_OWN_PAGES: usize = 2;

/// The answer to `KVM_CHECK_EXTENSION(cap)`, on the system and VM fds alike.
///
/// A capability is reported only once everything it promises works; every
/// other one reads 0, as KVM does for capabilities it does not know.
pub(crate) fn check_extension(c: usize) -> isize {
    match c {
        cap::USER_MEMORY
        | cap::USER_MEMORY2
        | cap::DESTROY_MEMORY_REGION_WORKS
        | cap::JOIN_MEMORY_REGIONS_WORKS
        | cap::SET_TSS_ADDR
        | cap::SET_IDENTITY_MAP_ADDR
        | cap::GET_TSC_KHZ
        | cap::IMMEDIATE_EXIT
        | cap::USER_NMI
        | cap::MP_STATE
        | cap::EXT_CPUID
        | cap::VCPU_EVENTS
        | cap::BINARY_STATS_FD
        | cap::MMU_SHADOW_CACHE_CONTROL
        | cap::SYNC_MMU
        | cap::READONLY_MEM
        | cap::DEBUGREGS
        | cap::XSAVE
        | cap::IOEVENTFD
        | cap::IOEVENTFD_ANY_LENGTH
        | cap::INTERNAL_ERROR_DATA
        // MSIs reach the in-kernel local APICs of a split irqchip; MSI
        // routes feed the EOI exits of user space's I/O APIC.
        | cap::IRQ_ROUTING
        | cap::SIGNAL_MSI
        // Eventfds that raise a GSI's MSI route (`crate::irqfd`), once the
        // split irqchip exists, as KVM's once its irqchip does.
        | cap::IRQFD
        // The boot CPU is any vCPU id (`KVM_SET_BOOT_CPU_ID`).
        | cap::SET_BOOT_CPU_ID
        // The vCPU's TSC offset as a device attribute.
        | cap::VCPU_ATTRIBUTES
        // `KVM_ENABLE_CAP` on the vCPU fd, for ENFORCE_PV_FEATURE_CPUID:
        // the kvmclock MSRs and hypercalls then need their CPUID bits.
        | cap::ENABLE_CAP
        | cap::ENABLE_CAP_VM
        | cap::ENFORCE_PV_FEATURE_CPUID
        // Coalesced port writes (the MMIO cap says where the ring is).
        | cap::COALESCED_PIO
        // MSR_PLATFORM_INFO, and whether the guest may read it.
        | cap::MSR_PLATFORM_INFO
        // Emulation failures always exit to user space, with the
        // instruction bytes when rkvm read them.
        | cap::EXIT_ON_EMULATION_FAILURE
        // Single steps end after every instruction, including those rkvm
        // completes itself (see `vcpu::run`).
        | cap::X86_ROBUST_SINGLESTEP
        // Guest RDMSR/WRMSR filtered by user space (`KVM_X86_SET_MSR_FILTER`),
        // and the failed ones it asks to handle (`KVM_CAP_X86_USER_SPACE_MSR`;
        // KVM reports 1 for both, not the reason mask).
        | cap::X86_USER_SPACE_MSR
        | cap::X86_MSR_FILTER
        // Single steps, INT3 and DR0-DR3 breakpoints for a debugger.
        | cap::SET_GUEST_DEBUG
        // An in-kernel local APIC per vCPU, the I/O APIC and PIC in user
        // space (`crate::x86::lapic`).
        | cap::SPLIT_IRQCHIP => 1,
        // The flags `KVM_ENABLE_CAP` takes, as KVM.
        cap::X2APIC_API => X2APIC_API_VALID as isize,
        // Every `KVM_GUESTDBG_*` flag, as KVM.
        cap::SET_GUEST_DEBUG2 => guestdbg::VALID as isize,
        // The flags `KVM_GET_CLOCK` can return and `KVM_SET_CLOCK` takes.
        cap::DISABLE_QUIRKS => 1,
        // The register sets `kvm_run.s.regs` carries (`KVM_SYNC_X86_*`).
        cap::SYNC_REGS => sync_regs::VALID as isize,
        // The ring's page offset in the vCPU mmap.
        cap::COALESCED_MMIO => crate::coalesced::ring::PAGE_OFFSET as isize,
        cap::DISABLE_QUIRKS2 => quirks::SUPPORTED as isize,
        cap::ADJUST_CLOCK => (clock_flags::REALTIME | clock_flags::HOST_TSC) as isize,

        // KVM reports it only when the host has XSAVE (without it,
        // KVM_SET_XCRS fails).
        cap::XCRS => isize::from(crate::vmx::window::host_has_xsave()),
        // The bank count `KVM_X86_SETUP_MCE` accepts at most.
        cap::MCE => crate::x86::mce::MAX_BANKS as isize,
        // KVM's recommendation: no more vCPUs than online CPUs.
        cap::NR_VCPUS => crate::shim::num_online_cpus().min(MAX_VCPUS) as isize,
        cap::MAX_VCPUS | cap::MAX_VCPU_ID => MAX_VCPUS as isize,
        cap::NR_MEMSLOTS => crate::memslot::region::USER_MEM_SLOTS as isize,
        _ => 0,
    }
}

/// Implements the byte-level traits for ABI structures.
macro_rules! abi_struct {
    ($($t:ty = $size:expr),* $(,)?) => {
        $(
            const _: () = assert!(core::mem::size_of::<$t>() == $size);
            // SAFETY: a `repr(C)` struct of integers and arrays of integers
            // whose size equals the sum of its fields (checked above): no
            // padding, every bit pattern valid.
            unsafe impl FromBytes for $t {}
            // SAFETY: as above, no padding bytes.
            unsafe impl AsBytes for $t {}
        )*
    };
}

abi_struct!(
    KvmUserspaceMemoryRegion = 32,
    KvmUserspaceMemoryRegion2 = 160,
    KvmRegs = 144,
    KvmSegment = 24,
    KvmDtable = 16,
    KvmSregs = 312,
    KvmCpuid2 = 8,
    KvmFpu = 416,
    KvmMsrs = 8,
    KvmVcpuEvents = 64,
    KvmMsrEntry = 16,
    KvmCpuidEntry2 = 40,
    KvmDirtyLog = 16,
    KvmDebugregs = 128,
    KvmXcrs = 392,
    KvmX86Mce = 64,
    KvmIoeventfd = 64,
    KvmClockData = 48,
    KvmGuestDebug = 72,
    KvmMsi = 32,
    KvmIrqfd = 32,
    KvmCoalescedMmioZone = 16,
    KvmDeviceAttr = 24,
    KvmIrqRouting = 8,
    KvmIrqRoutingEntry = 48,
    KvmEnableCap = 104,
    KvmMsrFilterRange = 24,
    KvmMsrFilter = 392,
);

/// The user address of the entries that follow a `struct kvm_cpuid2` (or
/// any 8-byte header) at `arg`.
pub(crate) fn entries_addr(arg: usize) -> kernel::error::Result<usize> {
    arg.checked_add(core::mem::size_of::<KvmCpuid2>())
        .ok_or(kernel::error::code::EFAULT)
}

/// Copies `entries` out as the `struct kvm_cpuid2` at user address `arg`,
/// KVM's protocol for `KVM_GET_CPUID2` and `KVM_GET_SUPPORTED_CPUID`:
/// `E2BIG`, with nothing written, when the caller's `nent` is smaller than
/// the table; else the entries, then `nent` (the padding is kept).
pub(crate) fn write_cpuid2(
    arg: usize,
    entries: &[crate::x86::cpuid::Entry],
) -> kernel::error::Result {
    use kernel::uaccess::{
        UserPtr,
        UserSlice, //
    };
    let size = core::mem::size_of::<KvmCpuid2>();
    let header = UserSlice::new(UserPtr::from_addr(arg), size)
        .reader()
        .read::<KvmCpuid2>()?;
    if (header.nent as usize) < entries.len() {
        return Err(kernel::error::code::E2BIG);
    }
    let mut writer = UserSlice::new(
        UserPtr::from_addr(entries_addr(arg)?),
        entries.len() * core::mem::size_of::<KvmCpuidEntry2>(),
    )
    .writer();
    for e in entries {
        writer.write(&KvmCpuidEntry2::from(e))?;
    }
    let out = KvmCpuid2 {
        nent: entries.len() as u32,
        padding: header.padding,
    };
    UserSlice::new(UserPtr::from_addr(arg), size)
        .writer()
        .write(&out)
}

impl From<KvmCpuidEntry2> for crate::x86::cpuid::Entry {
    fn from(e: KvmCpuidEntry2) -> Self {
        Self {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        }
    }
}

impl From<&crate::x86::cpuid::Entry> for KvmCpuidEntry2 {
    fn from(e: &crate::x86::cpuid::Entry) -> Self {
        Self {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            padding: [0; 3],
        }
    }
}

impl From<&crate::x86::segment::Segment> for KvmSegment {
    fn from(s: &crate::x86::segment::Segment) -> Self {
        let f = crate::x86::segment::fields_from_ar(s.ar);
        Self {
            base: s.base,
            limit: s.limit,
            selector: s.selector,
            type_: f.type_,
            present: f.present,
            dpl: f.dpl,
            db: f.db,
            s: f.s,
            l: f.l,
            g: f.g,
            avl: f.avl,
            unusable: f.unusable,
            padding: 0,
        }
    }
}

impl KvmSegment {
    /// The segment in VMCS form, normalized as KVM stores it (see
    /// `x86::segment::ar_from_fields`); `is_ldt` for LDTR.
    pub(crate) fn to_vmcs(self, is_ldt: bool) -> crate::x86::segment::Segment {
        let f = crate::x86::segment::Fields {
            type_: self.type_,
            present: self.present,
            dpl: self.dpl,
            db: self.db,
            s: self.s,
            l: self.l,
            g: self.g,
            avl: self.avl,
            unusable: self.unusable,
        };
        crate::x86::segment::Segment {
            base: self.base,
            limit: self.limit,
            selector: self.selector,
            ar: crate::x86::segment::ar_from_fields(&f, is_ldt),
        }
    }
}
