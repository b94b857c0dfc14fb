// SPDX-License-Identifier: GPL-2.0

//! `KVM_RUN`: the loop around the VMX window and the exits it handles.
//!
//! Each turn of the loop (outside the window, may sleep) checks signals and
//! `need_resched`, then opens a window ([`Window`]), loads the guest state
//! into the VMCS and runs the guest. Exits that need neither sleeping nor
//! user space (CPUID, CR0/CR4 writes, the MSRs rkvm emulates, NMIs) are
//! handled inside the window and the guest resumes with VMRESUME. Every
//! other exit closes the window and is handled here: external interrupts
//! (taken by the host as soon as interrupts are enabled, then the loop
//! continues), EPT violations (map the page, or emulate MMIO through user
//! space), port I/O, HLT, triple fault, entry failures and anything
//! unexpected (`KVM_EXIT_INTERNAL_ERROR`). Model: `vcpu_run()` in
//! `arch/x86/kvm/x86.c` and `vmx_handle_exit()` in `arch/x86/kvm/vmx/vmx.c`.

mod paging;

use crate::{
    mmu::walk::Kind,
    stats::{
        VcpuStat,
        VcpuStats, //
    },
};

use kernel::{
    page::Page,
    prelude::*,
    sync::{
        CondVarTimeoutResult,
        SpinLock, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use super::{
    Apic,
    Event,
    Pending,
    State,
    Vcpu,
    SEG_CS, //
};
use crate::{
    abi::{
        self,
        kvm_run as kr, //
    },
    shim,
    vm::{
        Map,
        Vm, //
    },
    vmx::{
        caps::VmxCaps,
        exit::{
            reason,
            CrAccess,
            EptViolation,
            ExitReason,
            IoExit, //
        },
        vmcs::field,
        window::{
            OpenError,
            Window, //
        },
    },
    x86::{
        cpuid, debugreg,
        decode::{
            self,
            Access,
            Insn,
            Mode, //
        },
        hypercall, kvmclock, lapic, msr, msr_filter, mtrr, pio,
        sregs::{
            cr0,
            efer, //
        },
    },
};

/// FS and GS in `State::segs` (the `kvm_sregs` order) and in the VMCS
/// segment fields (`field::guest_seg`: ES, CS, SS, DS, FS, GS, ...).
const SEG_FS: usize = 3;
const SEG_GS: usize = 4;
const VMCS_FS: u32 = 4;
const VMCS_GS: u32 = 5;

/// Hardware register numbers (the order of `gprs` and of instruction
/// encodings).
const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RSI: usize = 6;
const RDI: usize = 7;
const CR0_TS: u64 = 1 << 3;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const RFLAGS_DF: u64 = 1 << 10;
/// Code segment D/B bit in VMCS access rights.
const AR_DB: u32 = 1 << 14;
/// STI and MOV-SS blocking in the interruptibility state.
const BLOCKING_STI_MOV_SS: u32 = 0b11;
/// Event fields: valid bit, "deliver error code", hardware exception type.
pub(super) const EVENT_VALID: u32 = 1 << 31;
pub(super) const EVENT_ERROR_CODE: u32 = 1 << 11;
pub(super) const EVENT_TYPE_HW_EXCEPTION: u32 = 3 << 8;
const EVENT_TYPE_EXT_INTR: u32 = 0;
const EVENT_TYPE_NMI: u32 = 2 << 8;
const EVENT_TYPE_SW_EXCEPTION: u32 = 6 << 8;
const NMI_VECTOR: u32 = 2;
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.TF: single-step trap after the next instruction.
const RFLAGS_TF: u64 = 1 << 8;
/// DR6 (and #DB exit qualification) bits: B0-B3, BD, BS.
const DR6_BS: u64 = 1 << 14;
const DR6_HIT_BITS: u64 = 0xf | 1 << 13 | DR6_BS;
/// Blocking by NMI in the interruptibility state (virtual NMIs).
const BLOCKING_NMI: u32 = 1 << 3;
const EVENT_TYPE_MASK: u32 = 7 << 8;
const GP_VECTOR: u32 = 13;
const DB_VECTOR: u32 = 1;
const UD_VECTOR: u32 = 6;
const BP_VECTOR: u32 = 3;
const MC_VECTOR: u32 = 18;
/// CR4.DE: DR4/DR5 raise #UD instead of aliasing DR6/DR7.
const CR4_DE: u64 = 1 << 3;
/// Data offset of the PIO page in the vCPU mmap area.
const PIO_DATA_OFFSET: u64 = 4096;
/// Page-fault vector and CR4.PAE.
pub(super) const PF_VECTOR: u32 = 14;
pub(super) const CR4_PAE: u64 = 1 << 5;
/// The longest a guest runs before the VMX-preemption timer ends the
/// window, in microseconds. Windows stay bounded even when no host
/// interrupt can end them (Bochs 2.7 takes no external-interrupt exit from
/// a guest that entered with RFLAGS.IF=0; see `Documentation/rkvm/lab.rst`).
const WINDOW_SLICE_US: u64 = 1000;

/// `kvm_run` and the PIO data page, as the kernel sees them, and the vCPU
/// they belong to (for its local APIC).
struct RunArea<'a> {
    run: &'a Page,
    pio: &'a Page,
    vcpu: &'a Vcpu,
}

impl RunArea<'_> {
    fn write(&self, offset: usize, bytes: &[u8]) {
        // SAFETY: the source is a valid slice; the range is inside the
        // page (callers use the fixed `kvm_run` offsets). The page is
        // shared with user space, which may race with this write: it can
        // only see or leave arbitrary bytes, never invalid Rust values.
        let _ = unsafe { self.run.write_raw(bytes.as_ptr(), offset, bytes.len()) };
    }

    fn read(&self, offset: usize, bytes: &mut [u8]) {
        // SAFETY: as for `write`, with a valid destination.
        let _ = unsafe { self.run.read_raw(bytes.as_mut_ptr(), offset, bytes.len()) };
    }

    fn exit_reason(&self) -> u32 {
        let mut b = [0u8; 4];
        self.read(kr::EXIT_REASON, &mut b);
        u32::from_ne_bytes(b)
    }

    fn set_exit(&self, exit_reason: u32) {
        self.write(kr::EXIT_REASON, &exit_reason.to_ne_bytes());
    }

    fn immediate_exit(&self) -> bool {
        let mut b = [0u8];
        self.read(kr::IMMEDIATE_EXIT, &mut b);
        b[0] != 0
    }

    fn io(&self, direction: u8, size: u8, port: u16, count: u32) {
        self.set_exit(kr::EXIT_IO);
        self.write(kr::IO_DIRECTION, &[direction]);
        self.write(kr::IO_SIZE, &[size]);
        self.write(kr::IO_PORT, &port.to_ne_bytes());
        self.write(kr::IO_COUNT, &count.to_ne_bytes());
        self.write(kr::IO_DATA_OFFSET, &PIO_DATA_OFFSET.to_ne_bytes());
    }

    fn mmio(&self, gpa: u64, data: u64, len: u8, is_write: bool) {
        self.set_exit(kr::EXIT_MMIO);
        self.write(kr::MMIO_PHYS_ADDR, &gpa.to_ne_bytes());
        self.write(kr::MMIO_DATA, &data.to_le_bytes());
        self.write(kr::MMIO_LEN, &u32::from(len).to_ne_bytes());
        self.write(kr::MMIO_IS_WRITE, &[u8::from(is_write)]);
    }

    fn internal_error(&self, suberror: u32, data: &[u64]) {
        self.set_exit(kr::EXIT_INTERNAL_ERROR);
        self.write(kr::INTERNAL_SUBERROR, &suberror.to_ne_bytes());
        self.write(kr::INTERNAL_NDATA, &(data.len() as u32).to_ne_bytes());
        for (i, d) in data.iter().enumerate() {
            self.write(kr::INTERNAL_DATA + 8 * i, &d.to_ne_bytes());
        }
    }

    fn fail_entry(&self, hw_reason: u64, cpu: u32) {
        self.set_exit(kr::EXIT_FAIL_ENTRY);
        self.write(kr::FAIL_ENTRY_REASON, &hw_reason.to_ne_bytes());
        self.write(kr::FAIL_ENTRY_CPU, &cpu.to_ne_bytes());
    }

    fn pio_write(&self, bytes: &[u8]) {
        // SAFETY: as for `write`; at most one page.
        let _ = unsafe { self.pio.write_raw(bytes.as_ptr(), 0, bytes.len()) };
    }

    fn pio_read(&self, bytes: &mut [u8]) {
        // SAFETY: as for `read`; at most one page.
        let _ = unsafe { self.pio.read_raw(bytes.as_mut_ptr(), 0, bytes.len()) };
    }
}

/// General-purpose register `n` (hardware numbering) of `State`.
fn reg(st: &State, n: usize) -> u64 {
    let r = &st.regs;
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ][n]
}

fn set_reg(st: &mut State, n: usize, v: u64) {
    let r = &mut st.regs;
    let slot = match n {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        4 => &mut r.rsp,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    };
    *slot = v;
}

/// CS.L: a 64-bit code segment (in IA-32e mode).
const AR_L: u32 = 1 << 13;

/// The bits of RIP the guest's code size keeps: all of them in 64-bit
/// code, EIP otherwise.
fn rip_mask(lma: bool, cs_ar: u32) -> u64 {
    if lma && cs_ar & AR_L != 0 {
        u64::MAX
    } else {
        0xffff_ffff
    }
}

/// Skips the instruction that exited (EIP wraps at 32 bits outside 64-bit
/// code) and drops STI/MOV-SS blocking, as completing it would.
fn skip(st: &mut State, len: u64) {
    let mask = rip_mask(paging::long_mode(st), st.segs[SEG_CS].ar);
    st.regs.rip = st.regs.rip.wrapping_add(len) & mask;
    st.interruptibility &= !BLOCKING_STI_MOV_SS;
    st.stepped = true;
}

/// Hardware CR0 for a guest CR0 (KVM's `vmx_set_cr0` with unrestricted
/// guest): NE forced on, CD and NW forced off; with paging (shadow tables)
/// WP is forced on too, the guest's WP=0 being emulated by the shadow's
/// permissions. The guest reads its own value through the read shadow.
fn hw_cr0(c: u64) -> u64 {
    let c = (c & !(cr0::CD | cr0::NW)) | CR0_NE;
    if c & cr0::PG != 0 {
        c | cr0::WP
    } else {
        c
    }
}

/// Hardware CR4 for a guest CR4: the VMX fixed-1 bits, and PAE when the
/// guest pages (its 2-level tables are shadowed with PAE tables).
fn hw_cr4(c: u64, fixed0: u64, paged: bool) -> u64 {
    c | fixed0 | if paged { CR4_PAE } else { 0 }
}

/// VMCS segment order (ES, CS, SS, DS, FS, GS, LDTR, TR) to `State` order
/// (CS, DS, ES, FS, GS, SS, TR, LDTR).
const VMCS_TO_STATE: [usize; 8] = [2, 0, 5, 1, 3, 4, 7, 6];

/// What one window ended with.
enum Outcome {
    /// CR4.VMXE was set on entry: another hypervisor owns VMX.
    Busy,
    /// VMXON/VMCLEAR/VMPTRLD failed.
    VmxFailed,
    /// A VMWRITE failed (a bug in rkvm's field table).
    WriteFailed(u32),
    /// VMLAUNCH/VMRESUME failed with this VM-instruction error.
    VmFail(u32),
    /// An exit for the slow path.
    Exit(ExitInfo),
    /// Handled; run the guest again in a new window.
    Reopen,
}

/// The exit information fields, read before the window closes.
#[derive(Clone, Copy)]
struct ExitInfo {
    reason: ExitReason,
    qualification: u64,
    gpa: u64,
    intr_info: u32,
    intr_error_code: u32,
    insn_len: u64,
    insn_info: u32,
    /// IDT-vectoring information: an event whose delivery this exit hit.
    idt_vectoring: u32,
    cpu: u32,
}

/// Whether the guest continues in the window after a fast exit.
enum Fast {
    Resume,
    Leave,
    /// Handled; the guest continues in a new window (its controls change:
    /// paging was turned on or off).
    Reopen,
}

/// What the slow path decided.
enum Step {
    /// Run the guest again.
    Continue,
    /// Return to user space with `kvm_run` filled in.
    ToUser,
}

