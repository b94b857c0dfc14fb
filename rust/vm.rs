// SPDX-License-Identifier: GPL-2.0

//! A virtual machine: its memory slots and vCPUs, behind a VM fd.
//!
//! Lifetimes: the VM fd and every vCPU fd hold an `Arc<Vm>`, so the VM lives
//! while any of its fds is open and fds may be closed in any order. The VM
//! owns its vCPUs (KVM never destroys a vCPU before its VM either: closing a
//! vCPU fd does not free the id). Model: `virt/kvm/kvm_main.c`.

use core::sync::atomic::{
    fence,
    AtomicI32,
    AtomicU64,
    Ordering, //
};

use kernel::{
    alloc::KVec,
    mm::Mm,
    new_mutex, new_spinlock,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        ArcBorrow,
        Mutex,
        SpinLock, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::{
    abi, fd,
    memslot::{
        region::Request,
        Memslots, //
    },
    mmu::{
        ept::Ept,
        shadow::{
            self,
            Changes,
            Shadow, //
        },
    },
    shim,
    vcpu::{
        Vcpu,
        VcpuFd, //
    },
    vmx::caps::VmxCaps,
};

static VM_FOPS: fd::Fops = fd::fops::<Vm>(None);

/// Obsolete shadow pages zapped between checks for a waiting scheduler
/// (KVM's `BATCH_ZAP_PAGES`).
const ZAP_BATCH: usize = 10;

/// A VM.
///
/// # Invariants
///
/// `vcpus` holds at most [`abi::MAX_VCPUS`] vCPUs with distinct ids below
/// that bound.
#[pin_data]
pub(crate) struct Vm {
    /// The address space of the process that created the VM: guest memory
    /// lives there, and only that process may use the VM.
    mm: ARef<Mm>,
    /// Memory slots; the mutex serializes updates (KVM's `slots_lock`).
    #[pin]
    slots: Mutex<Memslots>,
    /// The vCPUs, in creation order.
    #[pin]
    vcpus: Mutex<KVec<Arc<Vcpu>>>,
    /// The CPU's VMX capabilities, read when the VM was created.
    caps: VmxCaps,
    /// The EPT identity map of the slots (unpaged guest modes).
    #[pin]
    ept: Mutex<Ept>,
    /// `ept`'s EPT pointer; the root never changes.
    eptp: u64,
    /// The shadow MMU (KVM's `mmu_lock` and what it protects). Lock order:
    /// `slots`, then `mmu`; `ept` is never held with `mmu`.
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
    let ept = Ept::new()?;
    let eptp = ept.eptp();
    let shadow = Shadow::new()?;
    let vm = Arc::pin_init(
        pin_init!(Vm {
            mm,
            slots <- new_mutex!(Memslots::default()),
            vcpus <- new_mutex!(KVec::new()),
            caps,
            ept <- new_mutex!(ept),
            eptp,
            mmu <- new_spinlock!(shadow),
            roots_epoch: AtomicU64::new(0),
            running: [const { AtomicI32::new(-1) }; abi::MAX_VCPUS as usize],
            stats_id: crate::stats::current_id(None),
            ioeventfds <- new_mutex!(crate::ioeventfd::IoEventFds::default()),
        }),
        GFP_KERNEL_ACCOUNT,
    )?;
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
        if let Some((start, _end)) = slots.apply(&req)? {
            self.zap_slot(start)?;
        }
        // KVM's default budget: 20 shadow pages per 1000 guest pages.
        let pages = usize::try_from(slots.total_pages() * 20 / 1000).unwrap_or(usize::MAX);
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

    /// Prepares a shadow fault on `gfn` outside the MMU lock: the caches
    /// are filled and the slot's rmap exists. False if no slot backs `gfn`.
    pub(crate) fn mmu_prepare(&self, gfn: u64) -> Result<bool> {
        {
            let slots = self.slots.lock();
            let Some(slot) = slots.find(gfn) else {
                return Ok(false);
            };
            shadow::ensure_rmap(&self.mmu, slot.base_gfn, slot.npages)?;
        }
        shadow::topup(&self.mmu)?;
        Ok(true)
    }

    /// Invalidates every shadow page (a new generation), then zaps the
    /// obsolete ones in batches, yielding the lock and the CPU when the
    /// scheduler asks (KVM's `kvm_mmu_zap_all_fast()`).
    fn zap_all_shadow(&self) {
        self.with_mmu(|s, ch| ch.merge(s.invalidate_all()));
        let mut s = self.mmu.lock();
        loop {
            // Obsolete pages are unreachable: every vCPU reloaded its roots
            // (the kick above), so zapping them needs no flush.
            let (done, _) = s.zap_obsolete(ZAP_BATCH);
            if done {
                break;
            }
            if shim::need_resched() {
                drop(s);
                shim::cond_resched();
                s = self.mmu.lock();
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

    /// The VMM address of guest-physical `[gpa, gpa + len)` if one slot
    /// backs all of it.
    pub(crate) fn gpa_to_hva(&self, gpa: u64, len: u64) -> Option<u64> {
        let slots = self.slots.lock();
        let slot = slots.find(gpa >> 12)?;
        let end = gpa.checked_add(len)?;
        if end > slot.end_gfn() << 12 {
            return None;
        }
        Some(slot.userspace_addr + (gpa - (slot.base_gfn << 12)))
    }

    /// The host page behind guest frame `gfn` (pinned, and mapped in the
    /// EPT), or `None` if no slot backs it.
    pub(crate) fn gfn_pfn(&self, gfn: u64) -> Result<Option<u64>> {
        // Mapped already (the common case on a shadow fault, for the guest
        // tables above all): no pin to take and give back. A slot change
        // racing with this is caught under the MMU lock (generation).
        if let Some(pfn) = self.ept.lock().lookup(gfn) {
            return Ok(Some(pfn));
        }
        if !self.map_gfn(gfn)? {
            return Ok(None);
        }
        // A slot change between the two steps: the caller retries.
        Ok(self.ept.lock().lookup(gfn))
    }

    /// Maps guest frame `gfn` in the EPT if a slot backs it (pinning the
    /// VMM's page). Returns false for a frame no slot backs (MMIO).
    pub(crate) fn map_gfn(&self, gfn: u64) -> Result<bool> {
        // The slots lock is held across the pin so that a slot cannot be
        // deleted (and zapped) between the lookup and the mapping.
        let slots = self.slots.lock();
        let Some(slot) = slots.find(gfn) else {
            return Ok(false);
        };
        let hva = slot.userspace_addr + ((gfn - slot.base_gfn) << 12);
        let pfn = shim::pin_user_page(hva)?;
        let installed = self.ept.lock().map(gfn, pfn, slot.base_gfn, slot.npages);
        if !matches!(installed, Ok(true)) {
            // Already mapped by another vCPU, or no memory for a table.
            // SAFETY: the pin was taken above and the map did not take it.
            unsafe { shim::unpin_pfn(pfn) };
        }
        installed.map(|_| true)
    }

    /// Unmaps the frames of the slot that started at `base_gfn` (deleted
    /// or moved): drains its rmap, clearing the EPT entries, makes sure no
    /// vCPU still runs on them, then unpins the pages. Called with the
    /// slots lock held.
    fn zap_slot(&self, base_gfn: u64) -> Result {
        let mut pfns = KVec::new();
        self.ept.lock().zap_slot(base_gfn, &mut pfns)?;
        // Shadow pages may map these pages too: retire them all, then the
        // slot's (now empty) rmap. Retiring them kicks every vCPU out of
        // its window after the EPT change above, which is the kick the
        // EPT needs too.
        self.zap_all_shadow();
        self.mmu.lock().drop_rmap(base_gfn);
        for pfn in pfns {
            // SAFETY: each pin was owned by the EPT, which gave it up in
            // `clear`; no vCPU can reach the page any more (kicked, and
            // every window starts with INVEPT).
            unsafe { shim::unpin_pfn(pfn) };
        }
        Ok(())
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
        let id = u32::try_from(id)
            .ok()
            .filter(|id| *id < abi::MAX_VCPUS)
            .ok_or(EINVAL)?;
        let mut vcpus = self.vcpus.lock();
        if vcpus.len() >= abi::MAX_VCPUS as usize {
            return Err(EINVAL);
        }
        if vcpus.iter().any(|v| v.id() == id) {
            return Err(EEXIST);
        }
        let vcpu = Vcpu::new(id, vcpus.len(), self.caps.revision_id)?;
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

impl fd::FdObject for Vm {
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
            _ => Err(EINVAL),
        }
    }
}
