// SPDX-License-Identifier: GPL-2.0

//! A virtual machine: its memory slots and vCPUs, behind a VM fd.
//!
//! Lifetimes: the VM fd and every vCPU fd hold an `Arc<Vm>`, so the VM lives
//! while any of its fds is open and fds may be closed in any order. The VM
//! owns its vCPUs (KVM never destroys a vCPU before its VM either: closing a
//! vCPU fd does not free the id). Model: `virt/kvm/kvm_main.c`.

use core::sync::atomic::{
    fence,
    AtomicBool,
    AtomicI32,
    AtomicPtr,
    AtomicU32,
    AtomicU64,
    Ordering, //
};

use kernel::{
    alloc::KVec,
    mm::Mm,
    new_mutex, new_spinlock, new_srcu,
    page::Page,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        ArcBorrow,
        Mutex,
        SpinLock,
        Srcu, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::{
    abi, fd,
    memslot::{
        region::{
            Request,
            Slot, //
        },
        Memslots,
        SlotSet, //
    },
    mmu::shadow::{
        self,
        Changes,
        Shadow, //
    },
    shim,
    vcpu::{
        Vcpu,
        VcpuFd, //
    },
    vmx::caps::VmxCaps,
    x86::{
        lapic,
        msr_filter, //
    },
};

static VM_FOPS: fd::Fops = fd::fops::<Vm>(None);

/// Obsolete shadow pages zapped between checks for a waiting scheduler
/// (KVM's `BATCH_ZAP_PAGES`).
const ZAP_BATCH: usize = 10;

/// Host pages unmapped per hold of the MMU lock (see `Vm::unmap_gfns`).
const UNMAP_BATCH: usize = 64;

/// Arena entries a per-slot zap looks at per hold of the MMU lock.
const SLOT_ZAP_SCAN: usize = 512;

/// Rmap lists marked invalid per hold of the MMU lock (`retire_slot`).
const RMAP_INVALIDATE_BATCH: usize = 4096;

/// What [`Vm::map_gfn`] found.
pub(crate) enum Map {
    /// The frame is mapped (by this call or before).
    Mapped,
    /// The frame is mapped read-only: its slot is read-only.
    ReadOnly,
    /// No slot backs the frame (MMIO).
    NoSlot,
    /// Not mapped now (slot going away, host invalidation): fault again.
    Retry,
}

/// A VM.
///
/// # Invariants
///
/// `vcpus` holds at most [`abi::MAX_VCPUS`] vCPUs with distinct ids below
/// that bound.
#[pin_data]
pub(crate) struct Vm {
    /// The mmu_notifier registration on `mm` (see `crate::notifier`).
    /// First field: it is undone (waiting for running callbacks, which
    /// use the fields below) before anything else of the VM is dropped.
    notifier: crate::notifier::Registration,
    /// `KVM_IRQFD` registrations. Second field: dropping them detaches
    /// each from its eventfd and waits for its pending delivery, which
    /// reads `routing` and `vcpus` (see `crate::irqfd`).
    #[pin]
    irqfds: Mutex<crate::irqfd::IrqFds>,
    /// The address space of the process that created the VM: guest memory
    /// lives there, and only that process may use the VM.
    mm: ARef<Mm>,
    /// Memory slots; the mutex serializes updates (KVM's `slots_lock`).
    #[pin]
    slots: Mutex<Memslots>,
    /// The active slot set (one of `slots`' two), read under `srcu`.
    active: AtomicPtr<SlotSet>,
    /// Readers of `active`: faults hold it from the slot lookup until
    /// their mapping is installed, the notifier callbacks while they run.
    #[pin]
    srcu: Srcu,
    /// The vCPUs, in creation order.
    #[pin]
    vcpus: Mutex<KVec<Arc<Vcpu>>>,
    /// The CPU's VMX capabilities, read when the VM was created.
    caps: VmxCaps,
    /// The EPT pointer of the identity map in `mmu`; the root never
    /// changes.
    eptp: u64,
    /// The shadow MMU and the EPT map (KVM's `mmu_lock` and what it
    /// protects). Lock order: `slots`, then `mmu`; SRCU readers of
    /// `active` may take `mmu`; nothing sleeps under `mmu`.
    #[pin]
    mmu: SpinLock<Shadow>,
    /// Moves whenever a root some vCPU may hold is invalidated or becomes
    /// obsolete; a vCPU whose roots were checked in an older epoch checks
    /// them again (under `mmu`) before entering the guest.
    roots_epoch: AtomicU64,
    /// Per vCPU (by creation index): the CPU whose VMX window runs it, or
    /// -1. Read without locks by kicks, which may come from under `mmu`.
    running: [AtomicI32; abi::MAX_VCPUS as usize],
    /// The id string of the VM's stats file ("kvm-<creator's pid>").
    pub(crate) stats_id: crate::stats::StatsId,
    /// `KVM_IOEVENTFD` registrations (a leaf lock).
    #[pin]
    pub(crate) ioeventfds: Mutex<crate::ioeventfd::IoEventFds>,
    /// Coalesced MMIO/PIO zones; held for every append to the ring (a
    /// leaf lock, see `crate::coalesced`).
    #[pin]
    coalesced: Mutex<crate::coalesced::Zones>,
    /// The coalesced ring, page 2 of every vCPU's mmap.
    coalesced_page: Page,
    /// The kvmclock is the host's CLOCK_MONOTONIC_RAW plus this many ns
    /// (wrapping; KVM's `kvmclock_offset`). It starts at 0 when the VM is
    /// created; `KVM_SET_CLOCK` moves it.
    clock_offset: AtomicU64,
    /// KVM quirks user space disabled (`KVM_CAP_DISABLE_QUIRKS2`; see
    /// `abi::quirks` for those rkvm has).
    quirks_disabled: AtomicU64,
    /// The TSC offset of the first vCPU, which later ones start with
    /// (KVM's `cur_tsc_offset` from `kvm_synchronize_tsc(vcpu, NULL)`).
    first_tsc_offset: AtomicU64,
    /// A copy of `Shadow`'s host-invalidation sequence for lockless
    /// readers (see `Vm::inval_seq`).
    inval_seq: AtomicU64,
    /// Moves on every `KVM_SET_CLOCK`: each vCPU then rewrites its
    /// `pvclock_vcpu_time_info` before it next enters the guest.
    clock_epoch: AtomicU64,
    /// `KVM_CAP_SPLIT_IRQCHIP` is enabled: every vCPU has an in-kernel
    /// local APIC. Set once, under `vcpus` and only while there is no
    /// vCPU, so a vCPU's `has_apic` always agrees with it.
    split_irqchip: AtomicBool,
    /// `KVM_CAP_X2APIC_API` with KVM_X2APIC_API_USE_32BIT_IDS: the APIC
    /// state ioctls carry x2APIC ids as 32 bits.
    x2apic_format: AtomicBool,
    /// `KVM_CAP_X2APIC_API` with KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK:
    /// an MSI to id 0xff is not a broadcast to APICs in x2APIC mode.
    broadcast_quirk_disabled: AtomicBool,
    /// `KVM_CAP_MAX_VCPU_ID` as enabled (0: not set, the default bound).
    /// Set once, under `vcpus`.
    max_vcpu_ids: AtomicU32,
    /// The boot CPU's vCPU id (`KVM_SET_BOOT_CPU_ID`, 0 by default): its
    /// reset IA32_APIC_BASE has BSP set and, with an in-kernel APIC, it
    /// alone starts RUNNABLE. Set only under `vcpus` while there is none.
    bsp_vcpu_id: AtomicU32,
    /// `KVM_CAP_MSR_PLATFORM_INFO`: the guest may read MSR_PLATFORM_INFO
    /// (true by default, as KVM).
    platform_info_readable: AtomicBool,
    /// `KVM_CAP_X86_USER_SPACE_MSR`: the `msr_filter::reason` bits whose
    /// failed guest RDMSR/WRMSR exit to user space instead of raising #GP.
    user_space_msr: AtomicU32,
    /// `KVM_X86_SET_MSR_FILTER`'s filter (`None`: every access allowed).
    /// A leaf lock, taken in the VMX window on a guest RDMSR/WRMSR; a new
    /// filter replaces the old one under it, so each access sees one
    /// whole filter, and the old one is freed after the lock is dropped.
    #[pin]
    msr_filter: SpinLock<Option<MsrFilter>>,
    /// The MSI routes of `KVM_SET_GSI_ROUTING` and the I/O APIC pins user
    /// space reserved (a leaf lock but for the vCPUs' `apic` locks, taken
    /// under it).
    #[pin]
    routing: Mutex<Routing>,
}

/// The GSI routing of a split irqchip: only MSI routes exist (the I/O
/// APIC and PIC live in user space). Model: `kvm_scan_ioapic_routes()` in
/// `arch/x86/kvm/irq.c`.
#[derive(Default)]
struct Routing {
    /// GSIs below this are I/O APIC pins (`KVM_ENABLE_CAP` argument).
    pins: u32,
    /// (gsi, address, data) of each MSI route.
    msi: KVec<(u32, u64, u32)>,
}

/// A copy of the `struct kvm_msr_filter` user space set (KVM's
/// `kvm_x86_msr_filter`): its default and the ranges that have MSRs.
pub(crate) struct MsrFilter {
    default_allow: bool,
    ranges: KVec<msr_filter::Range<KVec<u8>>>,
}

/// `KVM_CREATE_VM`: `vm_type` must be 0 (the default x86 VM).
pub(crate) fn create(vm_type: usize) -> Result<isize> {
    if vm_type != 0 {
        return Err(EINVAL);
    }
    let mm = {
        let task = current!();
        let mm = task.mm().ok_or(EINVAL)?;
        ARef::from(&**mm)
    };
    let caps = crate::vmx::probe::local_caps()?;
    let (raw_ns, _, _) = crate::shim::clock_read();
    let shadow = Shadow::new()?;
    let coalesced_page = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
    let eptp = shadow.eptp();
    let memslots = Memslots::new()?;
    let active = AtomicPtr::new(memslots.active_ptr());
    let vm = Arc::pin_init(
        try_pin_init!(Vm {
            notifier: crate::notifier::Registration::new(),
            irqfds <- new_mutex!(crate::irqfd::IrqFds::default()),
            mm,
            slots <- new_mutex!(memslots),
            active,
            srcu <- new_srcu!(),
            vcpus <- new_mutex!(KVec::new()),
            caps,
            eptp,
            mmu <- new_spinlock!(shadow),
            roots_epoch: AtomicU64::new(0),
            running: [const { AtomicI32::new(-1) }; abi::MAX_VCPUS as usize],
            stats_id: crate::stats::current_id(None),
            ioeventfds <- new_mutex!(crate::ioeventfd::IoEventFds::default()),
            coalesced <- new_mutex!(crate::coalesced::Zones::default()),
            coalesced_page,
            clock_offset: AtomicU64::new(raw_ns.wrapping_neg()),
            clock_epoch: AtomicU64::new(0),
            inval_seq: AtomicU64::new(0),
            quirks_disabled: AtomicU64::new(0),
            first_tsc_offset: AtomicU64::new(0),
            split_irqchip: AtomicBool::new(false),
            x2apic_format: AtomicBool::new(false),
            broadcast_quirk_disabled: AtomicBool::new(false),
            max_vcpu_ids: AtomicU32::new(0),
            bsp_vcpu_id: AtomicU32::new(0),
            platform_info_readable: AtomicBool::new(true),
            user_space_msr: AtomicU32::new(0),
            msr_filter <- new_spinlock!(None),
            routing <- new_mutex!(Routing::default()),
        }),
        GFP_KERNEL_ACCOUNT,
    )?;
    crate::notifier::register(&vm)?;
    fd::install(c"rkvm-vm", &VM_FOPS, vm)
}

impl Vm {
    /// KVM refuses ioctls from processes other than the creator with -EIO.
    pub(crate) fn check_caller(&self) -> Result {
        let task = current!();
        match task.mm() {
            Some(mm) if mm.as_raw() == self.mm.as_raw() => Ok(()),
            _ => Err(EIO),
        }
    }

    fn set_memory_region(&self, req: abi::KvmUserspaceMemoryRegion2) -> Result<isize> {
        let req = Request {
            slot: req.slot,
            flags: req.flags,
            guest_phys_addr: req.guest_phys_addr,
            memory_size: req.memory_size,
            userspace_addr: req.userspace_addr,
        };
        let mut slots = self.slots.lock();
        let id = req.slot as u16;
        let logged_before = slots.active().by_id(id).is_some_and(|s| s.logs_dirty());
        if let Some(retiring) = slots.apply(&req, &self.active, &self.srcu)? {
            // Published as invalid and waited for: nothing maps it now.
            self.retire_slot(&retiring.slot);
            slots.finish(retiring, &self.active, &self.srcu);
        }
        if let Some(slot) = slots.active().by_id(id) {
            if slot.logs_dirty() && !logged_before {
                // Faults see the flag now; what they mapped writable
                // before is write-protected here.
                shadow::ensure_rmap(&self.mmu, slot.base_gfn, slot.npages)?;
                self.with_mmu(|s, ch| ch.merge(s.start_dirty_log(slot.base_gfn)));
            }
        }
        // KVM's default budget: 20 shadow pages per 1000 guest pages.
        let pages = usize::try_from(slots.active().total_pages() * 20 / 1000).unwrap_or(usize::MAX);
        self.set_mmu_pages(pages, false)?;
        Ok(0)
    }

    /// A snapshot of the shadow MMU's counters.
    pub(crate) fn mmu_stats(&self) -> crate::mmu::stats::MmuStats {
        self.mmu.lock().stats()
    }

    /// Runs `f` on the shadow MMU under its lock, then tells the vCPUs what
    /// they must hear of (before the lock is dropped, as KVM flushes remote
    /// TLBs under `mmu_lock`): a new roots epoch, and a kick out of their
    /// windows, which flushes their TLBs (rkvm runs without VPID, so every
    /// VM entry and exit flushes).
    pub(crate) fn with_mmu<R>(&self, f: impl FnOnce(&mut Shadow, &mut Changes) -> R) -> R {
        let mut s = self.mmu.lock();
        let mut ch = Changes::default();
        let r = f(&mut s, &mut ch);
        if ch.roots {
            self.roots_epoch.fetch_add(1, Ordering::SeqCst);
        }
        if ch.flush || ch.roots {
            self.kick_all();
        }
        drop(s);
        r
    }

    /// The shadow MMU's lock.
    pub(crate) fn mmu(&self) -> &SpinLock<Shadow> {
        &self.mmu
    }

    /// The roots epoch (see the field).
    pub(crate) fn roots_epoch(&self) -> u64 {
        self.roots_epoch.load(Ordering::SeqCst)
    }

    /// The running-CPU cell of the vCPU created `index`-th.
    pub(crate) fn running_cell(&self, index: usize) -> &AtomicI32 {
        &self.running[index % self.running.len()]
    }

    /// `KVM_SET_NR_MMU_PAGES` (`user`), or the default budget after a slot
    /// change.
    fn set_mmu_pages(&self, pages: usize, user: bool) -> Result {
        shadow::resize(&self.mmu, pages)?;
        self.with_mmu(|s, ch| ch.merge(s.set_budget(pages, user)));
        Ok(())
    }

    /// Runs `f` on the active slot set, inside an SRCU read-side section
    /// (which nests in the caller's, if any).
    pub(crate) fn with_slots<R>(&self, f: impl FnOnce(&SlotSet) -> R) -> R {
        let _guard = self.srcu.read_lock();
        // SAFETY: `active` points to the published set of `slots`, which
        // is not written while published nor before the readers of this
        // section are gone (`Memslots` invariant), and lives as long as
        // the VM.
        let set = unsafe { &*self.active.load(Ordering::Acquire) };
        f(set)
    }

    /// An SRCU read-side section over the slots: a fault holds one from
    /// its slot lookup until its mapping is installed, so that a slot
    /// published as invalid is waited for (see `memslot`).
    pub(crate) fn slots_read(&self) -> kernel::sync::srcu::Guard<'_> {
        self.srcu.read_lock()
    }

    /// The slot of guest frame `gfn`.
    pub(crate) fn slot_of(&self, gfn: u64) -> Option<Slot> {
        self.with_slots(|set| set.find(gfn))
    }

    /// The host-invalidation sequence, read without the MMU lock before
    /// pages are looked up for a mapping (see `Shadow::inval_seq`, which
    /// the install checks under the lock). The copy is stored after the
    /// lock-protected value moved, so it is never ahead of it: a stale
    /// read only makes the fault retry.
    pub(crate) fn inval_seq(&self) -> u64 {
        self.inval_seq.load(Ordering::Acquire)
    }

    /// Ends a host invalidation (`Shadow::inval_end`) and publishes the new
    /// sequence to lockless readers.
    fn end_invalidation(&self) {
        let mut mmu = self.mmu.lock();
        mmu.inval_end();
        self.inval_seq.store(mmu.inval_seq(), Ordering::Release);
    }

    /// Prepares a shadow fault on `gfn` outside the MMU lock: the caches
    /// are filled and the slot's rmap exists. Returns the slot, `None` if
    /// no slot backs `gfn`.
    pub(crate) fn mmu_prepare(&self, gfn: u64) -> Result<Option<Slot>> {
        let Some(slot) = self.slot_of(gfn) else {
            return Ok(None);
        };
        shadow::ensure_rmap(&self.mmu, slot.base_gfn, slot.npages)?;
        shadow::topup(&self.mmu)?;
        Ok(Some(slot))
    }

    /// Invalidates every shadow page (a new generation), then zaps the
    /// obsolete ones in batches, yielding the lock and the CPU when the
    /// scheduler asks (KVM's `kvm_mmu_zap_all_fast()`).
    ///
    /// The lock is dropped after every batch, not only when the scheduler
    /// asks: a vCPU reloading its root or faulting spins on it meanwhile,
    /// and the kernel's queued spinlock hands it to that waiter before
    /// this loop gets it back. That is KVM's "yield on contention"
    /// (`rwlock_needbreak()`), which a Rust `SpinLock` cannot ask about;
    /// without it a spinning vCPU stalls for the whole zap (measured:
    /// `inval_test zap_stall`).
    fn zap_all_shadow(&self) {
        self.with_mmu(|s, ch| ch.merge(s.invalidate_all()));
        loop {
            // Obsolete pages are unreachable: every vCPU reloaded its roots
            // (the kick above), so zapping them needs no flush.
            let (done, _) = self.mmu.lock().zap_obsolete(ZAP_BATCH);
            if done {
                break;
            }
            if shim::need_resched() {
                shim::cond_resched();
            }
        }
    }

    /// Zaps only the shadow pages built from the slot's frames (its leaves
    /// are gone already, through its rmap): what KVM does once user space
    /// disabled KVM_X86_QUIRK_SLOT_ZAP_ALL. Pages elsewhere, and the vCPUs
    /// using them, are left alone; the lock is dropped between batches.
    fn zap_slot_shadow(&self, slot: &Slot) {
        let mut next = Some(0);
        while let Some(from) = next {
            next = self.with_mmu(|s, ch| {
                let (next, c) = s.zap_gfn_pages(slot.base_gfn, slot.end_gfn(), from, SLOT_ZAP_SCAN);
                ch.merge(c);
                next
            });
            if shim::need_resched() {
                shim::cond_resched();
            }
        }
    }

    /// The VMX capabilities guests of this VM run with.
    pub(crate) fn caps(&self) -> &VmxCaps {
        &self.caps
    }

    /// The EPT pointer of the VM's identity map.
    pub(crate) fn eptp(&self) -> u64 {
        self.eptp
    }

    /// The process whose memory backs the slots.
    pub(crate) fn mm(&self) -> &Mm {
        &self.mm
    }

    /// The VM's mmu_notifier registration.
    pub(crate) fn notifier(&self) -> &crate::notifier::Registration {
        &self.notifier
    }

    /// mmu_notifier `invalidate_range_start` of the VMM's `[start, end)`
    /// (see `crate::notifier`).
    /// Nothing here sleeps unless `blockable`.
    pub(crate) fn host_invalidate_start(&self, start: u64, end: u64, blockable: bool) {
        // Counted even when no slot is hit: a fault on a slot created
        // meanwhile must not install a page it looked up before.
        self.mmu.lock().inval_begin();
        self.with_slots(|set| {
            for (_, first, last) in set.by_hva(start, end) {
                self.unmap_gfns(first, last, blockable);
            }
        });
    }

    /// mmu_notifier `invalidate_range_end`.
    pub(crate) fn host_invalidate_end(&self) {
        self.end_invalidation();
    }

    /// mmu_notifier `release`: the address space is going away.
    pub(crate) fn host_release(&self) {
        self.with_slots(|set| {
            for (_, first, last) in set.by_hva(0, u64::MAX) {
                self.unmap_gfns(first, last, true);
            }
        });
        self.zap_all_shadow();
    }

    /// mmu_notifier aging: whether a frame backed by `[start, end)` was
    /// used by the guest (see `crate::notifier`), clearing that if `clear`.
    pub(crate) fn host_age(&self, start: u64, end: u64, clear: bool) -> bool {
        self.with_slots(|set| {
            let mut young = false;
            for (_, first, last) in set.by_hva(start, end) {
                young |= self.with_mmu(|s, ch| {
                    let (y, c) = s.age_range(first, last, clear);
                    ch.merge(c);
                    y
                });
            }
            young
        })
    }

    /// The VMM address of guest-physical `[gpa, gpa + len)` if one slot
    /// backs all of it.
    pub(crate) fn gpa_to_hva(&self, gpa: u64, len: u64) -> Option<u64> {
        self.gpa_slot(gpa, len).map(|(_, hva)| hva)
    }

    /// The slot backing all of guest-physical `[gpa, gpa + len)`, and the
    /// VMM address of `gpa` in it.
    pub(crate) fn gpa_slot(&self, gpa: u64, len: u64) -> Option<(Slot, u64)> {
        let slot = self.slot_of(gpa >> 12)?;
        let end = gpa.checked_add(len)?;
        if end > slot.end_gfn() << 12 {
            return None;
        }
        let hva = slot.userspace_addr + (gpa - (slot.base_gfn << 12));
        Some((slot, hva))
    }

    /// The host page behind guest frame `gfn` (pinned, and mapped in the
    /// EPT) and whether it was pinned for writing (it is if `write` and
    /// the VMM's mapping allows it), or `None` if no slot backs it or the
    /// mapping must be retried. The caller holds [`Vm::slots_read`] and
    /// checks the invalidation sequence it read before under the MMU lock.
    pub(crate) fn gfn_pfn(&self, gfn: u64, write: bool) -> Result<Option<(u64, bool)>> {
        // Mapped already (the common case on a shadow fault, for the guest
        // tables above all): no pin to take and give back.
        if let Some((pfn, pin_w)) = self.mmu.lock().ept_lookup(gfn) {
            if pin_w || !write {
                return Ok(Some((pfn, pin_w)));
            }
        }
        if matches!(self.map_gfn(gfn, write)?, Map::NoSlot) {
            return Ok(None);
        }
        Ok(self.mmu.lock().ept_lookup(gfn))
    }

    /// Maps guest frame `gfn` in the EPT if a slot backs it, pinning the
    /// VMM's page. The pin is taken outside every lock (it may fault the
    /// page in, which may call the mmu_notifier); a host invalidation that
    /// ran meanwhile makes the mapping a retry (the vCPU faults again).
    ///
    /// As KVM's `hva_to_pfn()`: the page is pinned for writing unless the
    /// slot is read-only, or the access is a read and the VMM's mapping is
    /// read-only (`mprotect`); then the leaf stays read-only, and a later
    /// write unmaps it and pins again for writing, which fails (`EFAULT`
    /// out of `KVM_RUN`) while the VMM's mapping forbids writes. In a slot
    /// that logs dirty pages the leaf is writable only after a `write`
    /// access, which is logged; a `write` to a mapped, write-protected
    /// leaf makes it writable (and is logged).
    pub(crate) fn map_gfn(&self, gfn: u64, write: bool) -> Result<Map> {
        let _srcu = self.slots_read();
        let Some(slot) = self.slot_of(gfn) else {
            return Ok(Map::NoSlot);
        };
        if slot.invalid() {
            // Being deleted or moved: retry until it is gone.
            return Ok(Map::Retry);
        }
        let (ro, log) = (slot.readonly(), slot.logs_dirty());
        let done = if ro { Map::ReadOnly } else { Map::Mapped };
        let write = write && !ro;
        let mapped = {
            let mut s = self.mmu.lock();
            let mapped = s.ept_lookup(gfn).is_some();
            if mapped && (!write || s.ept_allow_write(gfn, log)) {
                return Ok(done);
            }
            mapped
        };
        if mapped {
            // Pinned read-only, and now written: pin it again, for writing.
            self.unmap_gfns(gfn, gfn + 1, true);
        }
        let seq = self.inval_seq();
        shadow::ensure_rmap(&self.mmu, slot.base_gfn, slot.npages)?;
        shadow::topup(&self.mmu)?;
        let hva = slot.userspace_addr + ((gfn - slot.base_gfn) << 12);
        let (pfn, pin_w) = match shim::pin_user_page(hva, !ro) {
            Ok(pfn) => (pfn, !ro),
            Err(e) if e == EFAULT && !ro && !write => (shim::pin_user_page(hva, false)?, false),
            Err(e) => return Err(e),
        };
        let mut s = self.mmu.lock();
        let mut installed = s.ept_map(gfn, pfn, write || !log, pin_w, log, seq);
        if matches!(installed, Ok(false)) && write && !s.ept_allow_write(gfn, log) {
            // Mapped meanwhile by another vCPU, read-only: fault again.
            installed = Err(shadow::Fail::Retry);
        }
        drop(s);
        if !matches!(installed, Ok(true)) {
            // SAFETY: the pin was taken above and the map did not take it.
            unsafe { shim::unpin_pfn(pfn, false) };
        }
        Ok(if installed.is_ok() { done } else { Map::Retry })
    }

    /// Records guest writes rkvm made itself (emulation, A/D bits, string
    /// input) to `[gpa, gpa + len)` in the dirty log of a logging slot.
    pub(crate) fn mark_dirty(&self, gpa: u64, len: u64) -> Result {
        let Some(last) = gpa.checked_add(len.max(1) - 1) else {
            return Ok(());
        };
        for gfn in gpa >> 12..=last >> 12 {
            let Some(slot) = self.slot_of(gfn).filter(|s| s.logs_dirty()) else {
                continue;
            };
            shadow::ensure_rmap(&self.mmu, slot.base_gfn, slot.npages)?;
            self.mmu.lock().mark_dirty(gfn);
        }
        Ok(())
    }

    /// `KVM_GET_DIRTY_LOG`: copies out the slot's bitmap of pages written
    /// since the last call and write-protects them again.
    fn get_dirty_log(&self, log: abi::KvmDirtyLog) -> Result<isize> {
        let id = log.slot as u16;
        // KVM on x86 has two address spaces (the second for SMM): a slot
        // of the second one is simply never found here.
        let as_id = log.slot >> 16;
        if as_id >= 2 || u32::from(id) >= crate::memslot::region::USER_MEM_SLOTS {
            return Err(EINVAL);
        }
        if as_id != 0 {
            return Err(ENOENT);
        }
        let slots = self.slots.lock();
        let slot = slots
            .active()
            .by_id(id)
            .filter(|s| s.logs_dirty())
            .ok_or(ENOENT)?;
        let words = usize::try_from(slot.npages.div_ceil(64)).map_err(|_| ENOMEM)?;
        let mut bitmap = KVVec::from_elem(0u64, words, GFP_KERNEL_ACCOUNT)?;
        shadow::ensure_rmap(&self.mmu, slot.base_gfn, slot.npages)?;
        self.with_mmu(|s, ch| ch.merge(s.take_dirty_log(slot.base_gfn, &mut bitmap)));
        drop(slots);
        let addr = usize::try_from(log.dirty_bitmap).map_err(|_| EFAULT)?;
        let mut w = UserSlice::new(UserPtr::from_addr(addr), words * 8).writer();
        for word in bitmap.iter() {
            w.write(word)?;
        }
        Ok(0)
    }

    /// Unmaps guest frames `[first, last)` (EPT and shadow leaves), a
    /// batch at a time: each batch's pins are released after the vCPUs
    /// were kicked out of their windows (every window starts with INVEPT
    /// and reloads its shadow root's entries), and the lock is dropped
    /// between batches. It counts as a host invalidation: a fault that
    /// looked one of these pages up before cannot install it.
    pub(crate) fn unmap_gfns(&self, first: u64, last: u64, may_sleep: bool) {
        self.mmu.lock().inval_begin();
        let mut pins = [0u64; UNMAP_BATCH];
        let mut gfn = first;
        while gfn < last {
            let (next, n) = self.with_mmu(|s, ch| {
                let (next, n, c) = s.zap_range(gfn, last, &mut pins);
                ch.merge(c);
                (next, n)
            });
            for old in pins.iter().take(n) {
                // SAFETY: the pin passed from the map to us in `zap_range`;
                // the kick in `with_mmu` made sure no vCPU still uses it.
                unsafe { crate::mmu::ept::unpin(*old) };
            }
            gfn = next;
            if may_sleep {
                shim::cond_resched();
            }
        }
        self.end_invalidation();
    }

    /// Takes the mappings of a slot being deleted or moved away (it is
    /// published as invalid, so none can be added): its frames are
    /// unmapped, every shadow page is retired (the slot may hold guest
    /// tables), and its rmap is freed.
    fn retire_slot(&self, slot: &Slot) {
        // Its rmaps become invalid first (a batch per lock hold): from now
        // on they can only shrink, whatever path tried to add to them.
        let mut next = Some(0);
        while let Some(from) = next {
            next = self
                .mmu
                .lock()
                .invalidate_rmap(slot.base_gfn, from, RMAP_INVALIDATE_BATCH);
            shim::cond_resched();
        }
        self.unmap_gfns(slot.base_gfn, slot.end_gfn(), true);
        if self.quirks_disabled.load(Ordering::Relaxed) & abi::quirks::SLOT_ZAP_ALL != 0 {
            self.zap_slot_shadow(slot);
        } else {
            // KVM's default (KVM_X86_QUIRK_SLOT_ZAP_ALL): everything goes.
            self.zap_all_shadow();
        }
        let rmap = self.mmu.lock().drop_rmap(slot.base_gfn);
        drop(rmap);
    }

    /// Waits until every vCPU that was inside a VMX window has left it.
    /// A window that opens after the fence sees the updated EPT and roots
    /// epoch. Takes no lock (it runs under `mmu`).
    fn kick_all(&self) {
        fence(Ordering::SeqCst);
        for cell in self.running.iter() {
            let cpu = cell.load(Ordering::SeqCst);
            if cpu >= 0 {
                shim::kick_cpu(cpu);
            }
        }
    }

    fn create_vcpu(self: &Arc<Self>, id: usize) -> Result<isize> {
        let mut vcpus = self.vcpus.lock();
        let bound = self.vcpu_id_bound();
        let id = u32::try_from(id)
            .ok()
            .filter(|id| *id < bound)
            .ok_or(EINVAL)?;
        if vcpus.len() >= abi::MAX_VCPUS as usize {
            return Err(EINVAL);
        }
        if vcpus.iter().any(|v| v.id() == id) {
            return Err(EEXIST);
        }
        let apic = self.split_irqchip.load(Ordering::Relaxed);
        // Guest TSC 0 at the first vCPU's creation; the others match it.
        if vcpus.is_empty() {
            let tsc = crate::shim::clock_read().2;
            self.first_tsc_offset
                .store(tsc.wrapping_neg(), Ordering::Relaxed);
        }
        let tsc_offset = self.first_tsc_offset.load(Ordering::Relaxed);
        let bsp = id == self.bsp_vcpu_id.load(Ordering::Relaxed);
        let vcpu = Vcpu::new(
            id,
            vcpus.len(),
            self.caps.revision_id,
            apic,
            tsc_offset,
            bsp,
        )?;
        vcpus.reserve(1, GFP_KERNEL_ACCOUNT)?;
        let vcpu_fd = Arc::new(
            VcpuFd {
                vm: self.clone(),
                vcpu: vcpu.clone(),
            },
            GFP_KERNEL_ACCOUNT,
        )?;
        let fd = fd::install(c"rkvm-vcpu", VcpuFd::fops(), vcpu_fd)?;
        // INVARIANT: id and count were checked under the lock; `reserve`
        // made room, so the push cannot fail.
        vcpus.push(vcpu, GFP_KERNEL_ACCOUNT)?;
        Ok(fd)
    }
}