/// `KVM_INTERRUPT` with a user-space irqchip (KVM's
/// `kvm_vcpu_ioctl_interrupt()`): the vector replaces any interrupt still
/// waiting. KVM injects it on the next entry whatever the guest's IF (a
/// VMM is expected to wait for `ready_for_interrupt_injection`); rkvm waits
/// for the guest to be interruptible, so a hasty VMM gets a late interrupt
/// rather than a failed entry.
pub(super) fn queue_interrupt(st: &mut State, irq: u32) -> Result {
    st.irq = Some(u8::try_from(irq).map_err(|_| EINVAL)?);
    Ok(())
}

/// `KVM_X86_SET_MCE` raising #MC: the exception replaces whatever event
/// was waiting, as KVM's queued exception would be delivered first.
pub(super) fn queue_machine_check(st: &mut State) {
    st.pending_event = Some(Event {
        info: EVENT_VALID | EVENT_TYPE_HW_EXCEPTION | MC_VECTOR,
        error_code: 0,
        insn_len: 0,
    });
}

/// `KVM_VCPUEVENT_VALID_*` flags.
mod events {
    pub(super) const NMI_PENDING: u32 = 1 << 0;
    pub(super) const SIPI_VECTOR: u32 = 1 << 1;
    pub(super) const SHADOW: u32 = 1 << 2;
    pub(super) const SMM: u32 = 1 << 3;
    pub(super) const PAYLOAD: u32 = 1 << 4;
    pub(super) const TRIPLE_FAULT: u32 = 1 << 5;
}

/// `KVM_GET_VCPU_EVENTS` (KVM's `kvm_vcpu_ioctl_x86_get_vcpu_events()`):
/// the event waiting for (re-)injection, the queued interrupt and NMI, the
/// STI/MOV-SS shadow and NMI blocking. No SMM: its fields read 0.
pub(super) fn get_events(st: &State) -> abi::KvmVcpuEvents {
    let mut ev = abi::KvmVcpuEvents {
        exception_injected: 0,
        exception_nr: 0,
        exception_has_error_code: 0,
        exception_pending: 0,
        exception_error_code: 0,
        interrupt_injected: 0,
        interrupt_nr: 0,
        interrupt_soft: 0,
        interrupt_shadow: (st.interruptibility & BLOCKING_STI_MOV_SS) as u8,
        nmi_injected: 0,
        nmi_pending: u8::from(st.nmi),
        nmi_masked: u8::from(st.interruptibility & BLOCKING_NMI != 0),
        nmi_pad: 0,
        sipi_vector: 0,
        flags: events::NMI_PENDING | events::SHADOW | events::SMM,
        smi: [0; 4],
        triple_fault_pending: 0,
        reserved: [0; 26],
        exception_has_payload: 0,
        exception_payload: 0,
    };
    if let Some(v) = st.irq {
        ev.interrupt_injected = 1;
        ev.interrupt_nr = v;
    }
    if let Some(e) = st.pending_event {
        let vector = (e.info & 0xff) as u8;
        match e.info & EVENT_TYPE_MASK {
            EVENT_TYPE_HW_EXCEPTION => {
                ev.exception_injected = 1;
                ev.exception_nr = vector;
                ev.exception_has_error_code = u8::from(e.info & EVENT_ERROR_CODE != 0);
                ev.exception_error_code = e.error_code;
            }
            EVENT_TYPE_EXT_INTR => {
                ev.interrupt_injected = 1;
                ev.interrupt_nr = vector;
            }
            EVENT_TYPE_NMI => ev.nmi_injected = 1,
            // Software interrupts and exceptions are not reported (KVM: no
            // instruction length in the ABI; the guest executes them again).
            _ => {}
        }
    }
    ev
}

/// `KVM_SET_VCPU_EVENTS` (KVM's `kvm_vcpu_ioctl_x86_set_vcpu_events()`):
/// all or nothing. `EINVAL` for unknown flags, exception payloads and
/// triple-fault events (not enabled: rkvm has neither capability), an
/// injected exception with vector 2 or above 31, and any SMM state.
pub(super) fn set_events(st: &mut State, ev: &abi::KvmVcpuEvents) -> Result {
    let known = events::NMI_PENDING
        | events::SIPI_VECTOR
        | events::SHADOW
        | events::SMM
        | events::PAYLOAD
        | events::TRIPLE_FAULT;
    if ev.flags & !known != 0 || ev.flags & (events::PAYLOAD | events::TRIPLE_FAULT) != 0 {
        return Err(EINVAL);
    }
    if ev.exception_injected != 0 && (ev.exception_nr > 31 || ev.exception_nr == 2) {
        return Err(EINVAL);
    }
    if ev.flags & events::SMM != 0 && ev.smi[..3] != [0; 3] {
        return Err(EINVAL);
    }
    let mut pending_event = None;
    let mut irq = None;
    if ev.exception_injected != 0 {
        let code = if ev.exception_has_error_code != 0 {
            EVENT_ERROR_CODE
        } else {
            0
        };
        pending_event = Some(Event {
            info: EVENT_VALID | EVENT_TYPE_HW_EXCEPTION | code | u32::from(ev.exception_nr),
            error_code: ev.exception_error_code,
            insn_len: 0,
        });
    }
    if ev.interrupt_injected != 0 {
        // Delivered when the guest can take it (see `queue_interrupt`).
        irq = Some(ev.interrupt_nr);
    }
    if ev.nmi_injected != 0 && pending_event.is_none() {
        pending_event = Some(Event {
            info: EVENT_VALID | EVENT_TYPE_NMI | NMI_VECTOR,
            error_code: 0,
            insn_len: 0,
        });
    }
    st.pending_event = pending_event;
    st.irq = irq;
    if ev.flags & events::SHADOW != 0 {
        st.interruptibility = (st.interruptibility & !BLOCKING_STI_MOV_SS)
            | (u32::from(ev.interrupt_shadow) & BLOCKING_STI_MOV_SS);
    }
    if ev.flags & events::NMI_PENDING != 0 {
        st.nmi = ev.nmi_pending != 0;
    }
    if ev.nmi_masked != 0 {
        st.interruptibility |= BLOCKING_NMI;
    } else {
        st.interruptibility &= !BLOCKING_NMI;
    }
    Ok(())
}

/// KVM's `kvm_vcpu_ready_for_interrupt_injection()` without an in-kernel
/// irqchip: interrupts enabled and not blocked, nothing queued, no event
/// waiting for re-injection.
fn ready_for_interrupt(st: &State) -> bool {
    st.regs.rflags & RFLAGS_IF != 0
        && st.interruptibility & BLOCKING_STI_MOV_SS == 0
        && st.irq.is_none()
        && st.pending_event.is_none()
}

/// `KVM_RUN`.
pub(super) fn run(vm: &Vm, vcpu: &Vcpu, arg: usize) -> Result<isize> {
    if arg != 0 {
        return Err(EINVAL);
    }
    let mut st = vcpu.state.lock();
    let area = RunArea {
        run: &vcpu.pages[0],
        pio: &vcpu.pages[1],
        vcpu,
    };
    let ret = run_loop(vm, vcpu, &mut st, &area);
    // What KVM's `post_kvm_run_save()` reports on every return.
    area.write(kr::IF_FLAG, &[u8::from(st.regs.rflags & RFLAGS_IF != 0)]);
    area.write(
        kr::READY_FOR_INTERRUPT_INJECTION,
        &[u8::from(ready_for_interrupt(&st))],
    );
    area.write(kr::FLAGS, &0u16.to_ne_bytes());
    if vcpu.has_apic {
        st.cr8 = vcpu.apic.lock().lapic.cr8();
    }
    area.write(kr::CR8, &st.cr8.to_ne_bytes());
    area.write(kr::APIC_BASE, &st.apic_base.to_ne_bytes());
    ret
}

fn run_loop(vm: &Vm, vcpu: &Vcpu, st: &mut State, area: &RunArea<'_>) -> Result<isize> {
    let mut b = [0u8];
    area.read(kr::REQUEST_INTERRUPT_WINDOW, &mut b);
    let want_window = b[0] != 0;
    // Complete the I/O user space just handled, even if we then return at
    // once: KVM documents that `immediate_exit` still completes it.
    complete_pending(vm, st, area)?;
    // As in KVM, this EINTR leaves `exit_reason` as it was.
    if area.immediate_exit() {
        return Err(EINTR);
    }
    // KVM's `vcpu_run()`: an error return (say EFAULT for guest memory the
    // VMM made inaccessible) leaves KVM_EXIT_UNKNOWN.
    area.set_exit(kr::EXIT_UNKNOWN);
    // An uncorrected machine check the guest could not take
    // (`KVM_X86_SET_MCE`): KVM's KVM_REQ_TRIPLE_FAULT.
    if core::mem::take(&mut st.triple_fault) {
        area.set_exit(kr::EXIT_SHUTDOWN);
        return Ok(0);
    }
    loop {
        // Single-stepping: an instruction rkvm completed (here, or by the
        // I/O user space just served) ends the step before the guest runs
        // another one (KVM's "robust single-step").
        if core::mem::take(&mut st.stepped) && st.single_step {
            step_exit(st, area);
            return Ok(0);
        }
        update_clock(vm, st);
        if vcpu.has_apic && !apic_events(vcpu, st) {
            vcpu.stats.inc(VcpuStat::SignalExits);
            area.set_exit(kr::EXIT_INTR);
            return Err(EINTR);
        }
        if shim::signal_pending() {
            vcpu.stats.inc(VcpuStat::SignalExits);
            area.set_exit(kr::EXIT_INTR);
            return Err(EINTR);
        }
        shim::cond_resched();
        let paged = paging::paged(st);
        if paged {
            // Found or built here, outside the window (it may allocate).
            paging::load_root(vm, st)?;
        }
        let outcome = {
            let mut hw = vcpu.hw.lock();
            let running = vm.running_cell(vcpu.index);
            enter_guest(vm, vcpu, running, &mut hw, st, want_window, paged)
        };
        let exit = match outcome {
            Outcome::Busy => {
                pr_err!("KVM_RUN: VMX is in use by another hypervisor (CR4.VMXE is set); unload it (kvm_intel) to run guests on rkvm\n");
                return Err(EBUSY);
            }
            Outcome::VmxFailed => {
                pr_err!("KVM_RUN: VMXON/VMPTRLD failed\n");
                return Err(EIO);
            }
            Outcome::WriteFailed(f) => {
                pr_err!("KVM_RUN: VMWRITE of field {:#x} failed\n", f);
                return Err(EIO);
            }
            Outcome::VmFail(err) => {
                area.fail_entry(u64::from(err), kernel::cpu::CpuId::current().as_u32());
                return Ok(0);
            }
            Outcome::Reopen => continue,
            Outcome::Exit(e) => e,
        };
        match handle_slow(vm, st, area, &exit)? {
            Step::Continue => continue,
            Step::ToUser => {
                let stat = match area.exit_reason() {
                    kr::EXIT_IO => Some(VcpuStat::IoExits),
                    kr::EXIT_MMIO => Some(VcpuStat::MmioExits),
                    kr::EXIT_HLT => Some(VcpuStat::HaltExits),
                    kr::EXIT_IRQ_WINDOW_OPEN => Some(VcpuStat::IrqWindowExits),
                    _ => None,
                };
                if let Some(stat) = stat {
                    vcpu.stats.inc(stat);
                }
                return Ok(0);
            }
        }
    }
}

