// SPDX-License-Identifier: GPL-2.0

//! A virtual CPU: its architectural state, its `kvm_run` area, and the vCPU
//! fd through which the VMM drives it.
//!
//! The state is kept in VMCS form (segments as base/limit/selector/access
//! rights), so what `KVM_GET_SREGS` returns after `KVM_SET_SREGS` is what
//! KVM returns. The reset state is KVM's (`kvm_vcpu_reset()` in
//! `arch/x86/kvm/x86.c`, `vmx_vcpu_reset()` in `arch/x86/kvm/vmx/vmx.c`).

mod run;

use core::mem::MaybeUninit;

use kernel::ffi::c_int;

use kernel::{
    bindings, new_condvar, new_mutex, new_spinlock,
    page::Page,
    prelude::*,
    sync::{
        Arc,
        ArcBorrow,
        CondVar,
        Mutex,
        SpinLock, //
    },
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::{
    abi::{
        self,
        KvmCpuid2,
        KvmCpuidEntry2,
        KvmDtable,
        KvmRegs,
        KvmSegment,
        KvmSregs, //
    },
    fd,
    vm::Vm,
    vmx::window::VmxPages,
    x86::{
        cpuid, debugreg,
        decode::Insn,
        lapic::{
            self,
            Lapic, //
        },
        mce, msr,
        segment::{
            self,
            Segment, //
        },
        xsave,
    },
};

static VCPU_FOPS: fd::Fops = fd::fops::<VcpuFd>(Some(mmap));

/// CR4.MCE.
const CR4_MCE: u64 = 1 << 6;
/// RFLAGS bit 1, always set.
const RFLAGS_FIXED: u64 = 1 << 1;
/// CR0 at reset: ET, NW, CD.
const RESET_CR0: u64 = 0x6000_0010;
/// RDX at reset without guest CPUID: family 6 (KVM's default).
const RESET_RDX: u64 = 0x600;
/// IA32_APIC_BASE at reset: the default base, globally enabled; the boot
/// CPU (`KVM_SET_BOOT_CPU_ID`, vCPU 0 by default) also has BSP set.
const RESET_APIC_BASE: u64 = 0xfee0_0000 | 1 << 11;
const APIC_BASE_BSP: u64 = lapic::BASE_BSP;

/// A descriptor table register.
#[derive(Clone, Copy, Default)]
struct Dtable {
    base: u64,
    limit: u16,
}

/// Architectural state that `KVM_GET/SET_REGS` and `KVM_GET/SET_SREGS` see.
struct State {
    regs: KvmRegs,
    /// CS, DS, ES, FS, GS, SS, TR, LDTR: the order of `struct kvm_sregs`.
    segs: [Segment; 8],
    gdt: Dtable,
    idt: Dtable,
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    cr8: u64,
    efer: u64,
    apic_base: u64,
    /// The guest's CPUID, as set by `KVM_SET_CPUID2`; the features it
    /// grants decide which SREGS values are valid.
    cpuid: KVec<cpuid::Entry>,
    /// IA32_SYSENTER_CS, _ESP, _EIP.
    sysenter: [u64; 3],
    /// The VMCS interruptibility state (STI/MOV-SS blocking) between runs.
    interruptibility: u32,
    /// An event to inject on the next entry (re-delivery of one an exit
    /// interrupted, or an exception rkvm raises).
    pending_event: Option<Event>,
    /// I/O that user space is serving; completed by the next `KVM_RUN`.
    pending: Pending,
    /// Set in the VMX window when a guest RDMSR/WRMSR was refused for a
    /// reason user space handles (`x86::msr_filter::reason`); the exit
    /// handler outside the window takes it (0: none).
    user_msr: u32,
    /// The vCPU has entered the guest at least once.
    ran: bool,
    /// An external interrupt queued by `KVM_INTERRUPT`, injected as soon as
    /// the guest can take it.
    irq: Option<u8>,
    /// An NMI queued by `KVM_NMI`.
    nmi: bool,
    /// MSRs rkvm stores itself (STAR, LSTAR, PAT, the TSC offset, ...).
    msrs: msr::Msrs,
    /// `KVM_CAP_ENFORCE_PV_FEATURE_CPUID` (vCPU `KVM_ENABLE_CAP`): the
    /// paravirtual MSRs and hypercalls need their CPUID feature bit.
    pv_enforce: bool,
    /// DR0-DR3, DR6, DR7 (DR7 is also in the VMCS while the guest runs).
    debug: debugreg::DebugRegs,
    /// XCR0 (1: XSAVE is not offered, the guest cannot change it).
    xcr0: u64,
    /// `KVM_X86_SET_MCE` found an uncorrected error the guest cannot take:
    /// the next `KVM_RUN` ends in `KVM_EXIT_SHUTDOWN` (KVM's
    /// `KVM_REQ_TRIPLE_FAULT`).
    triple_fault: bool,
    /// The shadow roots of a paged guest.
    roots: crate::mmu::shadow::Roots,
    /// The last guest page-table write that could not be emulated (RIP,
    /// gfn): the table was unprotected and the write retried once.
    last_unprotect: Option<(u64, u64)>,
    /// `KVM_GUESTDBG_SINGLESTEP` is on: the guest runs with RFLAGS.TF set
    /// and #DB intercepted, and every instruction ends in
    /// `KVM_EXIT_DEBUG`.
    single_step: bool,
    /// `KVM_GUESTDBG_USE_SW_BP`: #BP is intercepted and ends `KVM_RUN`
    /// with `KVM_EXIT_DEBUG`.
    sw_bp: bool,
    /// `KVM_GUESTDBG_USE_HW_BP`: the debugger's DR0-DR3 and DR7, which the
    /// CPU holds while the guest runs instead of the guest's own (`debug`,
    /// which MOV DR and `KVM_GET/SET_DEBUGREGS` still see); #DB exits.
    hw_bp: Option<([u64; 4], u64)>,
    /// `KVM_GUESTDBG_BLOCKIRQ`: no interrupt or NMI is injected.
    block_irq: bool,
    /// The length of the instruction whose #BP last exited (KVM's
    /// `event_exit_inst_len`): `KVM_GUESTDBG_INJECT_BP` injects #BP as
    /// that instruction's.
    bp_insn_len: u32,
    /// A guest MOV DR found the debugger's DR7.GD set in the window: the
    /// exit handler ends `KVM_RUN` with `KVM_EXIT_DEBUG` (DR6.BD).
    dr_gd_exit: bool,
    /// rkvm completed a guest instruction itself (emulated or skipped it)
    /// since the last check; with `single_step`, that ends a step too.
    stepped: bool,
    /// The kvmclock pages this vCPU owes the guest.
    clock: ClockState,
    /// The in-kernel APIC has an interrupt the guest cannot take yet: an
    /// interrupt window is open for it (set in each window's entry).
    apic_window: bool,
    /// `KVM_MP_STATE_*`: RUNNABLE, or (with an in-kernel APIC) waiting
    /// for INIT/SIPI or halted; `KVM_RUN` then waits in the kernel.
    mp_state: u32,
}

/// What is left to write of the guest's kvmclock structures.
#[derive(Default)]
struct ClockState {
    /// MSR_KVM_SYSTEM_TIME or the TSC changed: rewrite the
    /// `pvclock_vcpu_time_info`.
    time_pending: bool,
    /// MSR_KVM_WALL_CLOCK was written: write the `pvclock_wall_clock`.
    wall_pending: bool,
    /// The VM's clock epoch the time info was written in.
    epoch: u64,
    /// The version field last written (odd while an update is under way).
    version: u32,
    /// The same for the wall clock.
    wall_version: u32,
}

/// An event for the VM-entry interruption-information fields.
#[derive(Clone, Copy)]
struct Event {
    info: u32,
    error_code: u32,
    insn_len: u32,
}

/// I/O handed to user space whose result the next `KVM_RUN` applies.
#[derive(Default)]
enum Pending {
    #[default]
    None,
    /// IN of `size` bytes into RAX.
    PioIn { size: u8 },
    /// One step of INS.
    Ins(run::StringIo),
    /// An MMIO load into a register.
    MmioLoad(Insn),
    /// A RDMSR (into EDX:EAX) or WRMSR of `insn_len` bytes user space
    /// handles (`KVM_EXIT_X86_RDMSR`/`WRMSR`).
    Msr { write: bool, insn_len: u8 },
}

const SEG_CS: usize = 0;
const SEG_TR: usize = 6;
const SEG_LDT: usize = 7;

impl State {
    /// The state of a vCPU after power-on (KVM's RESET); `bsp`: it is the
    /// VM's boot CPU.
    fn reset(bsp: bool) -> Self {
        let data = Segment {
            base: 0,
            limit: 0xffff,
            selector: 0,
            ar: segment::RESET_DATA_AR,
        };
        let mut segs = [data; 8];
        segs[SEG_CS] = Segment {
            base: 0xffff_0000,
            selector: 0xf000,
            ar: segment::RESET_CODE_AR,
            ..data
        };
        segs[SEG_TR].ar = segment::RESET_TR_AR;
        segs[SEG_LDT].ar = segment::RESET_LDT_AR;
        Self {
            regs: KvmRegs {
                rip: 0xfff0,
                rflags: RFLAGS_FIXED,
                rdx: RESET_RDX,
                ..Default::default()
            },
            segs,
            gdt: Dtable {
                base: 0,
                limit: 0xffff,
            },
            idt: Dtable {
                base: 0,
                limit: 0xffff,
            },
            cr0: RESET_CR0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            apic_base: RESET_APIC_BASE | if bsp { APIC_BASE_BSP } else { 0 },
            cpuid: KVec::new(),
            sysenter: [0; 3],
            interruptibility: 0,
            pending_event: None,
            pending: Pending::None,
            user_msr: 0,
            ran: false,
            irq: None,
            nmi: false,
            msrs: msr::Msrs::default(),
            pv_enforce: false,
            debug: debugreg::DebugRegs::default(),
            xcr0: xsave::XCR0_RESET,
            triple_fault: false,
            roots: crate::mmu::shadow::Roots::new(),
            last_unprotect: None,
            single_step: false,
            sw_bp: false,
            hw_bp: None,
            block_irq: false,
            bp_insn_len: 0,
            dr_gd_exit: false,
            stepped: false,
            clock: ClockState::default(),
            apic_window: false,
            mp_state: abi::mp_state::RUNNABLE,
        }
    }

    /// INIT (KVM's `kvm_vcpu_reset(vcpu, true)`): the registers return to
    /// their reset values; CPUID, the MSRs, the APIC base, XCR0 and the
    /// shadow roots (rebuilt for the new mode on entry) stay.
    fn init(&mut self) {
        let fresh = State::reset(false);
        self.regs = fresh.regs;
        self.segs = fresh.segs;
        self.gdt = fresh.gdt;
        self.idt = fresh.idt;
        self.cr0 = fresh.cr0;
        self.cr2 = 0;
        self.cr3 = 0;
        self.cr4 = 0;
        self.cr8 = 0;
        self.efer = 0;
        self.interruptibility = 0;
        self.pending_event = None;
        self.pending = Pending::None;
        self.irq = None;
        self.nmi = false;
        self.debug = debugreg::DebugRegs::default();
    }

    /// SIPI with `vector`: start in real mode at `vector` * 4 KiB.
    fn sipi(&mut self, vector: u8) {
        let cs = &mut self.segs[SEG_CS];
        cs.selector = u16::from(vector) << 8;
        cs.base = u64::from(vector) << 12;
        self.regs.rip = 0;
    }

    fn sregs(&self) -> KvmSregs {
        let seg = |s: &Segment| KvmSegment::from(s);
        let dt = |d: &Dtable| KvmDtable {
            base: d.base,
            limit: d.limit,
            padding: [0; 3],
        };
        KvmSregs {
            cs: seg(&self.segs[0]),
            ds: seg(&self.segs[1]),
            es: seg(&self.segs[2]),
            fs: seg(&self.segs[3]),
            gs: seg(&self.segs[4]),
            ss: seg(&self.segs[5]),
            tr: seg(&self.segs[6]),
            ldt: seg(&self.segs[7]),
            gdt: dt(&self.gdt),
            idt: dt(&self.idt),
            cr0: self.cr0,
            cr2: self.cr2,
            cr3: self.cr3,
            cr4: self.cr4,
            cr8: self.cr8,
            efer: self.efer,
            apic_base: self.apic_base,
            interrupt_bitmap: [0; 4],
        }
    }

    /// `KVM_SET_SREGS`: all or nothing.
    fn set_sregs(&mut self, s: &KvmSregs) -> Result {
        let cpu = cpuid::guest_cpu(&self.cpuid);
        if !cpu.sregs_valid(s.cr0, s.cr3, s.cr4, s.efer, s.cs.l != 0)
            || !cpu.apic_base_valid(s.apic_base)
        {
            return Err(EINVAL);
        }
        // Pending-interrupt injection through the bitmap is not supported
        // yet: refuse rather than drop the interrupt.
        if s.interrupt_bitmap != [0; 4] {
            return Err(EINVAL);
        }
        let segs = [&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt];
        for (i, k) in segs.iter().enumerate() {
            self.segs[i] = k.to_vmcs(i == SEG_LDT);
        }
        self.gdt = Dtable {
            base: s.gdt.base,
            limit: s.gdt.limit,
        };
        self.idt = Dtable {
            base: s.idt.base,
            limit: s.idt.limit,
        };
        self.cr0 = s.cr0;
        self.cr2 = s.cr2;
        self.cr3 = s.cr3;
        self.cr4 = s.cr4;
        // KVM ignores a CR8 with reserved bits set here (kvm_set_cr8 fails).
        if s.cr8 & !0xf == 0 {
            self.cr8 = s.cr8;
        }
        self.efer = s.efer;
        self.apic_base = s.apic_base;
        Ok(())
    }
}

/// A vCPU. Owned by its VM; reached by the VMM through a [`VcpuFd`].
#[pin_data]
pub(crate) struct Vcpu {
    id: u32,
    /// The `kvm_run` page (mmap offset 0) and the PIO data page (offset 1).
    pages: [Page; abi::VCPU_OWN_PAGES],
    /// Serializes the vCPU ioctls, as KVM's `vcpu->mutex` does.
    #[pin]
    state: Mutex<State>,
    /// The VMX pages; locked only by `KVM_RUN`, inside `state`.
    #[pin]
    hw: Mutex<VmxPages>,
    /// Its index in the VM's table of running CPUs (creation order).
    index: usize,
    /// Event counters, read through the vCPU's stats file: bump them with
    /// `vcpu.stats.inc(VcpuStat::...)` (see `crate::stats::VcpuStat`).
    pub(crate) stats: crate::stats::VcpuStats,
    /// The id string of the vCPU's stats file ("kvm-<pid>/vcpu-<id>").
    pub(crate) stats_id: crate::stats::StatsId,
    /// The VM has a split irqchip: `apic` is this vCPU's local APIC.
    has_apic: bool,
    /// The local APIC and the events other vCPUs and the VMM send it.
    /// Lock order: `state`, then `apic`; the VM's `routing` and `vcpus`
    /// may be held when it is taken; nothing is taken under it. Taken
    /// inside the VMX window too (it never sleeps).
    #[pin]
    apic: SpinLock<Apic>,
    /// Where `KVM_RUN` waits for an event (HLT, INIT/SIPI), with `apic`.
    #[pin]
    wake_up: CondVar,
}

/// A local APIC and what was sent to its vCPU.
pub(crate) struct Apic {
    pub(crate) lapic: Lapic,
    /// An NMI, INIT or SIPI (vector) arrived.
    pub(crate) nmi: bool,
    pub(crate) init: bool,
    pub(crate) sipi: Option<u8>,
}

impl Vcpu {
    /// A vCPU in the reset state.
    pub(crate) fn new(
        id: u32,
        index: usize,
        vmcs_revision: u32,
        has_apic: bool,
        tsc_offset: u64,
        bsp: bool,
    ) -> Result<Arc<Self>> {
        let page = || Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
        let pages = [page()?, page()?];
        let mut state = State::reset(bsp);
        state.msrs.tsc_offset = tsc_offset;
        // With an in-kernel APIC only the BSP starts running; the others
        // wait for INIT and SIPI (KVM's `kvm_arch_vcpu_create()`).
        if has_apic && state.apic_base & APIC_BASE_BSP == 0 {
            state.mp_state = abi::mp_state::UNINITIALIZED;
        }
        let apic = Apic {
            lapic: Lapic::new(id, state.apic_base),
            nmi: false,
            init: false,
            sipi: None,
        };
        let hw = VmxPages::new(vmcs_revision)?;
        let stats_id = crate::stats::current_id(Some(id));
        Arc::pin_init(
            pin_init!(Self {
                id,
                pages,
                state <- new_mutex!(state),
                hw <- new_mutex!(hw),
                index,
                stats: crate::stats::VcpuStats::new(),
                stats_id,
                has_apic,
                apic <- new_spinlock!(apic),
                wake_up <- new_condvar!(),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// The vCPU id given to `KVM_CREATE_VCPU`.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// `KVM_GET_SREGS`: CR8 is the APIC's TPR when there is one.
    fn get_sregs(&self) -> KvmSregs {
        let mut st = self.state.lock();
        if self.has_apic {
            st.cr8 = self.apic.lock().lapic.cr8();
        }
        st.sregs()
    }

    /// `KVM_SET_SREGS` (all or nothing); the APIC follows the new base
    /// and CR8.
    fn set_sregs(&self, sregs: &KvmSregs) -> Result {
        let mut st = self.state.lock();
        st.set_sregs(sregs)?;
        self.apic_base_changed(st.apic_base);
        if self.has_apic {
            // CR8 is the APIC's TPR.
            self.apic.lock().lapic.set_cr8(st.cr8);
        }
        Ok(())
    }

    /// Its index in the VM's vCPU table (creation order).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether an MSI for `dest` reaches this vCPU's APIC (`quirk`: KVM's
    /// x2APIC broadcast quirk applies, see `Apic::msi_dest`).
    pub(crate) fn apic_matches(&self, dest: lapic::Dest, quirk: bool) -> bool {
        if !self.has_apic {
            return false;
        }
        let a = self.apic.lock();
        let dest = if quirk { a.lapic.msi_dest(dest) } else { dest };
        a.lapic.matches(dest, false)
    }

    /// Hands `msg` to this vCPU's APIC if it is for it (`is_self`: this
    /// vCPU sent it). Fixed and lowest-priority interrupts go to IRR (and
    /// are dropped by a disabled APIC), NMI, INIT and SIPI are noted for
    /// `KVM_RUN`; SMI and ExtINT are not supported and dropped. Returns
    /// whether the APIC was a destination. `quirk`: `msg` is an MSI under
    /// KVM's x2APIC broadcast quirk (see `Apic::msi_dest`).
    pub(crate) fn deliver(&self, msg: lapic::Message, is_self: bool, quirk: bool) -> bool {
        if !self.has_apic {
            return false;
        }
        let mut a = self.apic.lock();
        let dest = if quirk {
            a.lapic.msi_dest(msg.dest)
        } else {
            msg.dest
        };
        if !a.lapic.matches(dest, is_self) {
            return false;
        }
        match msg.mode {
            lapic::mode::FIXED | lapic::mode::LOWEST => {
                a.lapic.accept(msg.vector, msg.level);
            }
            lapic::mode::NMI => a.nmi = true,
            lapic::mode::INIT => a.init = true,
            lapic::mode::SIPI => a.sipi = Some(msg.vector),
            _ => {}
        }
        true
    }

    /// Wakes `KVM_RUN` if it waits for an event.
    pub(crate) fn wake(&self) {
        self.wake_up.notify_all();
    }

    /// IA32_APIC_BASE changed (by `state`'s owner): the APIC follows.
    fn apic_base_changed(&self, base: u64) {
        if self.has_apic {
            self.apic.lock().lapic.set_base(base);
        }
    }
}

/// What a vCPU fd holds: the vCPU and a reference on its VM.
pub(crate) struct VcpuFd {
    pub(crate) vm: Arc<Vm>,
    pub(crate) vcpu: Arc<Vcpu>,
}

impl VcpuFd {
    /// The fops of vCPU fds.
    pub(crate) fn fops() -> &'static fd::Fops {
        &VCPU_FOPS
    }
}

/// A structure at byte `offset` of the `kvm_run` page, copied once (user
/// space may change the page meanwhile; the copy is what counts).
fn run_read<T: FromBytes>(run: &Page, offset: usize) -> T {
    let mut v = MaybeUninit::<T>::zeroed();
    // SAFETY: the destination is `size_of::<T>()` bytes of `v`; the range
    // is checked against the page (EINVAL, leaving zeroes, otherwise). User
    // space may write the page concurrently, as with every `kvm_run` read
    // (`run::RunArea`): it can only leave arbitrary bytes.
    let _ = unsafe { run.read_raw(v.as_mut_ptr().cast(), offset, size_of::<T>()) };
    // SAFETY: zeroed, then overwritten with bytes: a valid `T`, which is
    // `FromBytes` (any bit pattern is).
    unsafe { v.assume_init() }
}

/// Writes `v` at byte `offset` of the `kvm_run` page.
fn run_write<T: AsBytes>(run: &Page, offset: usize, v: &T) {
    // SAFETY: the source is `v`, `size_of::<T>()` initialized bytes
    // (`AsBytes`: no padding); the range is checked against the page. User
    // space may race with the write, as with every `kvm_run` write.
    let _ = unsafe { run.write_raw(core::ptr::from_ref(v).cast(), offset, size_of::<T>()) };
}

/// `KVM_RUN` with `KVM_CAP_SYNC_REGS` (KVM's `sync_regs()` and
/// `store_regs()` around `kvm_arch_vcpu_ioctl_run()`): first the register
/// sets `kvm_dirty_regs` names are taken from `kvm_run.s.regs`, as
/// `KVM_SET_REGS`, `KVM_SET_SREGS` and `KVM_SET_VCPU_EVENTS` would take
/// them (each bit cleared once consumed; an invalid set is EINVAL and the
/// guest does not run); then, whatever `KVM_RUN` returned, the sets
/// `kvm_valid_regs` names are stored there. EINVAL for unknown bits.
fn run_with_sync_regs(vm: &Vm, vcpu: &Vcpu, arg: usize) -> Result<isize> {
    use abi::{
        kvm_run as kr,
        sync_regs::*, //
    };
    let run = &vcpu.pages[0];
    let valid = run_read::<u64>(run, kr::VALID_REGS);
    let dirty = run_read::<u64>(run, kr::DIRTY_REGS);
    let r = if (valid | dirty) & !VALID != 0 {
        Err(EINVAL)
    } else {
        sync_in(vcpu, run, dirty).and_then(|()| run::run(vm, vcpu, arg))
    };
    if valid & REGS != 0 {
        let regs = vcpu.state.lock().regs;
        run_write(run, kr::SYNC_REGS, &regs);
    }
    if valid & SREGS != 0 {
        run_write(run, kr::SYNC_SREGS, &vcpu.get_sregs());
    }
    if valid & EVENTS != 0 {
        let ev = run::get_events(&vcpu.state.lock());
        run_write(run, kr::SYNC_EVENTS, &ev);
    }
    r
}

/// The `kvm_dirty_regs` half of `run_with_sync_regs`.
fn sync_in(vcpu: &Vcpu, run: &Page, mut dirty: u64) -> Result {
    use abi::{
        kvm_run as kr,
        sync_regs::*, //
    };
    if dirty & REGS != 0 {
        let mut regs = run_read::<KvmRegs>(run, kr::SYNC_REGS);
        regs.rflags |= RFLAGS_FIXED;
        vcpu.state.lock().regs = regs;
        dirty &= !REGS;
        run_write(run, kr::DIRTY_REGS, &dirty);
    }
    if dirty & SREGS != 0 {
        let sregs = run_read::<KvmSregs>(run, kr::SYNC_SREGS);
        vcpu.set_sregs(&sregs).map_err(|_| EINVAL)?;
        dirty &= !SREGS;
        run_write(run, kr::DIRTY_REGS, &dirty);
    }
    if dirty & EVENTS != 0 {
        let ev = run_read::<abi::KvmVcpuEvents>(run, kr::SYNC_EVENTS);
        run::set_events(&mut vcpu.state.lock(), &ev).map_err(|_| EINVAL)?;
        dirty &= !EVENTS;
        run_write(run, kr::DIRTY_REGS, &dirty);
    }
    Ok(())
}

/// `KVM_ENABLE_CAP` on a vCPU (KVM's `kvm_vcpu_ioctl_enable_cap()`): only
/// `KVM_CAP_ENFORCE_PV_FEATURE_CPUID` (any non-zero argument turns the
/// enforcement on, 0 off); EINVAL for flags and any other capability.
fn enable_cap(vcpu: &Vcpu, cap: &abi::KvmEnableCap) -> Result {
    if cap.flags != 0 || cap.cap != abi::CAP_ENFORCE_PV_FEATURE_CPUID {
        return Err(EINVAL);
    }
    vcpu.state.lock().pv_enforce = cap.args[0] != 0;
    Ok(())
}

/// `KVM_{HAS,GET,SET}_DEVICE_ATTR` on a vCPU (KVM's
/// `kvm_vcpu_ioctl_device_attr()`): the one attribute is the TSC offset,
/// guest TSC minus host TSC, as a u64 at `addr`. Setting it also makes it
/// the offset vCPUs created later start with (KVM's `cur_tsc_offset`).
/// ENXIO for any other group or attribute, EFAULT.
fn device_attr(vm: &Vm, vcpu: &Vcpu, cmd: u32, arg: usize) -> Result {
    let a = UserSlice::new(UserPtr::from_addr(arg), size_of::<abi::KvmDeviceAttr>())
        .reader()
        .read::<abi::KvmDeviceAttr>()?;
    if a.group != abi::VCPU_TSC_CTRL || a.attr != abi::VCPU_TSC_OFFSET {
        return Err(ENXIO);
    }
    let value = UserSlice::new(
        UserPtr::from_addr(usize::try_from(a.addr).map_err(|_| EFAULT)?),
        size_of::<u64>(),
    );
    match cmd {
        abi::KVM_GET_DEVICE_ATTR => {
            let offset = vcpu.state.lock().msrs.tsc_offset;
            value.writer().write(&offset)?;
        }
        abi::KVM_SET_DEVICE_ATTR => {
            let offset = value.reader().read::<u64>()?;
            run::host_set_tsc_offset(&mut vcpu.state.lock(), offset);
            vm.set_first_tsc_offset(offset);
        }
        _ => {}
    }
    Ok(())
}

impl fd::FdObject for VcpuFd {
    fn ioctl(this: ArcBorrow<'_, Self>, cmd: u32, arg: usize) -> Result<isize> {
        this.vm.check_caller()?;
        let user = |size| UserSlice::new(UserPtr::from_addr(arg), size);
        let vcpu = &this.vcpu;
        match cmd {
            abi::KVM_GET_REGS => {
                let regs = vcpu.state.lock().regs;
                user(size_of::<KvmRegs>()).writer().write(&regs)?;
            }
            abi::KVM_SET_REGS => {
                let mut regs = user(size_of::<KvmRegs>()).reader().read::<KvmRegs>()?;
                regs.rflags |= RFLAGS_FIXED;
                vcpu.state.lock().regs = regs;
            }
            abi::KVM_GET_SREGS => {
                let sregs = vcpu.get_sregs();
                user(size_of::<KvmSregs>()).writer().write(&sregs)?;
            }
            abi::KVM_SET_SREGS => {
                let sregs = user(size_of::<KvmSregs>()).reader().read::<KvmSregs>()?;
                vcpu.set_sregs(&sregs)?;
            }
            // No KVM_SET_TSC_KHZ yet: every guest TSC runs at the host's.
            abi::KVM_GET_TSC_KHZ => return Ok(crate::shim::tsc_khz() as isize),
            // KVM ignores the argument.
            abi::KVM_GET_STATS_FD => return crate::stats::vcpu_stats_fd(Arc::from(this)),
            abi::KVM_SET_CPUID2 => set_cpuid2(vcpu, arg)?,
            abi::KVM_GET_CPUID2 => get_cpuid2(vcpu, arg)?,
            abi::KVM_RUN => return run_with_sync_regs(&this.vm, vcpu, arg),
            abi::KVM_INTERRUPT => {
                let irq = user(size_of::<u32>()).reader().read::<u32>()?;
                run::queue_interrupt(&mut vcpu.state.lock(), irq)?;
            }
            abi::KVM_NMI => vcpu.state.lock().nmi = true,
            abi::KVM_SET_GUEST_DEBUG => {
                let dbg = user(size_of::<abi::KvmGuestDebug>())
                    .reader()
                    .read::<abi::KvmGuestDebug>()?;
                set_guest_debug(&mut vcpu.state.lock(), &dbg)?;
            }
            abi::KVM_GET_VCPU_EVENTS => {
                let ev = run::get_events(&vcpu.state.lock());
                user(size_of::<abi::KvmVcpuEvents>()).writer().write(&ev)?;
            }
            abi::KVM_SET_VCPU_EVENTS => {
                let ev = user(size_of::<abi::KvmVcpuEvents>())
                    .reader()
                    .read::<abi::KvmVcpuEvents>()?;
                run::set_events(&mut vcpu.state.lock(), &ev)?;
            }
            abi::KVM_HAS_DEVICE_ATTR | abi::KVM_GET_DEVICE_ATTR | abi::KVM_SET_DEVICE_ATTR => {
                device_attr(&this.vm, vcpu, cmd, arg)?
            }
            abi::KVM_ENABLE_CAP => {
                let cap = user(size_of::<abi::KvmEnableCap>())
                    .reader()
                    .read::<abi::KvmEnableCap>()?;
                enable_cap(vcpu, &cap)?;
            }
            abi::KVM_GET_MSRS => return msrs_io(vcpu, arg, false),
            abi::KVM_SET_MSRS => return msrs_io(vcpu, arg, true),
            abi::KVM_GET_FPU => {
                // Lock order: state, then hw.
                let _st = vcpu.state.lock();
                let fpu = vcpu.hw.lock().get_fpu();
                user(size_of::<abi::KvmFpu>()).writer().write(&fpu)?;
            }
            abi::KVM_SET_FPU => {
                let fpu = user(size_of::<abi::KvmFpu>())
                    .reader()
                    .read::<abi::KvmFpu>()?;
                let _st = vcpu.state.lock();
                vcpu.hw.lock().set_fpu(&fpu);
            }
            abi::KVM_GET_DEBUGREGS => {
                let d = vcpu.state.lock().debug;
                let out = abi::KvmDebugregs {
                    db: d.db,
                    dr6: d.dr6,
                    dr7: d.dr7,
                    ..Default::default()
                };
                user(size_of::<abi::KvmDebugregs>()).writer().write(&out)?;
            }
            abi::KVM_SET_DEBUGREGS => {
                let d = user(size_of::<abi::KvmDebugregs>())
                    .reader()
                    .read::<abi::KvmDebugregs>()?;
                // KVM stores DR6 and DR7 as given once they pass the checks.
                if !debugreg::set_debugregs_valid(d.flags, d.dr6, d.dr7) {
                    return Err(EINVAL);
                }
                vcpu.state.lock().debug = debugreg::DebugRegs {
                    db: d.db,
                    dr6: d.dr6,
                    dr7: d.dr7,
                };
            }
            abi::KVM_GET_XSAVE => get_xsave(vcpu, arg)?,
            abi::KVM_SET_XSAVE => set_xsave(vcpu, arg)?,
            abi::KVM_GET_XCRS => {
                let xcr0 = vcpu.state.lock().xcr0;
                let mut x = abi::KvmXcrs::default();
                // KVM reports none when the host has no XSAVE.
                if crate::vmx::window::host_has_xsave() {
                    x.nr_xcrs = 1;
                    x.xcrs[0].value = xcr0;
                }
                user(size_of::<abi::KvmXcrs>()).writer().write(&x)?;
            }
            abi::KVM_SET_XCRS => {
                let x = user(size_of::<abi::KvmXcrs>())
                    .reader()
                    .read::<abi::KvmXcrs>()?;
                let mut st = vcpu.state.lock();
                st.xcr0 = set_xcrs(&x, st.xcr0)?;
            }
            abi::KVM_X86_SETUP_MCE => {
                let cap = user(size_of::<u64>()).reader().read::<u64>()?;
                if !vcpu.state.lock().msrs.mce.setup(cap) {
                    return Err(EINVAL);
                }
            }
            abi::KVM_X86_SET_MCE => {
                let m = user(size_of::<abi::KvmX86Mce>())
                    .reader()
                    .read::<abi::KvmX86Mce>()?;
                let mut st = vcpu.state.lock();
                let cr4_mce = st.cr4 & CR4_MCE != 0;
                match st
                    .msrs
                    .mce
                    .inject(m.bank, m.status, m.addr, m.misc, m.mcg_status, cr4_mce)
                    .map_err(|()| EINVAL)?
                {
                    mce::Injected::None => {}
                    mce::Injected::MachineCheck => run::queue_machine_check(&mut st),
                    mce::Injected::TripleFault => st.triple_fault = true,
                }
            }
            // Without an in-kernel APIC a vCPU is always runnable (HLT
            // exits to user space) and only RUNNABLE may be set, as on KVM.
            abi::KVM_GET_MP_STATE => {
                let mp = vcpu.state.lock().mp_state;
                user(size_of::<u32>()).writer().write(&mp)?;
            }
            abi::KVM_SET_MP_STATE => {
                let mp = user(size_of::<u32>()).reader().read::<u32>()?;
                set_mp_state(vcpu, mp)?;
            }
            abi::KVM_GET_LAPIC => {
                if !vcpu.has_apic {
                    return Err(EINVAL);
                }
                let mut page = [0u8; abi::LAPIC_SIZE];
                let format = this.vm.x2apic_format();
                vcpu.apic
                    .lock()
                    .lapic
                    .get_state(run::now_ns(), format, &mut page);
                user(abi::LAPIC_SIZE).writer().write_slice(&page)?;
            }
            abi::KVM_SET_LAPIC => {
                if !vcpu.has_apic {
                    return Err(EINVAL);
                }
                let mut page = [0u8; abi::LAPIC_SIZE];
                user(abi::LAPIC_SIZE).reader().read_slice(&mut page)?;
                let format = this.vm.x2apic_format();
                let _st = vcpu.state.lock();
                vcpu.apic
                    .lock()
                    .lapic
                    .set_state(&page, run::now_ns(), format)
                    .map_err(|_| EINVAL)?;
                this.vm.kick(vcpu);
            }
            _ => return Err(EINVAL),
        }
        Ok(0)
    }
}

/// `KVM_SET_MP_STATE` (KVM's `kvm_arch_vcpu_ioctl_set_mpstate()`):
/// RUNNABLE always; with an in-kernel APIC also UNINITIALIZED,
/// INIT_RECEIVED, HALTED and SIPI_RECEIVED (which becomes INIT_RECEIVED
/// with a SIPI waiting, as on KVM); EINVAL for anything else.
fn set_mp_state(vcpu: &Vcpu, mp: u32) -> Result {
    use abi::mp_state::*;
    let ok = mp == RUNNABLE
        || (vcpu.has_apic && matches!(mp, UNINITIALIZED | INIT_RECEIVED | HALTED | SIPI_RECEIVED));
    if !ok {
        return Err(EINVAL);
    }
    let mut st = vcpu.state.lock();
    if mp == SIPI_RECEIVED {
        st.mp_state = INIT_RECEIVED;
        let mut a = vcpu.apic.lock();
        let v = a.sipi.unwrap_or(0);
        a.sipi = Some(v);
    } else {
        st.mp_state = mp;
    }
    Ok(())
}

/// `KVM_SET_GUEST_DEBUG` (KVM's `kvm_arch_vcpu_ioctl_set_guest_debug()`):
/// INJECT_DB/INJECT_BP queue #DB/#BP whether or not ENABLE is set (EBUSY
/// while an exception is already queued); without ENABLE everything else
/// is off; flags KVM does not know are ignored, as KVM ignores them.
/// SINGLESTEP, USE_SW_BP, USE_HW_BP (the debugger's DR0-DR3 and DR7) and
/// BLOCKIRQ take effect from the next entry.
fn set_guest_debug(st: &mut State, dbg: &abi::KvmGuestDebug) -> Result {
    use abi::guestdbg::*;
    if dbg.control & (INJECT_DB | INJECT_BP) != 0 {
        if st.pending_event.is_some() {
            return Err(EBUSY);
        }
        run::queue_debug_exception(st, dbg.control & INJECT_DB != 0);
    }
    let control = if dbg.control & ENABLE != 0 {
        dbg.control & VALID
    } else {
        0
    };
    st.single_step = control & SINGLESTEP != 0;
    st.sw_bp = control & USE_SW_BP != 0;
    st.hw_bp = (control & USE_HW_BP != 0).then(|| {
        let r = &dbg.debugreg;
        // Reserved bits as the guest's own DR7 has them (bit 10 set,
        // 63:32 clear), so VM entry takes it.
        (
            [r[0], r[1], r[2], r[3]],
            debugreg::guest_dr7(r[7] & 0xffff_ffff),
        )
    });
    st.block_irq = control & BLOCKIRQ != 0;
    st.stepped = false;
    Ok(())
}

/// `KVM_GET_MSRS`/`KVM_SET_MSRS` (KVM's `msr_io()`): processes entries in
/// order up to the first MSR that does not exist or refuses the value, and
/// returns how many were processed; `E2BIG` for 256 entries or more.
fn msrs_io(vcpu: &Vcpu, arg: usize, set: bool) -> Result<isize> {
    let header = UserSlice::new(UserPtr::from_addr(arg), size_of::<abi::KvmMsrs>())
        .reader()
        .read::<abi::KvmMsrs>()?;
    if header.nmsrs >= abi::MAX_IO_MSRS {
        return Err(E2BIG);
    }
    let n = header.nmsrs as usize;
    let addr = abi::entries_addr(arg)?;
    let (mut reader, mut writer) =
        UserSlice::new(UserPtr::from_addr(addr), n * size_of::<abi::KvmMsrEntry>()).reader_writer();
    let mut entries = KVec::with_capacity(n, GFP_KERNEL)?;
    for _ in 0..n {
        entries.push(reader.read::<abi::KvmMsrEntry>()?, GFP_KERNEL)?;
    }
    let mut st = vcpu.state.lock();
    let mut done = 0;
    for e in entries.iter_mut() {
        let ok = if set {
            run::host_set_msr(&mut st, e.index, e.data)
        } else {
            match run::host_get_msr(&st, e.index) {
                Some(v) => {
                    e.data = v;
                    true
                }
                None => false,
            }
        };
        if !ok {
            break;
        }
        done += 1;
    }
    if set {
        vcpu.apic_base_changed(st.apic_base);
    }
    drop(st);
    if !set {
        for e in entries.iter() {
            writer.write(e)?;
        }
    }
    Ok(done)
}

/// `KVM_GET_XSAVE`: the guest's x87 and SSE state in the standard XSAVE
/// layout (`x86::xsave`), as KVM gives it for a guest without XSAVE.
fn get_xsave(vcpu: &Vcpu, arg: usize) -> Result {
    let mut img = KVec::from_elem(0u8, abi::XSAVE_SIZE, GFP_KERNEL)?;
    {
        // Lock order: state, then hw.
        let _st = vcpu.state.lock();
        vcpu.hw.lock().get_xsave(&mut img);
    }
    UserSlice::new(UserPtr::from_addr(arg), abi::XSAVE_SIZE)
        .writer()
        .write_slice(&img)
}

/// `KVM_SET_XSAVE`: `EINVAL` for components other than x87 and SSE, a
/// compacted image, reserved header bits or MXCSR bits (KVM's checks);
/// nothing changes then.
fn set_xsave(vcpu: &Vcpu, arg: usize) -> Result {
    let mut img = KVec::from_elem(0u8, abi::XSAVE_SIZE, GFP_KERNEL)?;
    UserSlice::new(UserPtr::from_addr(arg), abi::XSAVE_SIZE)
        .reader()
        .read_slice(&mut img)?;
    let bv = xsave::check_image(&img).map_err(|_| EINVAL)?;
    let _st = vcpu.state.lock();
    vcpu.hw.lock().set_xsave(&img, bv);
    Ok(())
}

/// `KVM_SET_XCRS` (KVM's `kvm_vcpu_ioctl_x86_set_xcrs()`): `EINVAL` without
/// host XSAVE, for more than `KVM_MAX_XCRS` entries or any flag; the first
/// XCR0 entry is applied with `__kvm_set_xcr()`'s rules (`EINVAL` if
/// refused); other XCRs are ignored. Returns the new XCR0.
fn set_xcrs(x: &abi::KvmXcrs, xcr0: u64) -> Result<u64> {
    if !crate::vmx::window::host_has_xsave() || x.nr_xcrs as usize > abi::MAX_XCRS || x.flags != 0 {
        return Err(EINVAL);
    }
    match x.xcrs[..x.nr_xcrs as usize].iter().find(|e| e.xcr == 0) {
        Some(e) if xsave::xcr0_valid(e.value, xsave::GUEST_SUPPORTED_XCR0) => Ok(e.value),
        Some(_) => Err(EINVAL),
        None => Ok(xcr0),
    }
}

/// `KVM_SET_CPUID2`: all or nothing. Once the vCPU has run, only the
/// CPUID it already has is accepted (KVM's `kvm_cpuid_check_equal()`:
/// `EINVAL` for anything else, KVM-owned bits aside).
fn set_cpuid2(vcpu: &Vcpu, arg: usize) -> Result {
    let header = UserSlice::new(UserPtr::from_addr(arg), size_of::<KvmCpuid2>())
        .reader()
        .read::<KvmCpuid2>()?;
    let nent = header.nent as usize;
    if nent > cpuid::MAX_ENTRIES {
        return Err(E2BIG);
    }
    let mut entries = KVec::with_capacity(nent, GFP_KERNEL_ACCOUNT)?;
    let mut reader = UserSlice::new(
        UserPtr::from_addr(abi::entries_addr(arg)?),
        nent * size_of::<KvmCpuidEntry2>(),
    )
    .reader();
    for _ in 0..nent {
        entries.push(reader.read::<KvmCpuidEntry2>()?.into(), GFP_KERNEL_ACCOUNT)?;
    }
    if !cpuid::valid(&entries) {
        return Err(EINVAL);
    }
    let mut st = vcpu.state.lock();
    if vcpu.has_apic {
        let x2apic = cpuid::guest_cpu(&entries).x2apic;
        vcpu.apic.lock().lapic.set_cpuid(x2apic);
    }
    if st.ran {
        let (cr4, apic_base) = (st.cr4, st.apic_base);
        cpuid::update_runtime(&mut entries, cr4, apic_base);
        cpuid::update_runtime(&mut st.cpuid, cr4, apic_base);
        return if entries[..] == st.cpuid[..] {
            Ok(())
        } else {
            Err(EINVAL)
        };
    }
    st.cpuid = entries;
    Ok(())
}

/// `KVM_GET_CPUID2`: `E2BIG` (and `nent` untouched) when the buffer is too
/// small, as in KVM; the bits KVM owns at run time are brought up to date.
fn get_cpuid2(vcpu: &Vcpu, arg: usize) -> Result {
    let mut state = vcpu.state.lock();
    let (cr4, apic_base) = (state.cr4, state.apic_base);
    cpuid::update_runtime(&mut state.cpuid, cr4, apic_base);
    abi::write_cpuid2(arg, &state.cpuid)
}

/// `mmap` of a vCPU fd: page 0 is `kvm_run`, page 1 the PIO data page.
///
/// # Safety
///
/// Called by the VFS with the mmap lock held for writing, on a vCPU fd.
unsafe extern "C" fn mmap(file: *mut bindings::file, vma: *mut bindings::vm_area_struct) -> c_int {
    // SAFETY: a file operation on a vCPU fd.
    let this = unsafe { fd::borrow::<VcpuFd>(file) };
    // SAFETY: the VFS passes a VMA under construction, with the mmap lock
    // held, for the duration of this call.
    let vma = unsafe { kernel::mm::virt::VmaNew::from_raw(vma) };
    // SAFETY: as above; `vm_pgoff` is not modified while we run.
    let pgoff = unsafe { (*vma.as_ptr()).vm_pgoff };
    let npages = (vma.end() - vma.start()) >> bindings::PAGE_SHIFT;
    let pages = [
        &this.vcpu.pages[0],
        &this.vcpu.pages[1],
        this.vm.coalesced_page(),
    ];
    let Some(pages) = pgoff
        .checked_add(npages)
        .and_then(|end| pages.get(pgoff..end))
    else {
        return EINVAL.to_errno();
    };
    let mixed = vma.set_mixedmap();
    for (i, page) in pages.iter().enumerate() {
        let addr = vma.start() + (i << bindings::PAGE_SHIFT);
        if let Err(e) = mixed.vm_insert_page(addr, page) {
            return e.to_errno();
        }
    }
    0
}
