// SPDX-License-Identifier: GPL-2.0

//! A virtual machine: its memory slots and vCPUs, behind a VM fd.
//!
//! Lifetimes: the VM fd and every vCPU fd hold an `Arc<Vm>`, so the VM lives
//! while any of its fds is open and fds may be closed in any order. The VM
//! owns its vCPUs (KVM never destroys a vCPU before its VM either: closing a
//! vCPU fd does not free the id). Model: `virt/kvm/kvm_main.c`.

use core::sync::atomic::{
    fence,
    AtomicU64,
    Ordering, //
};

use kernel::{
    alloc::KVec,
    mm::Mm,
    new_mutex,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        ArcBorrow,
        Mutex, //
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
    mmu::ept::Ept,
    shim,
    vcpu::{
        Vcpu,
        VcpuFd, //
    },
    vmx::caps::VmxCaps,
};

static VM_FOPS: fd::Fops = fd::fops::<Vm>(None);

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
    /// The mapping generation: moves when pinned pages are taken away (a
    /// slot deleted or moved); shadow tables of an older generation are
    /// dropped before their vCPU enters the guest again.
    mmu_gen: AtomicU64,
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
    let vm = Arc::pin_init(
        pin_init!(Vm {
            mm,
            slots <- new_mutex!(Memslots::default()),
            vcpus <- new_mutex!(KVec::new()),
            caps,
            ept <- new_mutex!(ept),
            eptp,
            mmu_gen: AtomicU64::new(0),
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
        Ok(0)
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

    /// The current mapping generation.
    pub(crate) fn mmu_gen(&self) -> u64 {
        self.mmu_gen.load(Ordering::SeqCst)
    }

    /// The host page behind guest frame `gfn` (pinned, and mapped in the
    /// EPT), or `None` if no slot backs it.
    pub(crate) fn gfn_pfn(&self, gfn: u64) -> Result<Option<u64>> {
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
        if pfns.is_empty() {
            return Ok(());
        }
        // Shadow tables may map these pages too: retire them all.
        self.mmu_gen.fetch_add(1, Ordering::SeqCst);
        self.kick_all();
        for pfn in pfns {
            // SAFETY: each pin was owned by the EPT, which gave it up in
            // `clear`; no vCPU can reach the page any more (kicked, and
            // every window starts with INVEPT).
            unsafe { shim::unpin_pfn(pfn) };
        }
        Ok(())
    }

    /// Waits until every vCPU that was inside a VMX window has left it.
    /// A window that opens after the fence sees the updated EPT.
    fn kick_all(&self) {
        fence(Ordering::SeqCst);
        for vcpu in self.vcpus.lock().iter() {
            if let Some(cpu) = crate::vcpu::running_cpu(vcpu) {
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
        let vcpu = Vcpu::new(id, self.caps.revision_id)?;
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
            _ => Err(EINVAL),
        }
    }
}