/// One VMX window: load, run until a slow exit, save.
fn enter_guest(
    vm: &Vm,
    vcpu: &Vcpu,
    running: &core::sync::atomic::AtomicI32,
    hw: &mut crate::vmx::window::VmxPages,
    st: &mut State,
    want_window: bool,
    paged: bool,
) -> Outcome {
    let stats = &vcpu.stats;
    let apic = vcpu.has_apic.then_some(&vcpu.apic);
    // The window ends in time for the APIC timer.
    let apic_deadline = apic.and_then(|a| a.lock().lapic.deadline());
    let caps = vm.caps();
    let pat_controls = caps.unpaged.entry & crate::vmx::caps::entry::LOAD_PAT != 0
        && caps.unpaged.exit & crate::vmx::caps::exit::LOAD_PAT != 0;
    let mut w = match Window::open(hw, running, pat_controls) {
        Ok(w) => w,
        Err(OpenError::Busy) => return Outcome::Busy,
        Err(OpenError::VmxFailed) => return Outcome::VmxFailed,
    };
    // A root invalidated or made obsolete since it was checked: check it
    // again outside the window. This follows the publication of
    // `running_cpu` in `Window::open`, so either it sees the new epoch or
    // the invalidator's kick sees this window.
    let shadow_root = if paged {
        if st.roots.epoch() != vm.roots_epoch() {
            return Outcome::Reopen;
        }
        match st.roots.hpa() {
            Some(hpa) => Some(hpa),
            None => return Outcome::Reopen,
        }
    } else {
        None
    };
    let base_proc = load_guest(&mut w, st, caps, vm.eptp(), shadow_root);
    load_lazy_state(&mut w, st);
    if let Some(f) = w.write_failed() {
        return Outcome::WriteFailed(f);
    }
    w.invept(vm.eptp(), caps.ept.invept_single);
    let timer = (caps.unpaged.pin & crate::vmx::caps::pin::PREEMPTION_TIMER != 0).then(|| {
        let mut ticks = u64::from(shim::tsc_khz()) * WINDOW_SLICE_US / 1000;
        if let Some(d) = apic_deadline {
            let ns = d.saturating_sub(now_ns());
            ticks = ticks.min(ns.saturating_mul(u64::from(shim::tsc_khz())) / 1_000_000);
        }
        (ticks >> caps.preemption_timer_rate).clamp(1, u64::from(u32::MAX))
    });
    let mut gprs = [
        st.regs.rax,
        st.regs.rcx,
        st.regs.rdx,
        st.regs.rbx,
        0,
        st.regs.rbp,
        st.regs.rsi,
        st.regs.rdi,
        st.regs.r8,
        st.regs.r9,
        st.regs.r10,
        st.regs.r11,
        st.regs.r12,
        st.regs.r13,
        st.regs.r14,
        st.regs.r15,
    ];
    // VM exits leave the timer field alone ("save VMX-preemption timer
    // value" is off), so every entry reloads this value.
    if let Some(t) = timer {
        w.write(field::PREEMPTION_TIMER_VALUE, t);
    }
    // What `load_guest` wrote.
    let mut proc_now = base_proc;
    let outcome = loop {
        prepare_events(
            &mut w,
            st,
            stats,
            apic,
            base_proc,
            want_window,
            &mut proc_now,
        );
        if let Some(ev) = st.pending_event.take() {
            w.write(field::ENTRY_INTR_INFO, u64::from(ev.info));
            w.write(field::ENTRY_EXCEPTION_ERROR_CODE, u64::from(ev.error_code));
            w.write(field::ENTRY_INSTRUCTION_LEN, u64::from(ev.insn_len));
        }
        st.ran = true;
        if let Err(err) = w.enter(&mut gprs, &mut st.cr2) {
            break Outcome::VmFail(err);
        }
        stats.inc(VcpuStat::Exits);
        let e = ExitInfo {
            reason: ExitReason(w.read(field::EXIT_REASON) as u32),
            qualification: w.read(field::EXIT_QUALIFICATION),
            gpa: w.read(field::GUEST_PHYSICAL_ADDRESS),
            intr_info: w.read(field::EXIT_INTR_INFO) as u32,
            intr_error_code: w.read(field::EXIT_INTR_ERROR_CODE) as u32,
            insn_len: w.read(field::EXIT_INSTRUCTION_LEN),
            insn_info: w.read(field::EXIT_INSTRUCTION_INFO) as u32,
            idt_vectoring: w.read(field::IDT_VECTORING_INFO) as u32,
            cpu: w.cpu(),
        };
        if e.reason.entry_failed() {
            break Outcome::Exit(e);
        }
        // An event whose delivery the exit interrupted is delivered again
        // on the next entry (SDM 28.2.4, "IDT-vectoring information").
        let idt = e.idt_vectoring;
        if idt & EVENT_VALID != 0 {
            st.pending_event = Some(Event {
                info: idt & 0x8000_0fff,
                error_code: w.read(field::IDT_VECTORING_ERROR_CODE) as u32,
                insn_len: e.insn_len as u32,
            });
        }
        let rip_before = st.single_step.then(|| w.read(field::GUEST_RIP));
        match handle_fast(&mut w, st, &mut gprs, &e, vm, apic) {
            // Single-stepping: an instruction rkvm completed is a step.
            Fast::Resume if rip_before.is_some_and(|r| r != w.read(field::GUEST_RIP)) => {
                st.stepped = true;
                break Outcome::Reopen;
            }
            Fast::Resume => continue,
            Fast::Leave => break Outcome::Exit(e),
            Fast::Reopen => break Outcome::Reopen,
        }
    };
    save_guest(&w, st, &gprs, paged);
    outcome
}

/// Turns a queued NMI or interrupt into the event of the next entry when
/// the guest can take it, else asks for an exit when it can (NMI-window and
/// interrupt-window exiting). User space asking for an interrupt window
/// gets one too.
fn prepare_events(
    w: &mut Window<'_>,
    st: &mut State,
    stats: &VcpuStats,
    apic: Option<&SpinLock<Apic>>,
    base_proc: u32,
    want_window: bool,
    proc_now: &mut u32,
) {
    use crate::vmx::caps::proc;
    // The local APIC's next interrupt, when the guest can take it; else
    // an interrupt window is asked for. Read here, inside the window and
    // after `running` was published, so that an interrupt sent after this
    // check comes with a kick (see `Vm::kick`).
    st.apic_window = false;
    // `KVM_GUESTDBG_BLOCKIRQ` holds back the APIC's interrupts and NMIs,
    // and opens no window for them; an interrupt of `KVM_INTERRUPT` is
    // already injected as far as KVM is concerned, so it still goes in.
    let blocked = st.block_irq;
    if let Some(apic) = apic.filter(|_| !blocked) {
        if st.pending_event.is_none() && st.irq.is_none() && !st.nmi {
            let mut a = apic.lock();
            if a.lapic.pending().is_some() {
                let rflags = w.read(field::GUEST_RFLAGS);
                let blocking = w.read(field::GUEST_INTERRUPTIBILITY) as u32;
                if rflags & RFLAGS_IF != 0 && blocking & BLOCKING_STI_MOV_SS == 0 {
                    if let Some(v) = a.lapic.take() {
                        stats.inc(VcpuStat::IrqInjections);
                        st.pending_event = Some(Event {
                            info: EVENT_VALID | EVENT_TYPE_EXT_INTR | u32::from(v),
                            error_code: 0,
                            insn_len: 0,
                        });
                    }
                } else {
                    st.apic_window = true;
                }
            }
        }
    }
    // Nothing queued (the common case): no VMREADs; the controls are
    // written only when they change.
    if st.pending_event.is_none() && (st.nmi || st.irq.is_some()) {
        let blocking = w.read(field::GUEST_INTERRUPTIBILITY) as u32;
        if st.nmi && !blocked && blocking & (BLOCKING_NMI | BLOCKING_STI_MOV_SS) == 0 {
            st.nmi = false;
            stats.inc(VcpuStat::NmiInjections);
            st.pending_event = Some(Event {
                info: EVENT_VALID | EVENT_TYPE_NMI | NMI_VECTOR,
                error_code: 0,
                insn_len: 0,
            });
        } else if let Some(v) = st.irq {
            let rflags = w.read(field::GUEST_RFLAGS);
            if rflags & RFLAGS_IF != 0 && blocking & BLOCKING_STI_MOV_SS == 0 {
                st.irq = None;
                stats.inc(VcpuStat::IrqInjections);
                st.pending_event = Some(Event {
                    info: EVENT_VALID | EVENT_TYPE_EXT_INTR | u32::from(v),
                    error_code: 0,
                    insn_len: 0,
                });
            }
        }
    }
    let mut controls = base_proc;
    if st.nmi && !blocked {
        controls |= proc::NMI_WINDOW_EXITING;
    }
    if st.irq.is_some() || want_window || st.apic_window {
        controls |= proc::INTR_WINDOW_EXITING;
    }
    if controls != *proc_now {
        w.write(field::PROC_BASED_CONTROLS, u64::from(controls));
        *proc_now = controls;
    }
}

/// Writes the controls and the whole guest state: after VMCLEAR at the end
/// of the last window the VMCS may be on another CPU, so nothing is
/// assumed to be there already.
///
/// `shadow_root` is the hardware CR3 of a paged guest (its shadow root):
/// then EPT and unrestricted guest are off, CR3 accesses and every #PF
/// exit. Returns the primary processor-based controls.
fn load_guest(
    w: &mut Window<'_>,
    st: &State,
    caps: &VmxCaps,
    eptp: u64,
    shadow_root: Option<u64>,
) -> u32 {
    use crate::vmx::caps::{
        proc,
        proc2, //
    };
    let c = &caps.unpaged;
    let paged = shadow_root.is_some();
    let (proc, proc2, exceptions) = if paged {
        (
            // INVLPG runs natively: the shadow follows every guest table
            // write, so there is nothing to invalidate but the TLB entry.
            c.proc | proc::CR3_LOAD_EXITING | proc::CR3_STORE_EXITING,
            c.proc2 & !(proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST),
            1u64 << PF_VECTOR,
        )
    } else {
        (c.proc, c.proc2, 0)
    };
    w.write(field::PIN_BASED_CONTROLS, u64::from(c.pin));
    w.write(field::PROC_BASED_CONTROLS, u64::from(proc));
    w.write(field::PROC_BASED_CONTROLS2, u64::from(proc2));
    w.write(field::EXIT_CONTROLS, u64::from(c.exit));
    // IA-32e mode follows EFER.LMA (a VM exit stores it back).
    let entry = if paging::long_mode(st) {
        c.entry | crate::vmx::caps::entry::IA32E_MODE
    } else {
        c.entry & !crate::vmx::caps::entry::IA32E_MODE
    };
    w.write(field::ENTRY_CONTROLS, u64::from(entry));
    // Single-stepping (the trap flag's #DB) and the debugger's hardware
    // breakpoints: #DB comes to rkvm; its software breakpoints: #BP.
    let exceptions = if st.single_step || st.hw_bp.is_some() {
        exceptions | 1 << DB_VECTOR
    } else {
        exceptions
    };
    let exceptions = if st.sw_bp {
        exceptions | 1 << BP_VECTOR
    } else {
        exceptions
    };
    w.write(field::EXCEPTION_BITMAP, exceptions);
    for f in [
        field::PAGE_FAULT_ERROR_CODE_MASK,
        field::PAGE_FAULT_ERROR_CODE_MATCH,
        field::CR3_TARGET_COUNT,
        field::EXIT_MSR_STORE_COUNT,
        field::EXIT_MSR_LOAD_COUNT,
        field::ENTRY_MSR_LOAD_COUNT,
        field::ENTRY_INTR_INFO,
        field::GUEST_ACTIVITY_STATE,
        field::GUEST_PENDING_DBG_EXCEPTIONS,
        field::GUEST_IA32_DEBUGCTL,
    ] {
        w.write(f, 0);
    }
    w.write(field::VMCS_LINK_POINTER, u64::MAX);
    w.write(field::TSC_OFFSET, st.msrs.tsc_offset);
    w.write_pat(st.msrs.pat);
    w.write(field::EPT_POINTER, eptp);
    // Every CR0/CR4 bit is owned by rkvm: guest writes that change one
    // exit; reads see the shadow, i.e. the guest's own value.
    w.write(field::CR0_GUEST_HOST_MASK, u64::MAX);
    w.write(field::CR4_GUEST_HOST_MASK, u64::MAX);
    w.write(field::CR0_READ_SHADOW, st.cr0);
    w.write(field::GUEST_CR0, hw_cr0(st.cr0));
    w.write(field::CR4_READ_SHADOW, st.cr4);
    w.write(field::GUEST_CR4, hw_cr4(st.cr4, caps.cr4_fixed0, paged));
    w.write(field::GUEST_CR3, shadow_root.unwrap_or(st.cr3));
    for (v, &s) in VMCS_TO_STATE.iter().enumerate() {
        let (sel, limit, ar, base) = field::guest_seg(v as u32);
        let seg = &st.segs[s];
        w.write(sel, u64::from(seg.selector));
        w.write(limit, u64::from(seg.limit));
        w.write(ar, u64::from(seg.ar));
        w.write(base, seg.base);
    }
    w.write(field::GUEST_GDTR_BASE, st.gdt.base);
    w.write(field::GUEST_GDTR_LIMIT, u64::from(st.gdt.limit));
    w.write(field::GUEST_IDTR_BASE, st.idt.base);
    w.write(field::GUEST_IDTR_LIMIT, u64::from(st.idt.limit));
    w.write(field::GUEST_DR7, eff_dr7(st));
    w.write(field::GUEST_RSP, st.regs.rsp);
    w.write(field::GUEST_RIP, st.regs.rip);
    let tf = if st.single_step { RFLAGS_TF } else { 0 };
    w.write(field::GUEST_RFLAGS, st.regs.rflags | tf);
    w.write(field::GUEST_IA32_EFER, st.efer);
    w.write(field::GUEST_SYSENTER_CS, st.sysenter[0]);
    w.write(field::GUEST_SYSENTER_ESP, st.sysenter[1]);
    w.write(field::GUEST_SYSENTER_EIP, st.sysenter[2]);
    w.write(
        field::GUEST_INTERRUPTIBILITY,
        u64::from(st.interruptibility),
    );
    proc
}