impl Vm {
    /// Whether user space disabled quirk `q` (`abi::quirks`).
    pub(crate) fn quirk_disabled(&self, q: u64) -> bool {
        self.quirks_disabled.load(Ordering::Relaxed) & q != 0
    }

    /// `KVM_ENABLE_CAP` on the VM (KVM's `kvm_vm_ioctl_enable_cap()`):
    /// only the quirk switches. `KVM_CAP_DISABLE_QUIRKS2` refuses quirks
    /// rkvm does not have; the older `KVM_CAP_DISABLE_QUIRKS` ignores them.
    /// Quirks stay disabled for the VM's life, as on KVM.
    fn enable_cap(&self, cap: &abi::KvmEnableCap) -> Result {
        use abi::{cap_disable_quirks as dq, quirks};
        if cap.flags != 0 {
            return Err(EINVAL);
        }
        match cap.cap {
            abi::CAP_SPLIT_IRQCHIP => return self.enable_split_irqchip(cap.args[0]),
            // KVM: at most its own bound, and once (the same value again
            // is accepted).
            abi::CAP_MAX_VCPU_ID => {
                if cap.args[0] > u64::from(abi::MAX_VCPUS) {
                    return Err(EINVAL);
                }
                let _vcpus = self.vcpus.lock();
                let n = cap.args[0] as u32;
                // Not below the boot CPU's id.
                if self.bsp_vcpu_id.load(Ordering::Relaxed) > n {
                    return Err(EINVAL);
                }
                return match self.max_vcpu_ids.load(Ordering::Relaxed) {
                    0 => {
                        self.max_vcpu_ids.store(n, Ordering::Relaxed);
                        Ok(())
                    }
                    cur if cur == n => Ok(()),
                    _ => Err(EINVAL),
                };
            }
            abi::CAP_X2APIC_API => {
                if cap.args[0] & !abi::X2APIC_API_VALID != 0 {
                    return Err(EINVAL);
                }
                let on = cap.args[0] & abi::X2APIC_API_USE_32BIT_IDS != 0;
                self.x2apic_format.store(on, Ordering::Relaxed);
                let off = cap.args[0] & abi::X2APIC_API_DISABLE_BROADCAST_QUIRK != 0;
                self.broadcast_quirk_disabled.store(off, Ordering::Relaxed);
                return Ok(());
            }
            // 1: an instruction rkvm cannot emulate always ends KVM_RUN
            // with KVM_INTERNAL_ERROR_EMULATION (rkvm never injects #UD
            // for it, so both values behave the same).
            abi::CAP_EXIT_ON_EMULATION_FAILURE => {
                if cap.args[0] & !1 != 0 {
                    return Err(EINVAL);
                }
                return Ok(());
            }
            // The failures that exit to user space, any time (KVM).
            abi::CAP_X86_USER_SPACE_MSR => {
                if cap.args[0] & !u64::from(msr_filter::reason::VALID) != 0 {
                    return Err(EINVAL);
                }
                self.user_space_msr
                    .store(cap.args[0] as u32, Ordering::Relaxed);
                return Ok(());
            }
            // Whether the guest may read MSR_PLATFORM_INFO (any value).
            abi::CAP_MSR_PLATFORM_INFO => {
                self.platform_info_readable
                    .store(cap.args[0] != 0, Ordering::Relaxed);
                return Ok(());
            }
            _ => {}
        }
        let bits = match cap.cap {
            dq::V2 if cap.args[0] & !quirks::SUPPORTED != 0 => return Err(EINVAL),
            dq::V1 | dq::V2 => cap.args[0] & quirks::SUPPORTED,
            _ => return Err(EINVAL),
        };
        // Serialized with slot updates, which read it.
        let _slots = self.slots.lock();
        self.quirks_disabled.fetch_or(bits, Ordering::Relaxed);
        Ok(())
    }
}