/// Reads the guest state back from the VMCS into `State`.
fn save_guest(w: &Window<'_>, st: &mut State, g: &[u64; 16], paged: bool) {
    let r = &mut st.regs;
    (r.rax, r.rcx, r.rdx, r.rbx, r.rbp, r.rsi, r.rdi) = (g[0], g[1], g[2], g[3], g[5], g[6], g[7]);
    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) =
        (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
    r.rsp = w.read(field::GUEST_RSP);
    r.rip = w.read(field::GUEST_RIP);
    r.rflags = w.read(field::GUEST_RFLAGS);
    // The trap flag rkvm set for single-stepping is not the guest's (as on
    // KVM, a guest that sets TF itself while being stepped loses it).
    if st.single_step {
        r.rflags &= !RFLAGS_TF;
    }
    for (v, &s) in VMCS_TO_STATE.iter().enumerate() {
        let (sel, limit, ar, base) = field::guest_seg(v as u32);
        let seg = &mut st.segs[s];
        seg.selector = w.read(sel) as u16;
        seg.limit = w.read(limit) as u32;
        seg.ar = w.read(ar) as u32;
        seg.base = w.read(base);
    }
    st.gdt.base = w.read(field::GUEST_GDTR_BASE);
    st.gdt.limit = w.read(field::GUEST_GDTR_LIMIT) as u16;
    st.idt.base = w.read(field::GUEST_IDTR_BASE);
    st.idt.limit = w.read(field::GUEST_IDTR_LIMIT) as u16;
    st.cr0 = w.read(field::CR0_READ_SHADOW);
    // A paged guest's CR3 is the shadow root; its own is kept in `st`.
    if !paged {
        st.cr3 = w.read(field::GUEST_CR3);
    }
    st.cr4 = w.read(field::CR4_READ_SHADOW);
    st.efer = w.read(field::GUEST_IA32_EFER);
    st.sysenter = [
        w.read(field::GUEST_SYSENTER_CS),
        w.read(field::GUEST_SYSENTER_ESP),
        w.read(field::GUEST_SYSENTER_EIP),
    ];
    st.interruptibility = w.read(field::GUEST_INTERRUPTIBILITY) as u32;
    if let Some(v) = w.guest_kernel_gs_base() {
        st.msrs.kernel_gs_base = v;
    }
    if let Some(v) = w.guest_dr6() {
        st.debug.dr6 = v;
    }
}

/// Puts into the CPU the guest state a VM entry does not load, when the
/// guest can use it: the SYSCALL/SWAPGS MSRs once EFER.SCE or EFER.LME is
/// set (SYSCALL needs SCE, SWAPGS 64-bit mode), DR0-DR3 and DR6 once DR7
/// enables a breakpoint (the guest reads and writes them through MOV DR
/// exits otherwise). Both stay loaded until the window closes.
fn load_lazy_state(w: &mut Window<'_>, st: &State) {
    if st.efer & (efer::SCE | efer::LME) != 0 {
        w.load_syscall_msrs(&st.msrs.syscall());
    }
    if eff_dr7(st) & debugreg::DR7_BP_ENABLED != 0 {
        let db = st.hw_bp.as_ref().map_or(&st.debug.db, |(db, _)| db);
        w.load_guest_debug(db, st.debug.dr6);
    }
}

/// The DR7 the CPU holds while the guest runs: the debugger's with
/// `KVM_GUESTDBG_USE_HW_BP` (KVM's `kvm_update_dr7()`), else the guest's.
fn eff_dr7(st: &State) -> u64 {
    st.hw_bp.map_or(st.debug.dr7, |(_, dr7)| dr7)
}

/// `KVM_GUESTDBG_INJECT_DB`/`INJECT_BP`: queues #DB, or #BP as a software
/// exception of the instruction whose #BP last exited (at least 1 byte,
/// which VM entry requires), as KVM's `kvm_queue_exception()`.
pub(super) fn queue_debug_exception(st: &mut State, db: bool) {
    if db {
        inject_exception(st, DB_VECTOR);
    } else {
        st.pending_event = Some(Event {
            info: EVENT_VALID | EVENT_TYPE_SW_EXCEPTION | BP_VECTOR,
            error_code: 0,
            insn_len: st.bp_insn_len.max(1),
        });
    }
}

/// Skips the exiting instruction inside the window.
fn skip_in_window(w: &mut Window<'_>, len: u64) {
    let lma = w.read(field::GUEST_IA32_EFER) & efer::LMA != 0;
    let mask = rip_mask(lma, w.read(field::guest_seg(1).2) as u32);
    let rip = w.read(field::GUEST_RIP).wrapping_add(len) & mask;
    w.write(field::GUEST_RIP, rip);
    let blocking = w.read(field::GUEST_INTERRUPTIBILITY) as u32;
    if blocking & BLOCKING_STI_MOV_SS != 0 {
        w.write(
            field::GUEST_INTERRUPTIBILITY,
            u64::from(blocking & !BLOCKING_STI_MOV_SS),
        );
    }
}

/// Queues hardware exception `vector` without an error code (#UD, #DB).
fn inject_exception(st: &mut State, vector: u32) {
    st.pending_event = Some(Event {
        info: EVENT_VALID | EVENT_TYPE_HW_EXCEPTION | vector,
        error_code: 0,
        insn_len: 0,
    });
}

/// Queues #GP(0) for the next entry (no error code in real mode, where
/// the entry checks forbid one).
fn inject_gp(st: &mut State, protected: bool) {
    let code = if protected { EVENT_ERROR_CODE } else { 0 };
    st.pending_event = Some(Event {
        info: EVENT_VALID | EVENT_TYPE_HW_EXCEPTION | code | GP_VECTOR,
        error_code: 0,
        insn_len: 0,
    });
}

/// Exits handled without leaving the window.
fn handle_fast(
    w: &mut Window<'_>,
    st: &mut State,
    g: &mut [u64; 16],
    e: &ExitInfo,
    vm: &Vm,
    apic: Option<&SpinLock<Apic>>,
) -> Fast {
    match e.reason.basic() {
        reason::RDMSR | reason::WRMSR => handle_msr(w, st, g, e, vm, apic.is_some()),
        reason::EXCEPTION_NMI if e.intr_info & EVENT_TYPE_MASK == EVENT_TYPE_NMI => {
            w.reraise_nmi();
            Fast::Resume
        }
        reason::CPUID => {
            let (function, index) = (g[RAX] as u32, g[RCX] as u32);
            let out = if st.cpuid.is_empty() {
                cpuid::lookup(&cpuid::DEFAULT, function, index)
            } else {
                let apic_base = st.apic_base;
                let cr4 = w.read(field::CR4_READ_SHADOW);
                cpuid::update_runtime(&mut st.cpuid, cr4, apic_base);
                if vm.quirk_disabled(abi::quirks::MISC_ENABLE_NO_MWAIT) {
                    let on = st.msrs.misc_enable & msr::MISC_ENABLE_MWAIT != 0;
                    cpuid::update_mwait(&mut st.cpuid, on);
                }
                cpuid::lookup(&st.cpuid, function, index)
            };
            for (r, v) in [RAX, RBX, RCX, RDX].into_iter().zip(out) {
                g[r] = u64::from(v);
            }
            skip_in_window(w, e.insn_len);
            Fast::Resume
        }
        // KVM's hypercalls (`x86::hypercall`): 32-bit number and result
        // outside 64-bit mode; CPL is SS.DPL.
        reason::VMCALL => {
            let lma = w.read(field::GUEST_IA32_EFER) & efer::LMA != 0;
            let long = lma && w.read(field::guest_seg(1).2) as u32 & AR_L != 0;
            let cpl = ((w.read(field::guest_seg(2).2) >> 5) & 3) as u8;
            let mask = if long { u64::MAX } else { 0xffff_ffff };
            g[RAX] = hypercall::result(g[RAX] & mask, cpl, pv_features(st)) & mask;
            skip_in_window(w, e.insn_len);
            Fast::Resume
        }
        reason::CR_ACCESS => handle_cr(w, st, g, e, vm, apic),
        reason::DR_ACCESS => handle_dr(w, st, g, e),
        // KVM's `kvm_emulate_monitor_mwait()`: a NOP, or #UD when both
        // MWAIT_NEVER_UD_FAULTS is disabled and MWAIT is off (CPUID.MWAIT
        // under MISC_ENABLE_NO_MWAIT, else MISC_ENABLE.MWAIT).
        reason::MWAIT_INSTRUCTION | reason::MONITOR_INSTRUCTION => {
            use abi::quirks;
            let enabled = !vm.quirk_disabled(quirks::MWAIT_NEVER_UD_FAULTS)
                || if vm.quirk_disabled(quirks::MISC_ENABLE_NO_MWAIT) {
                    st.msrs.misc_enable & msr::MISC_ENABLE_MWAIT != 0
                } else {
                    cpuid::has(&st.cpuid, 1, 2, 3)
                };
            if enabled {
                skip_in_window(w, e.insn_len);
            } else {
                inject_exception(st, UD_VECTOR);
            }
            Fast::Resume
        }
        // `prepare_events` injects what was waiting; an interrupt window
        // nobody queued an interrupt for is user space's.
        reason::NMI_WINDOW => Fast::Resume,
        reason::INTERRUPT_WINDOW if st.irq.is_some() || st.apic_window => Fast::Resume,
        _ => Fast::Leave,
    }
}

/// A guest RDMSR or WRMSR in the window. The filter comes first (KVM's
/// `kvm_msr_allowed()`); the APIC's MSRs and IA32_APIC_BASE are handled
/// outside the window when the APIC is in the kernel (they may send IPIs,
/// which kick other CPUs); a refused access goes to user space if it asked
/// for that reason, else is #GP.
fn handle_msr(
    w: &mut Window<'_>,
    st: &mut State,
    g: &mut [u64; 16],
    e: &ExitInfo,
    vm: &Vm,
    has_apic: bool,
) -> Fast {
    let index = g[RCX] as u32;
    let write = e.reason.basic() == reason::WRMSR;
    if !vm.msr_allowed(index, write) {
        return msr_refused(w, st, vm, msr_filter::reason::FILTER);
    }
    if has_apic && (is_x2apic_msr(index) || index == msr::index::APIC_BASE) {
        return Fast::Leave;
    }
    let ok = if write {
        write_msr(w, st, vm, index, (g[RDX] << 32) | (g[RAX] & 0xffff_ffff))
    } else {
        match read_msr(w, st, vm, index) {
            Some(v) => {
                g[RAX] = v & 0xffff_ffff;
                g[RDX] = v >> 32;
                true
            }
            None => false,
        }
    };
    if !ok {
        // KVM's KVM_MSR_RET_UNSUPPORTED: an MSR it has no case for (the
        // x2APIC range is always one, APIC in the kernel or not).
        let known = is_x2apic_msr(index) || get_msr(st, index, true).is_some();
        let why = if known {
            msr_filter::reason::INVAL
        } else {
            msr_filter::reason::UNKNOWN
        };
        return msr_refused(w, st, vm, why);
    }
    skip_in_window(w, e.insn_len);
    // The kvmclock structures are written outside the window, before the
    // guest runs again.
    if st.clock.time_pending || st.clock.wall_pending {
        return Fast::Reopen;
    }
    if write && index == msr::index::EFER && st.cr0 & cr0::PG != 0 {
        return switch_root(w, st, vm);
    }
    Fast::Resume
}

/// A guest MSR access refused for `why` (`msr_filter::reason`): to user
/// space (`user_msr_exit`, once out of the window) or #GP.
fn msr_refused(w: &Window<'_>, st: &mut State, vm: &Vm, why: u32) -> Fast {
    if vm.user_space_msr(why) {
        st.user_msr = why;
        return Fast::Leave;
    }
    let protected = w.read(field::CR0_READ_SHADOW) & cr0::PE != 0;
    inject_gp(st, protected);
    Fast::Resume
}

/// `KVM_EXIT_X86_RDMSR`/`WRMSR` for the access `e` refused for `why` (KVM's
/// `kvm_msr_user_space()`): user space fills in `msr.data` (reads) or
/// `msr.error`, and the next `KVM_RUN` completes the instruction
/// (`complete_pending`).
fn user_msr_exit(st: &mut State, area: &RunArea<'_>, e: &ExitInfo, why: u32) -> Step {
    let write = e.reason.basic() == reason::WRMSR;
    let index = st.regs.rcx as u32;
    let data = if write {
        (st.regs.rdx << 32) | (st.regs.rax & 0xffff_ffff)
    } else {
        0
    };
    area.write(kr::MSR_ERROR, &[0u8]);
    area.write(kr::MSR_PAD, &[0u8; 7]);
    area.write(kr::MSR_REASON, &why.to_ne_bytes());
    area.write(kr::MSR_INDEX, &index.to_ne_bytes());
    area.write(kr::MSR_DATA, &data.to_ne_bytes());
    area.set_exit(if write {
        kr::EXIT_X86_WRMSR
    } else {
        kr::EXIT_X86_RDMSR
    });
    st.pending = Pending::Msr {
        write,
        insn_len: e.insn_len as u8,
    };
    Step::ToUser
}

/// The host TSC.
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects.
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi,
                         options(nomem, nostack, preserves_flags));
    }
    u64::from(hi) << 32 | u64::from(lo)
}

/// `KVM_GET_MSRS` of one MSR, outside the window.
pub(super) fn host_get_msr(st: &State, index: u32) -> Option<u64> {
    // KVM's rule for MSRs it lists but the guest lacks: the host reads 0.
    if !pv_features(st).msr_allowed(index) {
        return Some(0);
    }
    get_msr(st, index, true)
}

/// The paravirtual features the guest has (see `hypercall::PvFeatures`).
fn pv_features(st: &State) -> hypercall::PvFeatures {
    hypercall::PvFeatures {
        enforce: st.pv_enforce,
        bits: if st.pv_enforce {
            cpuid::pv_features(&st.cpuid)
        } else {
            0
        },
    }
}

/// An MSR read from `State` by the host or (`host` false) the guest.
fn get_msr(st: &State, index: u32, host: bool) -> Option<u64> {
    if !host && !pv_features(st).msr_allowed(index) {
        return None;
    }
    Some(match index {
        msr::index::EFER => st.efer,
        msr::index::APIC_BASE => st.apic_base,
        msr::index::SYSENTER_CS => st.sysenter[0],
        msr::index::SYSENTER_ESP => st.sysenter[1],
        msr::index::SYSENTER_EIP => st.sysenter[2],
        msr::index::TSC => rdtsc().wrapping_add(st.msrs.tsc_offset),
        msr::index::FS_BASE => st.segs[SEG_FS].base,
        msr::index::GS_BASE => st.segs[SEG_GS].base,
        _ => {
            return st
                .msrs
                .get(index)
                .or_else(|| st.msrs.mce.get(index, host))
                .or_else(|| st.msrs.mtrr.get(index))
        }
    })
}

/// `KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)`: the guest TSC becomes the
/// host's plus `offset` from the next entry on.
pub(super) fn host_set_tsc_offset(st: &mut State, offset: u64) {
    st.msrs.tsc_offset = offset;
    st.clock.time_pending = true;
}

/// `KVM_SET_MSRS` of one MSR, outside the window (host-initiated: LMA may
/// be set, the APIC base is checked as `KVM_SET_SREGS` checks it).
pub(super) fn host_set_msr(st: &mut State, index: u32, v: u64) -> bool {
    // KVM's rule for MSRs it lists but the guest lacks: the host may
    // write 0, which changes nothing.
    if !pv_features(st).msr_allowed(index) {
        return v == 0;
    }
    if let Some(ok) = st.msrs.mce.set(index, v, true) {
        return ok;
    }
    if let Some(ok) = set_mtrr(st, index, v) {
        return ok;
    }
    if msr::write_valid(index, v) != Some(true) {
        return false;
    }
    let cpu = cpuid::guest_cpu(&st.cpuid);
    match index {
        msr::index::EFER if cpu.efer_valid(v) => st.efer = v,
        msr::index::APIC_BASE if cpu.apic_base_valid(v) => st.apic_base = v,
        msr::index::EFER | msr::index::APIC_BASE => return false,
        msr::index::SYSENTER_CS => st.sysenter[0] = v & 0xffff_ffff,
        msr::index::SYSENTER_ESP => st.sysenter[1] = msr::sysenter_address(v),
        msr::index::SYSENTER_EIP => st.sysenter[2] = msr::sysenter_address(v),
        msr::index::TSC => host_set_tsc_offset(st, v.wrapping_sub(rdtsc())),
        // Stored only if the guest has it; the TSC does not move (KVM).
        msr::index::TSC_ADJUST => {
            if cpuid::has(&st.cpuid, 7, 1, 1) {
                st.msrs.tsc_adjust = v;
            }
        }
        msr::index::FS_BASE => st.segs[SEG_FS].base = v,
        msr::index::GS_BASE => st.segs[SEG_GS].base = v,
        _ => {
            if st.msrs.set(index, v) != Some(true) {
                return false;
            }
            clock_msr_written(st, index);
        }
    }
    true
}

/// A write of an MTRR (host or guest alike, as on KVM); `None` if `index`
/// is not one.
fn set_mtrr(st: &mut State, index: u32, v: u64) -> Option<bool> {
    if !mtrr::is_mtrr(index) {
        return None;
    }
    let maxphyaddr = cpuid::guest_cpu(&st.cpuid).maxphyaddr;
    st.msrs.mtrr.set(index, v, maxphyaddr)
}

/// After a write of MSR `index`: what the kvmclock owes the guest.
fn clock_msr_written(st: &mut State, index: u32) {
    match index {
        msr::index::KVM_SYSTEM_TIME | msr::index::KVM_SYSTEM_TIME_NEW => {
            st.clock.time_pending = true
        }
        msr::index::KVM_WALL_CLOCK | msr::index::KVM_WALL_CLOCK_NEW => st.clock.wall_pending = true,
        _ => {}
    }
}

/// Guest RDMSR inside the window; `None` means #GP (KVM's answer for an
/// MSR it does not know).
fn read_msr(w: &Window<'_>, st: &State, vm: &Vm, index: u32) -> Option<u64> {
    Some(match index {
        msr::index::PLATFORM_INFO if !vm.platform_info_readable() => return None,
        msr::index::EFER => w.read(field::GUEST_IA32_EFER),
        msr::index::SYSENTER_CS => w.read(field::GUEST_SYSENTER_CS),
        msr::index::SYSENTER_ESP => w.read(field::GUEST_SYSENTER_ESP),
        msr::index::SYSENTER_EIP => w.read(field::GUEST_SYSENTER_EIP),
        // SWAPGS changes it without an exit.
        msr::index::KERNEL_GS_BASE => w.guest_kernel_gs_base().unwrap_or(st.msrs.kernel_gs_base),
        // The guest's segment bases live in the VMCS while it runs.
        msr::index::FS_BASE => w.read(field::guest_seg(VMCS_FS).3),
        msr::index::GS_BASE => w.read(field::guest_seg(VMCS_GS).3),
        _ => return get_msr(st, index, false),
    })
}

/// Guest WRMSR inside the window; false means #GP. The APIC base is
/// read-only for the guest (no local APIC is emulated).
fn write_msr(w: &mut Window<'_>, st: &mut State, vm: &Vm, index: u32, v: u64) -> bool {
    if !pv_features(st).msr_allowed(index) {
        return false;
    }
    if let Some(ok) = st.msrs.mce.set(index, v, false) {
        return ok;
    }
    if let Some(ok) = set_mtrr(st, index, v) {
        return ok;
    }
    if msr::write_valid(index, v) != Some(true) {
        return false;
    }
    match index {
        msr::index::EFER => {
            let new = msr::guest_efer(w.read(field::GUEST_IA32_EFER), v);
            if !cpuid::guest_cpu(&st.cpuid).efer_valid(new) {
                return false;
            }
            w.write(field::GUEST_IA32_EFER, new);
            // NXE is part of the shadow pages' role (see `handle_fast`).
            st.efer = new;
            // SCE may have made the SYSCALL MSRs usable.
            load_lazy_state(w, st);
        }
        msr::index::APIC_BASE => return false,
        // Read-only for the guest (KVM).
        msr::index::PLATFORM_INFO => return false,
        msr::index::SYSENTER_CS => w.write(field::GUEST_SYSENTER_CS, v & 0xffff_ffff),
        msr::index::SYSENTER_ESP => w.write(field::GUEST_SYSENTER_ESP, msr::sysenter_address(v)),
        msr::index::SYSENTER_EIP => w.write(field::GUEST_SYSENTER_EIP, msr::sysenter_address(v)),
        // Asks for the revision to be latched: nothing to do (KVM).
        msr::index::UCODE_REV => {}
        msr::index::FS_BASE => w.write(field::guest_seg(VMCS_FS).3, v),
        msr::index::GS_BASE => w.write(field::guest_seg(VMCS_GS).3, v),
        // A guest write of the TSC moves TSC_ADJUST by as much (KVM).
        msr::index::TSC => {
            let offset = v.wrapping_sub(rdtsc());
            let adj = offset.wrapping_sub(st.msrs.tsc_offset);
            st.msrs.tsc_adjust = st.msrs.tsc_adjust.wrapping_add(adj);
            set_tsc_offset(w, st, offset);
        }
        // ... and a write of TSC_ADJUST moves the TSC (ignored if the
        // guest's CPUID lacks TSC_ADJUST, as KVM).
        msr::index::TSC_ADJUST => {
            if cpuid::has(&st.cpuid, 7, 1, 1) {
                let adj = v.wrapping_sub(st.msrs.tsc_adjust);
                st.msrs.tsc_adjust = v;
                set_tsc_offset(w, st, st.msrs.tsc_offset.wrapping_add(adj));
            }
        }
        // PMU bits read-only, EMON ignored; with MISC_ENABLE_NO_MWAIT
        // disabled, toggling MWAIT needs SSE3 in the guest's CPUID (KVM).
        msr::index::MISC_ENABLE => {
            let old = st.msrs.misc_enable;
            let Some(v) = msr::guest_misc_enable(old, v) else {
                return false;
            };
            if vm.quirk_disabled(abi::quirks::MISC_ENABLE_NO_MWAIT)
                && (old ^ v) & msr::MISC_ENABLE_MWAIT != 0
                && !cpuid::has(&st.cpuid, 1, 2, 0)
            {
                return false;
            }
            st.msrs.misc_enable = v;
        }
        msr::index::PAT => {
            st.msrs.pat = v;
            w.write_pat(v);
        }
        _ => {
            if st.msrs.set(index, v) != Some(true) {
                return false;
            }
            clock_msr_written(st, index);
            if let Some(i) = crate::vmx::window::SYSCALL_MSRS
                .iter()
                .position(|&m| m == index)
            {
                w.write_syscall_msr(i, v);
            }
        }
    }
    true
}

/// A guest TSC or TSC_ADJUST write moved the TSC: the VMCS offset follows
/// and the kvmclock page is rewritten before the guest runs on.
fn set_tsc_offset(w: &mut Window<'_>, st: &mut State, offset: u64) {
    st.msrs.tsc_offset = offset;
    w.write(field::TSC_OFFSET, offset);
    st.clock.time_pending = st.msrs.kvm_system_time & kvmclock::SYSTEM_TIME_ENABLE != 0;
}