/// Guest MSR accesses user space filters or handles. Model:
/// `kvm_vm_ioctl_set_msr_filter()` and `kvm_msr_allowed()` in
/// `arch/x86/kvm/msrs.c`; the rules are `crate::x86::msr_filter`'s.
impl Vm {
    /// `KVM_X86_SET_MSR_FILTER`: checks the header and every range
    /// (EINVAL), copies the bitmaps (EFAULT), then replaces the filter.
    /// vCPUs see it from their next RDMSR/WRMSR on; rkvm intercepts every
    /// MSR access, so no pass-through needs recomputing.
    fn set_msr_filter(&self, f: &abi::KvmMsrFilter) -> Result {
        msr_filter::filter_valid(f.flags, f.ranges.iter().map(|r| r.nmsrs)).map_err(|_| EINVAL)?;
        let mut ranges = KVec::new();
        for r in &f.ranges {
            let Some(bytes) = msr_filter::range_bytes(r.flags, r.nmsrs).map_err(|_| EINVAL)? else {
                continue;
            };
            let mut bitmap = KVec::from_elem(0u8, bytes, GFP_KERNEL_ACCOUNT)?;
            UserSlice::new(UserPtr::from_addr(r.bitmap as usize), bytes)
                .reader()
                .read_slice(&mut bitmap)?;
            ranges.push(
                msr_filter::Range {
                    flags: r.flags,
                    base: r.base,
                    nmsrs: r.nmsrs,
                    bitmap,
                },
                GFP_KERNEL_ACCOUNT,
            )?;
        }
        let new = MsrFilter {
            default_allow: f.flags & msr_filter::DEFAULT_DENY == 0,
            ranges,
        };
        // The guard is gone at the end of the statement; the old filter
        // is freed after it.
        let old = core::mem::replace(&mut *self.msr_filter.lock(), Some(new));
        drop(old);
        Ok(())
    }