/// MOV to or from DR0-DR7 (KVM's `handle_dr()`/`kvm_set_dr()` rules, with
/// MOV DR always exiting): #UD for DR4/DR5 with CR4.DE, #DB when DR7.GD is
/// set, #GP outside CPL 0 or for DR6/DR7 values with bits 63:32 set.
/// Outside 64-bit code the operand is 32 bits.
fn handle_dr(w: &mut Window<'_>, st: &mut State, g: &mut [u64; 16], e: &ExitInfo) -> Fast {
    let q = e.qualification;
    let cr4_de = w.read(field::CR4_READ_SHADOW) & CR4_DE != 0;
    let Some(dr) = debugreg::alias((q & 7) as u8, cr4_de) else {
        inject_exception(st, UD_VECTOR);
        return Fast::Resume;
    };
    // The debugger's general-detect breakpoint is its own (KVM's
    // `handle_dr()`): the exit handler reports it, RIP at the MOV.
    if st.hw_bp.is_some_and(|(_, dr7)| dr7 & debugreg::DR7_GD != 0) {
        st.dr_gd_exit = true;
        return Fast::Leave;
    }
    if st.debug.dr7 & debugreg::DR7_GD != 0 {
        // A fault: RIP stays; delivery clears GD.
        st.debug.dr6 = w.guest_dr6().unwrap_or(st.debug.dr6) | debugreg::DR6_BD;
        w.write_guest_dr(6, st.debug.dr6);
        st.debug.dr7 &= !debugreg::DR7_GD;
        w.write(field::GUEST_DR7, st.debug.dr7);
        inject_exception(st, DB_VECTOR);
        return Fast::Resume;
    }
    // CPL is SS.DPL.
    if (w.read(field::guest_seg(2).2) >> 5) & 3 != 0 {
        let protected = w.read(field::CR0_READ_SHADOW) & cr0::PE != 0;
        inject_gp(st, protected);
        return Fast::Resume;
    }
    let lma = w.read(field::GUEST_IA32_EFER) & efer::LMA != 0;
    let mask = rip_mask(lma, w.read(field::guest_seg(1).2) as u32);
    let n = ((q >> 8) & 0xf) as usize;
    if q & (1 << 4) != 0 {
        let v = match dr {
            0..=3 => st.debug.db[usize::from(dr)],
            6 => w.guest_dr6().unwrap_or(st.debug.dr6),
            _ => st.debug.dr7,
        } & mask;
        if n == RSP {
            w.write(field::GUEST_RSP, v);
        } else {
            g[n] = v;
        }
    } else {
        let v = if n == RSP {
            w.read(field::GUEST_RSP)
        } else {
            g[n]
        } & mask;
        match dr {
            0..=3 => {
                st.debug.db[usize::from(dr)] = v;
                // The CPU holds the debugger's DR0-DR3 under USE_HW_BP.
                if st.hw_bp.is_none() {
                    w.write_guest_dr(dr, v);
                }
            }
            _ if !debugreg::dr_valid(v) => {
                inject_gp(st, true);
                return Fast::Resume;
            }
            6 => {
                st.debug.dr6 = debugreg::guest_dr6(v);
                w.write_guest_dr(6, st.debug.dr6);
            }
            _ => {
                st.debug.dr7 = debugreg::guest_dr7(v);
                if st.hw_bp.is_none() {
                    w.write(field::GUEST_DR7, st.debug.dr7);
                    load_lazy_state(w, st);
                }
            }
        }
    }
    skip_in_window(w, e.insn_len);
    Fast::Resume
}

/// MOV to CR0/CR3/CR4/CR8, MOV from CR3/CR8, CLTS and LMSW (KVM's
/// `handle_cr()`/`kvm_set_cr0()`/`kvm_set_cr4()` rules), including entry to
/// and exit from IA-32e mode through CR0.PG with EFER.LME.
fn handle_cr(
    w: &mut Window<'_>,
    st: &mut State,
    g: &mut [u64; 16],
    e: &ExitInfo,
    vm: &Vm,
    apic: Option<&SpinLock<Apic>>,
) -> Fast {
    let gpr = |w: &Window<'_>, g: &[u64; 16], n: u8| {
        if usize::from(n) == RSP {
            w.read(field::GUEST_RSP)
        } else {
            g[usize::from(n)]
        }
    };
    let old = w.read(field::CR0_READ_SHADOW);
    let paged = old & cr0::PG != 0;
    let lma = paging::long_mode(st);
    let new_cr0 = match CrAccess::from_qualification(e.qualification) {
        CrAccess::ToCr { cr: 0, gpr: n } => gpr(w, g, n),
        CrAccess::ToCr { cr: 4, gpr: n } => {
            let v = gpr(w, g, n);
            let cpu = cpuid::guest_cpu(&st.cpuid);
            if v >> 32 != 0 || !cpu.cr4_valid(v) || (lma && v & CR4_PAE == 0) {
                inject_gp(st, old & cr0::PE != 0);
                return Fast::Resume;
            }
            let fixed0 = st_cr4_fixed0(w) & !CR4_PAE;
            w.write(field::CR4_READ_SHADOW, v);
            w.write(field::GUEST_CR4, hw_cr4(v, fixed0, paged));
            st.cr4 = v;
            skip_in_window(w, e.insn_len);
            // Paging-mode bits are part of the shadow pages' role.
            return if paged {
                switch_root(w, st, vm)
            } else {
                Fast::Resume
            };
        }
        CrAccess::ToCr { cr: 3, gpr: n } => {
            let v = if lma {
                gpr(w, g, n) & CR3_LONG_MASK
            } else {
                gpr(w, g, n) & 0xffff_ffff
            };
            skip_in_window(w, e.insn_len);
            if paged {
                // The hardware runs on the root that shadows the new table.
                st.cr3 = v;
                return switch_root(w, st, vm);
            }
            w.write(field::GUEST_CR3, v);
            return Fast::Resume;
        }
        CrAccess::FromCr { cr: 3, gpr: n } => {
            let v = if paged {
                st.cr3
            } else {
                w.read(field::GUEST_CR3)
            };
            if usize::from(n) == RSP {
                w.write(field::GUEST_RSP, v);
            } else {
                g[usize::from(n)] = v;
            }
            skip_in_window(w, e.insn_len);
            return Fast::Resume;
        }
        // CR8 is the TPR: the in-kernel APIC's, or the value user space
        // sees in `kvm_run.cr8`. Bits 63:4 set give #GP (KVM).
        CrAccess::ToCr { cr: 8, gpr: n } => {
            let v = gpr(w, g, n);
            if v & !0xf != 0 {
                inject_gp(st, true);
                return Fast::Resume;
            }
            st.cr8 = v;
            if let Some(apic) = apic {
                apic.lock().lapic.set_cr8(v);
            }
            skip_in_window(w, e.insn_len);
            return Fast::Resume;
        }
        CrAccess::FromCr { cr: 8, gpr: n } => {
            let v = apic.map_or(st.cr8, |a| a.lock().lapic.cr8());
            if usize::from(n) == RSP {
                w.write(field::GUEST_RSP, v);
            } else {
                g[usize::from(n)] = v;
            }
            skip_in_window(w, e.insn_len);
            return Fast::Resume;
        }
        CrAccess::Clts => old & !CR0_TS,
        // LMSW writes CR0[3:0] but cannot clear PE.
        CrAccess::Lmsw(src) => (old & !0xe) | (u64::from(src) & 0xf),
        _ => return Fast::Leave,
    };
    let v = new_cr0 | CR0_ET;
    // The upper half is reserved; KVM rejects set bits there, PG without
    // PE and NW without CD with #GP.
    if v >> 32 != 0
        || (v & cr0::PG != 0 && v & cr0::PE == 0)
        || (v & cr0::NW != 0 && v & cr0::CD == 0)
    {
        inject_gp(st, old & cr0::PE != 0);
        return Fast::Resume;
    }
    if (old ^ v) & cr0::PG != 0 {
        // Paging on with EFER.LME activates IA-32e mode (PAE required, and
        // not from a 64-bit code segment); paging off leaves it (not from
        // 64-bit code either).
        let cs_l = w.read(field::guest_seg(1).2) as u32 & AR_L != 0;
        let efer_now = w.read(field::GUEST_IA32_EFER);
        let new_efer = if v & cr0::PG != 0 && efer_now & efer::LME != 0 {
            if st.cr4 & CR4_PAE == 0 || cs_l {
                inject_gp(st, true);
                return Fast::Resume;
            }
            efer_now | efer::LMA
        } else if v & cr0::PG == 0 && lma {
            if cs_l {
                inject_gp(st, true);
                return Fast::Resume;
            }
            efer_now & !efer::LMA
        } else {
            efer_now
        };
        w.write(field::GUEST_IA32_EFER, new_efer);
        st.efer = new_efer;
    }
    w.write(field::CR0_READ_SHADOW, v);
    st.cr0 = v;
    skip_in_window(w, e.insn_len);
    if (old ^ v) & cr0::PG != 0 {
        // Paging turned on or off: the next window runs with the other
        // controls (EPT or shadow tables).
        return Fast::Reopen;
    }
    w.write(field::GUEST_CR0, hw_cr0(v));
    if paged && (old ^ v) & cr0::WP != 0 {
        return switch_root(w, st, vm);
    }
    Fast::Resume
}

/// CR3 bits a long-mode guest may load: the table address up to bit 51
/// and the PWT/PCD bits (bit 63, "no flush", needs PCIDE, not offered).
const CR3_LONG_MASK: u64 = 0x000f_ffff_ffff_ffff;

/// The CR4 bits VMX operation forces on (VMXE), from the VMCS's own view:
/// the hardware CR4 minus the guest's (PAE aside, which paging forces).
fn st_cr4_fixed0(w: &Window<'_>) -> u64 {
    w.read(field::GUEST_CR4) & !w.read(field::CR4_READ_SHADOW)
}

/// After a change of CR3 or of a control that is part of the shadow
/// pages' role: runs on the matching root at once if the vCPU holds it
/// (current or cached) and no root was invalidated since they were
/// checked; otherwise the window closes and the root is found or built
/// outside it.
fn switch_root(w: &mut Window<'_>, st: &mut State, vm: &Vm) -> Fast {
    if st.roots.epoch() == vm.roots_epoch() {
        if let Some(hpa) = st.roots.switch(paging::root_key(st)) {
            w.write(field::GUEST_CR3, hpa);
            return Fast::Resume;
        }
    }
    Fast::Reopen
}

/// Exits handled after the window closed.
fn handle_slow(vm: &Vm, st: &mut State, area: &RunArea<'_>, e: &ExitInfo) -> Result<Step> {
    if e.reason.entry_failed() {
        area.fail_entry(u64::from(e.reason.0), e.cpu);
        return Ok(Step::ToUser);
    }
    match e.reason.basic() {
        // The host took the interrupt when the window closed; the timer
        // only bounds the window.
        reason::EXTERNAL_INTERRUPT | reason::PREEMPTION_TIMER => Ok(Step::Continue),
        reason::TRIPLE_FAULT => {
            area.set_exit(kr::EXIT_SHUTDOWN);
            Ok(Step::ToUser)
        }
        reason::INTERRUPT_WINDOW => {
            area.set_exit(kr::EXIT_IRQ_WINDOW_OPEN);
            Ok(Step::ToUser)
        }
        reason::HLT if area.vcpu.has_apic => {
            // Waits in the kernel (`apic_events`) until an interrupt the
            // guest can take arrives.
            area.vcpu.stats.inc(VcpuStat::HaltExits);
            skip(st, e.insn_len);
            st.mp_state = abi::mp_state::HALTED;
            Ok(Step::Continue)
        }
        reason::HLT => {
            skip(st, e.insn_len);
            area.set_exit(kr::EXIT_HLT);
            Ok(Step::ToUser)
        }
        reason::RDMSR | reason::WRMSR => match core::mem::take(&mut st.user_msr) {
            0 => apic_msr(vm, st, area, e),
            why => Ok(user_msr_exit(st, area, e, why)),
        },
        reason::EXCEPTION_NMI if e.intr_info & 0xff == PF_VECTOR => {
            paging::handle_page_fault(vm, st, area, e)
        }
        reason::IO_INSTRUCTION => handle_io(vm, st, area, e),
        // Intercepted only for a debugger (KVM's `handle_exception_nmi()`):
        // with its breakpoints every #DB is its (DR6 from the
        // qualification); while only single-stepping, a trap-flag #DB
        // (DR6.BS) is the step and any other (a breakpoint of the guest's
        // own) goes back to the guest with its DR6 bits.
        reason::EXCEPTION_NMI if e.intr_info & 0xff == DB_VECTOR => {
            if st.hw_bp.is_some() || (st.single_step && e.qualification & DR6_BS != 0) {
                let dr6 = debugreg::DR6_RESET | (e.qualification & DR6_HIT_BITS);
                debug_exit(st, area, DB_VECTOR, Some(dr6));
                return Ok(Step::ToUser);
            }
            st.debug.dr6 = debugreg::DR6_RESET | (e.qualification & DR6_HIT_BITS);
            inject_exception(st, DB_VECTOR);
            Ok(Step::Continue)
        }
        // Intercepted only with USE_SW_BP: the debugger's INT3, RIP still
        // at it (KVM leaves `debug.arch.dr6`/`dr7` as they were).
        reason::EXCEPTION_NMI if e.intr_info & 0xff == BP_VECTOR => {
            st.bp_insn_len = e.insn_len as u32;
            debug_exit(st, area, BP_VECTOR, None);
            Ok(Step::ToUser)
        }
        reason::DR_ACCESS if core::mem::take(&mut st.dr_gd_exit) => {
            debug_exit(
                st,
                area,
                DB_VECTOR,
                Some(debugreg::DR6_RESET | debugreg::DR6_BD),
            );
            Ok(Step::ToUser)
        }
        reason::EPT_VIOLATION => handle_ept_violation(vm, st, area, e),
        _ => {
            area.internal_error(
                kr::INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
                &[u64::from(e.reason.0), u64::from(e.cpu)],
            );
            Ok(Step::ToUser)
        }
    }
}

/// `KVM_EXIT_DEBUG` as KVM reports one: the exception, the linear RIP,
/// and for #DB its DR6 and the DR7 the CPU held.
fn debug_exit(st: &State, area: &RunArea<'_>, exception: u32, dr6: Option<u64>) {
    area.set_exit(kr::EXIT_DEBUG);
    area.write(kr::DEBUG_EXCEPTION, &exception.to_ne_bytes());
    let pc = st.segs[SEG_CS].base.wrapping_add(st.regs.rip);
    area.write(kr::DEBUG_PC, &pc.to_ne_bytes());
    if let Some(dr6) = dr6 {
        area.write(kr::DEBUG_DR6, &dr6.to_ne_bytes());
        area.write(kr::DEBUG_DR7, &eff_dr7(st).to_ne_bytes());
    }
}

/// `KVM_EXIT_DEBUG` for a completed single step: DR6 with BS set.
fn step_exit(st: &State, area: &RunArea<'_>) {
    debug_exit(st, area, DB_VECTOR, Some(debugreg::DR6_RESET | DR6_BS));
}

/// Writes the kvmclock structures the guest is owed (see `ClockState`),
/// each with KVM's protocol: an odd version, the data, an even version.
/// An address no slot backs is not written, as on KVM.
fn update_clock(vm: &Vm, st: &mut State) {
    let epoch = vm.clock_epoch();
    if st.clock.epoch != epoch {
        st.clock.epoch = epoch;
        st.clock.time_pending = true;
    }
    if core::mem::take(&mut st.clock.wall_pending) && st.msrs.kvm_wall_clock != 0 {
        let gpa = st.msrs.kvm_wall_clock;
        let v = st.clock.wall_version | 1;
        let (clock, real, _) = vm.clock_now();
        let data = kvmclock::wall_clock(v.wrapping_add(1), real, clock);
        if vm.write_guest(gpa, &v.to_le_bytes()).is_ok() {
            let _ = vm.write_guest(gpa + 4, &data[4..]);
            let _ = vm.write_guest(gpa, &data[..4]);
            st.clock.wall_version = v.wrapping_add(1);
        }
    }
    if core::mem::take(&mut st.clock.time_pending)
        && st.msrs.kvm_system_time & kvmclock::SYSTEM_TIME_ENABLE != 0
    {
        let gpa = st.msrs.kvm_system_time & !kvmclock::SYSTEM_TIME_ENABLE;
        let v = st.clock.version | 1;
        let (clock, _, tsc) = vm.clock_now();
        let (mul, shift) = kvmclock::scale(u64::from(shim::tsc_khz()) * 1000);
        let guest_tsc = tsc.wrapping_add(st.msrs.tsc_offset);
        let data = kvmclock::time_info(v.wrapping_add(1), guest_tsc, clock, mul, shift);
        if vm.write_guest(gpa, &v.to_le_bytes()).is_ok() {
            let _ = vm.write_guest(gpa + 4, &data[4..]);
            let _ = vm.write_guest(gpa, &data[..4]);
            st.clock.version = v.wrapping_add(1);
        }
    }
}

/// Reports an instruction rkvm cannot emulate, with its bytes if it read
/// them (KVM's `emulation_failure` layout, `kvm_run::emulation_failure_data`).
/// The guest is left as it was: no #UD is queued (KVM queues one unless
/// `KVM_CAP_EXIT_ON_EMULATION_FAILURE` is on, which rkvm behaves as).
fn emulation_failure(area: &RunArea<'_>, bytes: &[u8]) {
    if bytes.is_empty() {
        area.internal_error(kr::INTERNAL_ERROR_EMULATION, &[0]);
        return;
    }
    let [flags, lo, hi] = kr::emulation_failure_data(bytes);
    area.internal_error(kr::INTERNAL_ERROR_EMULATION, &[flags, lo, hi]);
}

/// Port I/O: KVM_EXIT_IO with the data in the PIO page.
fn handle_io(vm: &Vm, st: &mut State, area: &RunArea<'_>, e: &ExitInfo) -> Result<Step> {
    let Some(io) = IoExit::from_qualification(e.qualification) else {
        emulation_failure(area, &[]);
        return Ok(Step::ToUser);
    };
    let dir = if io.input { kr::IO_IN } else { kr::IO_OUT };
    if !io.string {
        if io.input {
            st.pending = Pending::PioIn { size: io.size };
        } else {
            let v = reg(st, RAX) & size_mask(io.size);
            // An ioeventfd or a coalesced zone takes the write: no exit
            // (KVM's kernel_pio()).
            if vm.kernel_write(true, u64::from(io.port), u32::from(io.size), v) {
                skip(st, e.insn_len);
                return Ok(Step::Continue);
            }
            area.pio_write(&v.to_le_bytes()[..usize::from(io.size)]);
        }
        // KVM advances RIP before the exit for both directions.
        skip(st, e.insn_len);
        area.io(dir, io.size, io.port, 1);
        return Ok(Step::ToUser);
    }

    let caps = vm.caps();
    let cs_32 = st.segs[SEG_CS].ar & AR_DB != 0;
    let (addr_bytes, seg_vmcs) = if caps.ins_outs_info {
        let a = match (e.insn_info >> 7) & 7 {
            0 => 2,
            1 => 4,
            _ => 8,
        };
        (a, (e.insn_info >> 15) & 7)
    } else {
        (if cs_32 { 4 } else { 2 }, 3)
    };
    // INS always writes through ES.
    let seg_vmcs = if io.input { 0 } else { seg_vmcs as usize };
    let seg_base = st.segs[VMCS_TO_STATE[seg_vmcs & 7]].base;
    let mask = pio::addr_mask(addr_bytes);
    let index_reg = if io.input { RDI } else { RSI };
    let offset = reg(st, index_reg) & mask;
    let remaining = if io.rep { reg(st, RCX) & mask } else { 1 };
    if remaining == 0 {
        skip(st, e.insn_len);
        return Ok(Step::Continue);
    }
    let size = u64::from(io.size);
    let df = st.regs.rflags & RFLAGS_DF != 0;
    let Some(chunk) = pio::plan(seg_base, offset, mask, size, df, remaining) else {
        emulation_failure(area, &[]);
        return Ok(Step::ToUser);
    };
    let mut low = if paging::long_mode(st) {
        chunk.low
    } else {
        chunk.low & 0xffff_ffff
    };
    if st.cr0 & cr0::PG != 0 {
        // The run lies in one page: translate its lowest byte.
        let kind = if io.input { Kind::Write } else { Kind::Read };
        let Some(gpa) = paging::translate(vm, st, low, kind) else {
            emulation_failure(area, &[]);
            return Ok(Step::ToUser);
        };
        low = gpa;
    }
    let s = StringIo {
        low,
        count: chunk.count,
        size,
        df,
        rep: io.rep,
        addr_bytes,
        insn_len: e.insn_len,
    };
    if io.input {
        st.pending = Pending::Ins(s);
    } else {
        let mut buf = KVec::from_elem(0u8, s.bytes(), GFP_KERNEL)?;
        if vm.read_guest(s.low, &mut buf).is_err() {
            emulation_failure(area, &[]);
            return Ok(Step::ToUser);
        }
        if df {
            reverse_elements(&mut buf, s.size);
        }
        area.pio_write(&buf);
        s.advance(st, RSI);
    }
    area.io(dir, io.size, io.port, chunk.count as u32);
    Ok(Step::ToUser)
}

/// One step of a string I/O instruction (see [`pio::plan`]).
#[derive(Clone, Copy)]
pub(super) struct StringIo {
    /// Lowest guest-physical byte of the run.
    low: u64,
    count: u64,
    size: u64,
    df: bool,
    rep: bool,
    addr_bytes: u8,
    insn_len: u64,
}

impl StringIo {
    fn bytes(&self) -> usize {
        (self.count * self.size) as usize
    }

    /// Moves the index register (and RCX for REP) past this step; skips
    /// the instruction when it is complete.
    fn advance(&self, st: &mut State, index_reg: usize) {
        let mask = pio::addr_mask(self.addr_bytes);
        let delta = self.count * self.size;
        let old = reg(st, index_reg);
        let moved = if self.df {
            old.wrapping_sub(delta)
        } else {
            old.wrapping_add(delta)
        } & mask;
        set_reg(st, index_reg, pio::set_index(old, moved, self.addr_bytes));
        let done = if self.rep {
            let rcx = reg(st, RCX);
            let left = (rcx & mask) - self.count;
            set_reg(st, RCX, pio::set_index(rcx, left, self.addr_bytes));
            left == 0
        } else {
            true
        };
        if done {
            skip(st, self.insn_len);
        }
    }
}

/// Reverses the order of `size`-byte elements (DF=1 runs are stored from
/// the highest address down).
fn reverse_elements(buf: &mut [u8], size: u64) {
    let size = size as usize;
    if size == 0 {
        return;
    }
    // Reversing all bytes reverses the elements and each element's bytes;
    // reversing each element again restores them.
    buf.reverse();
    for element in buf.chunks_exact_mut(size) {
        element.reverse();
    }
}

/// EPT violation: map the slot page it hit, or emulate the MMIO access.
/// A write to a read-only slot is emulated as an MMIO write, as in KVM.
fn handle_ept_violation(vm: &Vm, st: &mut State, area: &RunArea<'_>, e: &ExitInfo) -> Result<Step> {
    let q = EptViolation::from_qualification(e.qualification);
    match vm.map_gfn(e.gpa >> 12, q.write)? {
        Map::Mapped | Map::Retry => return Ok(Step::Continue),
        Map::ReadOnly if !q.write => return Ok(Step::Continue),
        Map::ReadOnly | Map::NoSlot => {}
    }
    if vectoring_exit(area, e, e.gpa) {
        return Ok(Step::ToUser);
    }
    if q.fetch {
        emulation_failure(area, &[]);
        return Ok(Step::ToUser);
    }
    emulate_mmio(vm, st, area, e.gpa)
}

/// An access to be emulated hit while the CPU was delivering an event (the
/// IDT, GDT or stack is MMIO): nothing at RIP did it, so exit with
/// KVM_INTERNAL_ERROR_DELIVERY_EV in KVM's layout
/// (`kvm_prepare_event_vectoring_exit()`).
fn vectoring_exit(area: &RunArea<'_>, e: &ExitInfo, addr: u64) -> bool {
    if e.idt_vectoring & EVENT_VALID == 0 {
        return false;
    }
    area.internal_error(
        kr::INTERNAL_ERROR_DELIVERY_EV,
        &[
            u64::from(e.idt_vectoring),
            u64::from(e.reason.0),
            e.qualification,
            addr,
            u64::from(e.cpu),
        ],
    );
    true
}

/// Emulates the instruction at CS:RIP, which accessed `gpa` that no slot
/// backs, through a `KVM_EXIT_MMIO`.
fn emulate_mmio(vm: &Vm, st: &mut State, area: &RunArea<'_>, gpa: u64) -> Result<Step> {
    let (bytes, n, insn) = fetch_insn(vm, st);
    let Some(insn) = insn else {
        emulation_failure(area, &bytes[..n]);
        return Ok(Step::ToUser);
    };
    let apic_page = st.apic_base & !0xfff & ((1 << 52) - 1);
    if area.vcpu.has_apic && gpa & !0xfff == apic_page {
        return xapic_mmio(vm, st, area, &insn, (gpa & 0xfff) as u32);
    }
    match store_value(st, &insn) {
        Some(v) => {
            let v = v & size_mask(insn.size);
            skip(st, u64::from(insn.len));
            if vm.kernel_write(false, gpa, u32::from(insn.size), v) {
                return Ok(Step::Continue);
            }
            area.mmio(gpa, v, insn.size, true);
        }
        None => {
            area.mmio(gpa, 0, insn.size, false);
            st.pending = Pending::MmioLoad(insn);
        }
    }
    Ok(Step::ToUser)
}

/// The value a decoded store writes (the source register, AH..BH shifted
/// down, or the immediate); `None` for a load.
fn store_value(st: &State, insn: &decode::Insn) -> Option<u64> {
    match insn.access {
        Access::StoreReg(r) => {
            let v = reg(st, usize::from(r.num));
            Some(if r.high_byte { v >> 8 } else { v })
        }
        Access::StoreImm(v) => Some(v),
        Access::Load { .. } => None,
    }
}