    /// Whether the filter lets the guest read (`write` false) or write MSR
    /// `index`. Called in the VMX window (a spinlock, no allocation).
    pub(crate) fn msr_allowed(&self, index: u32, write: bool) -> bool {
        if (0x800..=0x8ff).contains(&index) {
            return true;
        }
        match &*self.msr_filter.lock() {
            None => true,
            Some(f) => msr_filter::allowed(f.default_allow, &f.ranges, index, write),
        }
    }

    /// Whether a guest MSR access that failed for `reason`
    /// (`msr_filter::reason`) exits to user space.
    pub(crate) fn user_space_msr(&self, reason: u32) -> bool {
        self.user_space_msr.load(Ordering::Relaxed) & reason != 0
    }
}

/// The split irqchip: in-kernel local APICs (`crate::x86::lapic`), MSIs
/// and IPIs between them, and the EOIs user space's I/O APIC hears of.
/// Model: `kvm_vm_ioctl_enable_cap()` in `arch/x86/kvm/x86.c`,
/// `kvm_irq_delivery_to_apic()` in `arch/x86/kvm/lapic.c`.
impl Vm {
    /// `KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, pins)`: EINVAL for more
    /// pins than routes (4096), EEXIST once enabled or once a vCPU exists
    /// (KVM's order and errnos).
    fn enable_split_irqchip(&self, pins: u64) -> Result {
        if pins > u64::from(abi::MAX_IRQ_ROUTES) {
            return Err(EINVAL);
        }
        let vcpus = self.vcpus.lock();
        if self.split_irqchip.load(Ordering::Relaxed) || !vcpus.is_empty() {
            return Err(EEXIST);
        }
        self.routing.lock().pins = pins as u32;
        self.split_irqchip.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The coalesced ring page (mapped by the vCPUs).
    pub(crate) fn coalesced_page(&self) -> &Page {
        &self.coalesced_page
    }

    /// A guest write the kernel completes without an exit: an ioeventfd
    /// signal, else an append to the coalesced ring. False if neither
    /// takes it (the write exits to user space).
    pub(crate) fn kernel_write(&self, pio: bool, addr: u64, len: u32, value: u64) -> bool {
        self.ioeventfds.lock().write(pio, addr, len, value)
            || self
                .coalesced
                .lock()
                .write(&self.coalesced_page, pio, addr, len, value)
    }

    /// vCPU ids must be below this: `KVM_CAP_MAX_VCPU_ID` as enabled, else
    /// rkvm's most.
    fn vcpu_id_bound(&self) -> u32 {
        match self.max_vcpu_ids.load(Ordering::Relaxed) {
            0 => abi::MAX_VCPUS,
            n => n,
        }
    }

    /// A vCPU's TSC offset was set: vCPUs created from now on start with it.
    pub(crate) fn set_first_tsc_offset(&self, offset: u64) {
        self.first_tsc_offset.store(offset, Ordering::Relaxed);
    }

    /// `KVM_CAP_MSR_PLATFORM_INFO` (see the field).
    pub(crate) fn platform_info_readable(&self) -> bool {
        self.platform_info_readable.load(Ordering::Relaxed)
    }

    pub(crate) fn x2apic_format(&self) -> bool {
        self.x2apic_format.load(Ordering::Relaxed)
    }

    pub(crate) fn has_irqchip(&self) -> bool {
        self.split_irqchip.load(Ordering::Relaxed)
    }

    /// Sends `msg` to every local APIC it is for (`sender`: the index of
    /// the vCPU whose ICR sent it). A lowest-priority message goes to the
    /// first APIC that matches (KVM arbitrates by priority; rkvm does
    /// not). Returns how many APICs took it.
    pub(crate) fn deliver(&self, msg: lapic::Message, sender: Option<usize>) -> usize {
        let quirk = sender.is_none() && self.broadcast_quirk();
        let vcpus = self.vcpus.lock();
        let mut n = 0;
        for v in vcpus.iter() {
            if !v.deliver(msg, sender == Some(v.index()), quirk) {
                continue;
            }
            n += 1;
            self.kick(v);
            if msg.mode == lapic::mode::LOWEST {
                break;
            }
        }
        n
    }

    /// Makes vCPU `v` look at its APIC: wakes it if it waits, and kicks it
    /// out of its VMX window if it runs (the window checks the APIC after
    /// publishing `running`, see `Window::open`).
    pub(crate) fn kick(&self, v: &Vcpu) {
        v.wake();
        fence(Ordering::SeqCst);
        let cpu = self.running[v.index()].load(Ordering::SeqCst);
        if cpu >= 0 {
            shim::kick_cpu(cpu);
        }
    }

    /// Whether an EOI of `vector` by vCPU `v` goes to user space
    /// (`KVM_EXIT_IOAPIC_EOI`): some MSI route of an I/O APIC pin sends it
    /// level-triggered to `v`.
    pub(crate) fn eoi_exits(&self, v: &Vcpu, vector: u8) -> bool {
        let routing = self.routing.lock();
        routing.msi.iter().any(|&(gsi, address, data)| {
            let m = lapic::msi_message(address, data);
            gsi < routing.pins
                && m.level
                && m.vector == vector
                && v.apic_matches(m.dest, self.broadcast_quirk())
        })
    }

    /// Whether KVM's x2APIC broadcast quirk applies: a message that is not
    /// an IPI (an MSI), sent to id 0xff, is a broadcast for APICs in x2APIC
    /// mode (KVM's `kvm_apic_mda()`). On unless user space disabled it.
    fn broadcast_quirk(&self) -> bool {
        !self.broadcast_quirk_disabled.load(Ordering::Relaxed)
    }

    /// An irqfd on `gsi` was signalled: its MSI route, if any, is sent
    /// (`crate::irqfd`; process context, no lock held).
    pub(crate) fn irqfd_fire(&self, gsi: u32) {
        let route = self
            .routing
            .lock()
            .msi
            .iter()
            .find(|r| r.0 == gsi)
            .map(|&(_, address, data)| lapic::msi_message(address, data));
        if let Some(msg) = route {
            self.deliver(msg, None);
        }
    }

    /// `KVM_SIGNAL_MSI`: EINVAL without the irqchip or with flags other
    /// than KVM_MSI_VALID_DEVID (a device id, which x86 ignores); the
    /// number of APICs that took it (0 for none, as KVM).
    fn signal_msi(&self, msi: &abi::KvmMsi) -> Result<isize> {
        if !self.has_irqchip() || msi.flags & !abi::MSI_VALID_DEVID != 0 {
            return Err(EINVAL);
        }
        let address = u64::from(msi.address_hi) << 32 | u64::from(msi.address_lo);
        Ok(self.deliver(lapic::msi_message(address, msi.data), None) as isize)
    }

    /// `KVM_SET_GSI_ROUTING`: all or nothing; EINVAL without the irqchip,
    /// for flags, more than 4096 entries, a GSI out of range, entry flags
    /// but KVM_MSI_VALID_DEVID, a second route for a GSI, and any type but MSI (irqchip pins are user space's with a split
    /// irqchip).
    fn set_gsi_routing(&self, arg: usize) -> Result {
        let head = UserSlice::new(UserPtr::from_addr(arg), size_of::<abi::KvmIrqRouting>())
            .reader()
            .read::<abi::KvmIrqRouting>()?;
        if !self.has_irqchip() || head.flags != 0 || head.nr > abi::MAX_IRQ_ROUTES {
            return Err(EINVAL);
        }
        let n = head.nr as usize;
        let mut reader = UserSlice::new(
            UserPtr::from_addr(abi::entries_addr(arg)?),
            n * size_of::<abi::KvmIrqRoutingEntry>(),
        )
        .reader();
        let mut msi = KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        // The GSIs seen: one MSI route per GSI, as KVM.
        let mut seen = [0u64; abi::MAX_IRQ_ROUTES as usize / 64];
        for _ in 0..n {
            let e = reader.read::<abi::KvmIrqRoutingEntry>()?;
            if e.gsi >= abi::MAX_IRQ_ROUTES
                || e.flags & !abi::MSI_VALID_DEVID != 0
                || e.kind != abi::IRQ_ROUTING_MSI
                || seen[e.gsi as usize / 64] & 1 << (e.gsi % 64) != 0
            {
                return Err(EINVAL);
            }
            seen[e.gsi as usize / 64] |= 1 << (e.gsi % 64);
            let address = u64::from(e.address_hi) << 32 | u64::from(e.address_lo);
            msi.push((e.gsi, address, e.data), GFP_KERNEL_ACCOUNT)?;
        }
        self.routing.lock().msi = msi;
        Ok(())
    }
}

/// The kvmclock (`KVM_GET_CLOCK`, `KVM_SET_CLOCK` and the guest's pvclock
/// pages). Model: `get_kvmclock()`/`kvm_vm_ioctl_set_clock()` in
/// `arch/x86/kvm/x86.c` without the master clock.
impl Vm {
    /// One reading: (kvmclock ns, host wall clock ns, host TSC).
    pub(crate) fn clock_now(&self) -> (u64, u64, u64) {
        let (raw, real, tsc) = crate::shim::clock_read();
        let clock = raw.wrapping_add(self.clock_offset.load(Ordering::Relaxed));
        (clock, real, tsc)
    }

    /// The value of `clock_epoch` (see there).
    pub(crate) fn clock_epoch(&self) -> u64 {
        self.clock_epoch.load(Ordering::Acquire)
    }

    /// `KVM_GET_CLOCK`: the clock with the wall clock and TSC read with it
    /// (KVM gives those two only with its master clock; rkvm always can).
    fn get_clock(&self) -> abi::KvmClockData {
        let (clock, realtime, host_tsc) = self.clock_now();
        abi::KvmClockData {
            clock,
            flags: abi::clock_flags::REALTIME | abi::clock_flags::HOST_TSC,
            realtime,
            host_tsc,
            ..Default::default()
        }
    }

    /// `KVM_SET_CLOCK`: the clock reads `data.clock` now, or, with
    /// KVM_CLOCK_REALTIME, `data.clock` plus the wall-clock time elapsed
    /// since `data.realtime` (never stepping back). TSC_STABLE and
    /// HOST_TSC are accepted and ignored, so that what `KVM_GET_CLOCK`
    /// returned can be handed back.
    fn set_clock(&self, data: &abi::KvmClockData) -> Result {
        use abi::clock_flags::*;
        if data.flags & !(TSC_STABLE | REALTIME | HOST_TSC) != 0 {
            return Err(EINVAL);
        }
        let (raw, real, _) = crate::shim::clock_read();
        let mut clock = data.clock;
        if data.flags & REALTIME != 0 && real > data.realtime {
            clock = clock.wrapping_add(real - data.realtime);
        }
        self.clock_offset
            .store(clock.wrapping_sub(raw), Ordering::Relaxed);
        self.clock_epoch.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

impl fd::FdObject for Vm {
    /// Closing the VM fd ends its irqfds, even while vCPU fds keep the VM
    /// alive (KVM's `kvm_vm_release()`).
    fn release(&self) {
        self.irqfds.lock().clear();
    }

    fn ioctl(this: ArcBorrow<'_, Self>, cmd: u32, arg: usize) -> Result<isize> {
        this.check_caller()?;
        let user = |size| UserSlice::new(UserPtr::from_addr(arg), size);
        match cmd {
            abi::KVM_CHECK_EXTENSION => Ok(abi::check_extension(arg)),
            abi::KVM_SET_USER_MEMORY_REGION => {
                let r = user(core::mem::size_of::<abi::KvmUserspaceMemoryRegion>())
                    .reader()
                    .read::<abi::KvmUserspaceMemoryRegion>()?;
                this.set_memory_region(r.into())
            }
            abi::KVM_SET_USER_MEMORY_REGION2 => {
                let r = user(core::mem::size_of::<abi::KvmUserspaceMemoryRegion2>())
                    .reader()
                    .read::<abi::KvmUserspaceMemoryRegion2>()?;
                this.set_memory_region(r)
            }
            abi::KVM_CREATE_VCPU => Arc::from(this).create_vcpu(arg),
            abi::KVM_GET_DIRTY_LOG => {
                let log = user(core::mem::size_of::<abi::KvmDirtyLog>())
                    .reader()
                    .read::<abi::KvmDirtyLog>()?;
                this.get_dirty_log(log)
            }
            // rkvm runs unpaged guests with unrestricted guest, so neither
            // area is ever used (as in KVM with unrestricted guest); the
            // arguments are checked as KVM checks them.
            abi::KVM_SET_TSS_ADDR => {
                if arg > 0xffff_d000 {
                    return Err(EINVAL);
                }
                Ok(0)
            }
            abi::KVM_SET_IDENTITY_MAP_ADDR => {
                let vcpus = this.vcpus.lock();
                if !vcpus.is_empty() {
                    return Err(EINVAL);
                }
                user(size_of::<u64>()).reader().read::<u64>()?;
                Ok(0)
            }
            abi::KVM_GET_TSC_KHZ => Ok(crate::shim::tsc_khz() as isize),
            // KVM: EBUSY once a vCPU exists, EINVAL above the id bound
            // (the bound itself is accepted, as KVM's check is `>`).
            abi::KVM_SET_BOOT_CPU_ID => {
                let vcpus = this.vcpus.lock();
                let bound = this.vcpu_id_bound();
                if !vcpus.is_empty() {
                    return Err(EBUSY);
                }
                let id = u32::try_from(arg)
                    .ok()
                    .filter(|id| *id <= bound)
                    .ok_or(EINVAL)?;
                this.bsp_vcpu_id.store(id, Ordering::Relaxed);
                Ok(0)
            }
            abi::KVM_SET_NR_MMU_PAGES => {
                if arg < shadow::MIN_PAGES {
                    return Err(EINVAL);
                }
                let _slots = this.slots.lock();
                this.set_mmu_pages(arg, true)?;
                Ok(0)
            }
            // KVM ignores the argument.
            abi::KVM_GET_STATS_FD => crate::stats::vm_stats_fd(Arc::from(this)),
            abi::KVM_IOEVENTFD => this.ioeventfds.lock().ioctl(arg),
            abi::KVM_REGISTER_COALESCED_MMIO | abi::KVM_UNREGISTER_COALESCED_MMIO => {
                this.coalesced.lock().ioctl(cmd, arg)
            }
            abi::KVM_ENABLE_CAP => {
                let cap = user(size_of::<abi::KvmEnableCap>())
                    .reader()
                    .read::<abi::KvmEnableCap>()?;
                this.enable_cap(&cap)?;
                Ok(0)
            }
            abi::KVM_GET_CLOCK => {
                let data = this.get_clock();
                user(size_of::<abi::KvmClockData>()).writer().write(&data)?;
                Ok(0)
            }
            abi::KVM_SET_CLOCK => {
                let data = user(size_of::<abi::KvmClockData>())
                    .reader()
                    .read::<abi::KvmClockData>()?;
                this.set_clock(&data)?;
                Ok(0)
            }
            abi::KVM_SIGNAL_MSI => {
                let msi = user(size_of::<abi::KvmMsi>())
                    .reader()
                    .read::<abi::KvmMsi>()?;
                this.signal_msi(&msi)
            }
            abi::KVM_IRQFD => {
                let args = user(size_of::<abi::KvmIrqfd>())
                    .reader()
                    .read::<abi::KvmIrqfd>()?;
                this.irqfds.lock().ioctl(&this, &args)
            }
            abi::KVM_SET_GSI_ROUTING => {
                this.set_gsi_routing(arg)?;
                Ok(0)
            }
            abi::KVM_X86_SET_MSR_FILTER => {
                let f = user(size_of::<abi::KvmMsrFilter>())
                    .reader()
                    .read::<abi::KvmMsrFilter>()?;
                this.set_msr_filter(&f)?;
                Ok(0)
            }
            // KVM's `kvm_arch_vm_ioctl()` answers what it does not know
            // with ENOTTY (the system fd's unknown ioctls get EINVAL).
            _ => Err(ENOTTY),
        }
    }
}