/// The instruction at CS:RIP: its bytes, how many could be fetched, and
/// its decoding if it is one the decoder knows.
fn fetch_insn(vm: &Vm, st: &State) -> ([u8; decode::MAX_LEN], usize, Option<decode::Insn>) {
    let cs = &st.segs[SEG_CS];
    let lma = paging::long_mode(st);
    let code64 = rip_mask(lma, cs.ar) == u64::MAX;
    // 64-bit code ignores the CS base.
    let lin = if code64 {
        st.regs.rip
    } else {
        cs.base.wrapping_add(st.regs.rip) & 0xffff_ffff
    };
    let mut bytes = [0u8; decode::MAX_LEN];
    let n = if st.cr0 & cr0::PG != 0 {
        vm.fetch(lin, &mut bytes, |la| {
            paging::translate(vm, st, la, Kind::Fetch)
        })
    } else {
        vm.fetch(lin, &mut bytes, Some)
    };
    let mode = if code64 {
        Mode::Bits64
    } else if cs.ar & AR_DB != 0 {
        Mode::Bits32
    } else {
        Mode::Bits16
    };
    let insn = (n > 0)
        .then(|| decode::decode(bytes.get(..n).unwrap_or(&[]), mode).ok())
        .flatten();
    (bytes, n, insn)
}

fn size_mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * u32::from(size))) - 1
    }
}

/// Finishes the I/O user space has just served (KVM's
/// `complete_userspace_io`).
fn complete_pending(vm: &Vm, st: &mut State, area: &RunArea<'_>) -> Result {
    match core::mem::take(&mut st.pending) {
        Pending::None => {}
        Pending::PioIn { size } => {
            let mut data = [0u8; 8];
            area.pio_read(&mut data[..usize::from(size)]);
            let v = u64::from_le_bytes(data);
            // A 4-byte IN zero-extends into RAX; narrower ones merge.
            let rax = match size {
                4 => v,
                _ => (reg(st, RAX) & !size_mask(size)) | v,
            };
            set_reg(st, RAX, rax);
        }
        Pending::Ins(mut s) => {
            // User space may have lowered RCX: move at most RCX elements,
            // as KVM's pio_in_emulated() does (n = min(.., RCX)).
            if s.rep {
                let left = reg(st, RCX) & pio::addr_mask(s.addr_bytes);
                if left == 0 {
                    skip(st, s.insn_len);
                    return Ok(());
                }
                if left < s.count {
                    if s.df {
                        s.low += (s.count - left) * s.size;
                    }
                    s.count = left;
                }
            }
            let mut buf = KVec::from_elem(0u8, s.bytes(), GFP_KERNEL)?;
            area.pio_read(&mut buf);
            if s.df {
                reverse_elements(&mut buf, s.size);
            }
            vm.write_guest(s.low, &buf)?;
            s.advance(st, RDI);
        }
        Pending::MmioLoad(insn) => complete_mmio_load(st, area, &insn),
        // KVM's `complete_fast_rdmsr()`/`complete_fast_msr_access()`: an
        // error is #GP; else a read loads EDX:EAX, and the instruction is
        // done.
        Pending::Msr { write, insn_len } => {
            let mut error = [0u8];
            area.read(kr::MSR_ERROR, &mut error);
            if error[0] != 0 {
                inject_gp(st, st.cr0 & cr0::PE != 0);
                return Ok(());
            }
            if !write {
                let mut data = [0u8; 8];
                area.read(kr::MSR_DATA, &mut data);
                let v = u64::from_ne_bytes(data);
                set_reg(st, RAX, v & 0xffff_ffff);
                set_reg(st, RDX, v >> 32);
            }
            skip(st, u64::from(insn_len));
        }
    }
    Ok(())
}

fn complete_mmio_load(st: &mut State, area: &RunArea<'_>, insn: &Insn) {
    let mut data = [0u8; 8];
    area.read(kr::MMIO_DATA, &mut data);
    load_register(st, insn, u64::from_le_bytes(data));
    skip(st, u64::from(insn.len));
}

/// Puts `value`, read by the decoded load `insn`, into its destination
/// register (with the load's width and extension).
fn load_register(st: &mut State, insn: &Insn, value: u64) {
    if let Access::Load { dst, .. } = insn.access {
        let n = usize::from(dst.num);
        let v = decode::apply_load(reg(st, n), value, insn);
        set_reg(st, n, v);
    }
}

/// Guest memory through the VMM's mapping of a slot.
impl Vm {
    /// Copies guest-physical `[gpa, gpa + buf.len())`, which must lie in
    /// one slot, into `buf`.
    pub(crate) fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> Result {
        let hva = self.gpa_to_hva(gpa, buf.len() as u64).ok_or(EFAULT)?;
        UserSlice::new(UserPtr::from_addr(hva as usize), buf.len())
            .reader()
            .read_slice(buf)
    }

    /// Copies `buf` to guest-physical `gpa` (one slot).
    pub(crate) fn write_guest(&self, gpa: u64, buf: &[u8]) -> Result {
        let (slot, hva) = self.gpa_slot(gpa, buf.len() as u64).ok_or(EFAULT)?;
        UserSlice::new(UserPtr::from_addr(hva as usize), buf.len())
            .writer()
            .write_slice(buf)?;
        // One slot holds it all: only a logging slot needs the dirty log.
        if slot.logs_dirty() {
            self.mark_dirty(gpa, buf.len() as u64)?;
        }
        Ok(())
    }

    /// Reads up to `buf.len()` instruction bytes at guest address `la`,
    /// page by page, each page through `translate` (the identity for
    /// unpaged guests); returns how many could be read.
    fn fetch(&self, la: u64, buf: &mut [u8], translate: impl Fn(u64) -> Option<u64>) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let at = la + done as u64;
            let n = (buf.len() - done).min(4096 - (at & 0xfff) as usize);
            let Some(gpa) = translate(at) else {
                break;
            };
            if self.read_guest(gpa, &mut buf[done..done + n]).is_err() {
                break;
            }
            done += n;
        }
        done
    }
}

/// The host's monotonic clock in ns: the time base of the APIC timers.
pub(super) fn now_ns() -> u64 {
    shim::clock_read().0
}

fn is_x2apic_msr(index: u32) -> bool {
    (lapic::X2APIC_MSR..=lapic::X2APIC_MSR_LAST).contains(&index)
}

/// What the APIC has for the vCPU before it runs (outside the window, may
/// sleep): its timer, NMIs, INIT and SIPI; then, while the vCPU is halted
/// or waits for SIPI, sleeps until that changes. Returns false when a
/// signal ended the wait (the vCPU stays in its state, as on KVM).
/// Model: `kvm_apic_accept_events()` and `vcpu_block()` in KVM.
fn apic_events(vcpu: &Vcpu, st: &mut State) -> bool {
    use abi::mp_state::*;
    let mut a = vcpu.apic.lock();
    loop {
        let now = now_ns();
        a.lapic.poll_timer(now);
        if core::mem::take(&mut a.nmi) {
            st.nmi = true;
        }
        if core::mem::take(&mut a.init) {
            st.init();
            a.lapic.reset(true);
            a.sipi = None;
            // KVM: the BSP (IA32_APIC_BASE.BSP) runs again from the
            // reset vector; the others wait for SIPI.
            st.mp_state = if st.apic_base & lapic::BASE_BSP != 0 {
                RUNNABLE
            } else {
                INIT_RECEIVED
            };
        }
        if let Some(v) = a.sipi.take() {
            if st.mp_state == INIT_RECEIVED {
                st.sipi(v);
                st.mp_state = RUNNABLE;
            }
        }
        let wake = match st.mp_state {
            HALTED => {
                st.nmi
                    || st.irq.is_some()
                    || (st.regs.rflags & RFLAGS_IF != 0 && a.lapic.pending().is_some())
            }
            UNINITIALIZED | INIT_RECEIVED => false,
            _ => true,
        };
        if wake {
            if st.mp_state == HALTED {
                st.mp_state = RUNNABLE;
            }
            return true;
        }
        let jiffies = match a.lapic.deadline() {
            Some(d) => {
                let ms = d.saturating_sub(now).div_ceil(1_000_000);
                kernel::time::msecs_to_jiffies(ms.clamp(1, u64::from(u32::MAX)) as u32)
            }
            None => kernel::time::Jiffies::MAX,
        };
        if let CondVarTimeoutResult::Signal { .. } =
            vcpu.wake_up.wait_interruptible_timeout(&mut a, jiffies)
        {
            return false;
        }
    }
}

/// A guest RDMSR or WRMSR of an x2APIC register or IA32_APIC_BASE with an
/// in-kernel APIC (left the window in `handle_msr`). What the APIC
/// refuses is #GP or user space's (`apic_msr_refused`).
fn apic_msr(vm: &Vm, st: &mut State, area: &RunArea<'_>, e: &ExitInfo) -> Result<Step> {
    let vcpu = area.vcpu;
    let index = st.regs.rcx as u32;
    let write = e.reason.basic() == reason::WRMSR;
    let value = (st.regs.rdx << 32) | (st.regs.rax & 0xffff_ffff);
    if index == msr::index::APIC_BASE {
        if write {
            let cpu = cpuid::guest_cpu(&st.cpuid);
            if !cpu.apic_base_valid(value)
                || !lapic::base_change_valid(st.apic_base, value, cpu.x2apic)
            {
                return apic_msr_refused(vm, st, area, e);
            }
            st.apic_base = value;
            vcpu.apic_base_changed(value);
        } else {
            set_reg(st, RAX, st.apic_base & 0xffff_ffff);
            set_reg(st, RDX, st.apic_base >> 32);
        }
        skip(st, e.insn_len);
        return Ok(Step::Continue);
    }
    let now = now_ns();
    let effect = {
        let mut a = vcpu.apic.lock();
        if write {
            a.lapic.msr_write(index, value, now)
        } else {
            a.lapic.msr_read(index, now).map(|v| {
                set_reg(st, RAX, v & 0xffff_ffff);
                set_reg(st, RDX, v >> 32);
                lapic::Effect::None
            })
        }
    };
    match effect {
        Ok(effect) => {
            skip(st, e.insn_len);
            Ok(apic_effect(vm, area, effect))
        }
        Err(lapic::Invalid) => apic_msr_refused(vm, st, area, e),
    }
}

/// An APIC MSR access the APIC refused: user space's if it asked for
/// KVM_MSR_EXIT_REASON_INVAL, else #GP.
fn apic_msr_refused(vm: &Vm, st: &mut State, area: &RunArea<'_>, e: &ExitInfo) -> Result<Step> {
    if vm.user_space_msr(msr_filter::reason::INVAL) {
        return Ok(user_msr_exit(st, area, e, msr_filter::reason::INVAL));
    }
    inject_gp(st, st.cr0 & cr0::PE != 0);
    Ok(Step::Continue)
}

/// An xAPIC MMIO access at `offset` in the APIC page, emulated in the
/// kernel. In x2APIC mode or with the APIC disabled the page reads all
/// ones and ignores writes (KVM's default LAPIC_MMIO_HOLE quirk).
fn xapic_mmio(
    vm: &Vm,
    st: &mut State,
    area: &RunArea<'_>,
    insn: &Insn,
    offset: u32,
) -> Result<Step> {
    let vcpu = area.vcpu;
    let now = now_ns();
    let len = u32::from(insn.size);
    let effect = {
        let mut a = vcpu.apic.lock();
        let live = a.lapic.mode() == lapic::ApicMode::XApic;
        match store_value(st, insn) {
            Some(v) if live => a
                .lapic
                .mmio_write(offset, len, v & size_mask(insn.size), now),
            Some(_) => lapic::Effect::None,
            None => {
                let v = if live {
                    a.lapic.mmio_read(offset, len, now)
                } else {
                    u64::MAX
                };
                load_register(st, insn, v & size_mask(insn.size));
                lapic::Effect::None
            }
        }
    };
    skip(st, u64::from(insn.len));
    Ok(apic_effect(vm, area, effect))
}

/// Carries out what an APIC register write asked for: an IPI goes to its
/// destinations; an EOI of a vector that a level-triggered MSI route of
/// user space's I/O APIC sends to this vCPU ends the run with
/// KVM_EXIT_IOAPIC_EOI (KVM's `kvm_ioapic_send_eoi()`: the route decides,
/// not how the interrupt was accepted).
fn apic_effect(vm: &Vm, area: &RunArea<'_>, effect: lapic::Effect) -> Step {
    let vcpu = area.vcpu;
    match effect {
        lapic::Effect::None => Step::Continue,
        lapic::Effect::Ipi(msg) => {
            vm.deliver(msg, Some(vcpu.index()));
            Step::Continue
        }
        lapic::Effect::Eoi { vector } => {
            if vm.eoi_exits(vcpu, vector) {
                area.set_exit(kr::EXIT_IOAPIC_EOI);
                area.write(kr::EOI_VECTOR, &[vector]);
                Step::ToUser
            } else {
                Step::Continue
            }
        }
    }
}
