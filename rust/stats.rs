// SPDX-License-Identifier: GPL-2.0

//! Binary statistics of VMs and vCPUs (`KVM_GET_STATS_FD`).
//!
//! `KVM_GET_STATS_FD` on a VM or vCPU fd returns a new fd: a read-only,
//! `pread`-able file whose bytes [`layout`] defines (header, id string,
//! descriptors, values). Every `read` samples the values anew; the rest of
//! the file never changes. The file holds references on its VM (and vCPU),
//! so it stays valid after the VM and vCPU fds are closed, and its `owner`
//! pins the module. Model: `kvm_vm_ioctl_get_stats_fd()` and
//! `kvm_vcpu_ioctl_get_stats_fd()` in `virt/kvm/kvm_main.c` (an `O_RDONLY`
//! anonymous file with `FMODE_PREAD`, `noop_llseek`, no `write`), and
//! `kvm_stats_read()` in `virt/kvm/binary_stats.c`.
//!
//! * VM statistics: every field of [`MmuStats`], under the field's name.
//! * vCPU statistics: the [`VcpuStat`] counters, under KVM's names.

pub(crate) mod layout;

use core::{
    ptr::NonNull,
    sync::atomic::{
        AtomicU64,
        Ordering, //
    },
};

use kernel::ffi::{
    c_char,
    c_int,
    c_void, //
};

use kernel::{
    alloc::KVec,
    bindings,
    error::from_err_ptr,
    fs::file::{
        File,
        FileDescriptorReservation, //
    },
    module::this_module,
    prelude::*,
    sync::{
        aref::ARef,
        Arc, //
    },
    types::ForeignOwnable,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::{
    mmu::stats::{
        MmuStats,
        RMAP_HIST_BUCKETS, //
    },
    vcpu::VcpuFd,
    vm::Vm,
};

use layout::{
    Desc,
    NAME_SIZE, //
};

/// The id string at the start of a stats file ([`layout::vm_id`],
/// [`layout::vcpu_id`]).
pub(crate) type StatsId = [u8; NAME_SIZE];

/// The id string of a VM or vCPU created now, by the current task.
pub(crate) fn current_id(vcpu_id: Option<u32>) -> StatsId {
    // KVM uses `task_pid_nr(current)`: the creating thread's id, which is
    // `task->pid`.
    let pid = current!().pid();
    match vcpu_id {
        None => layout::vm_id(pid),
        Some(id) => layout::vcpu_id(pid, id),
    }
}

/// Lists the vCPU counters once: [`VcpuStat`] and the descriptors, in the
/// same order (a counter's index is its place in the data block).
macro_rules! vcpu_stats {
    ($($(#[doc = $doc:literal])+ $stat:ident = $name:literal,)+) => {
        /// A per-vCPU counter: cumulative, named as KVM's statistic of the
        /// same meaning (`kvm_vcpu_stats_desc` in `arch/x86/kvm/x86.c`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum VcpuStat {
            $($(#[doc = $doc])+ $stat,)+
        }

        impl VcpuStat {
            /// Every counter, in file order.
            const ALL: [Self; VCPU_STATS] = [$(Self::$stat,)+];
        }

        /// The vCPU statistics, in [`VcpuStat`] order.
        const VCPU_DESCS: &[Desc] = layout::checked(&[$(Desc::cumulative($name),)+]);
    };
}

vcpu_stats! {
    /// VM exits (every exit from the guest, whatever its reason).
    Exits = "exits",
    /// Exits for port I/O (IN, OUT, INS, OUTS).
    IoExits = "io_exits",
    /// Returns to user space for MMIO (`KVM_EXIT_MMIO`).
    MmioExits = "mmio_exits",
    /// Exits for HLT.
    HaltExits = "halt_exits",
    /// Interrupt-window exits (the guest became able to take an interrupt).
    IrqWindowExits = "irq_window_exits",
    /// Returns to user space because a signal was pending
    /// (`KVM_EXIT_INTR`).
    SignalExits = "signal_exits",
    /// External interrupts injected into the guest.
    IrqInjections = "irq_injections",
    /// NMIs injected into the guest.
    NmiInjections = "nmi_injections",
}

/// The number of [`VcpuStat`] counters.
const VCPU_STATS: usize = VCPU_DESCS.len();

/// The counters of one vCPU. Any thread may bump them; a stats-file read
/// samples each one atomically (not all at one instant, as in KVM).
///
/// # Invariants
///
/// Counter `i` is the [`VcpuStat`] of discriminant `i`: the enum and the
/// array are sized by the same list (`vcpu_stats!`), so `stat as usize` is
/// always in bounds.
pub(crate) struct VcpuStats([AtomicU64; VCPU_STATS]);

impl VcpuStats {
    /// All counters at 0.
    pub(crate) const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; VCPU_STATS])
    }

    /// Counts one event of kind `stat`, e.g.
    /// `vcpu.stats.inc(VcpuStat::IoExits)` on every I/O exit.
    pub(crate) fn inc(&self, stat: VcpuStat) {
        self.0[stat as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters' values, in [`VcpuStat`] order.
    fn snapshot(&self, out: &mut [u64]) {
        for (o, stat) in out.iter_mut().zip(VcpuStat::ALL) {
            *o = self.0[stat as usize].load(Ordering::Relaxed);
        }
    }
}

/// Lists the scalar fields of [`MmuStats`] once, with their statistic
/// type, and builds both the VM descriptors and the copy of a snapshot into
/// the data block from that list. `rmap_len_hist` comes last.
macro_rules! mmu_stats {
    ($($field:ident: $kind:ident,)+) => {
        /// The VM statistics: the [`MmuStats`] fields, in this order.
        const VM_DESCS: &[Desc] = layout::checked(&[
            $(Desc::$kind(stringify!($field)),)+
            Desc::log_hist("rmap_len_hist", RMAP_HIST_BUCKETS as u16),
        ]);

        /// Stores `s` into `out`, in [`VM_DESCS`] order.
        fn mmu_values(s: &MmuStats, out: &mut [u64]) {
            // No `..`: a field added to `MmuStats` must be listed above.
            let MmuStats {
                $($field,)+
                rmap_len_hist,
            } = *s;
            let scalars = [$($field,)+];
            if let Some((head, hist)) = out.split_at_mut_checked(scalars.len()) {
                head.copy_from_slice(&scalars);
                layout::pow2_to_log_hist(&rmap_len_hist, hist);
            }
        }
    };
}

mmu_stats! {
    mmu_cache_miss: cumulative,
    mmu_shadow_zapped: cumulative,
    mmu_pte_write: cumulative,
    mmu_recycled: cumulative,
    mmu_shadow_pages: instant,
    pages_4k: instant,
    max_mmu_rmap_size: peak,
    max_mmu_page_hash_collisions: peak,
    pf_taken: cumulative,
    pf_fixed: cumulative,
    pf_guest: cumulative,
    pf_emulate: cumulative,
}

// The histogram's size fits the descriptor, and the conversion to KVM's
// buckets has a bucket 0 and a last bucket.
const _: () = assert!(RMAP_HIST_BUCKETS >= 2 && RMAP_HIST_BUCKETS <= u16::MAX as usize);

/// What a stats file reads: a descriptor table and the values behind it.
trait Source: Send + Sync + 'static {
    /// The statistics, in file order; [`layout::valid`].
    const DESCS: &'static [Desc];

    /// Stores the current values, `layout::num_values(Self::DESCS)` of
    /// them, into `out` (of that length).
    fn snapshot(&self, out: &mut [u64]);
}

/// The source of a VM's stats file.
struct VmSource(Arc<Vm>);

impl Source for VmSource {
    const DESCS: &'static [Desc] = VM_DESCS;

    fn snapshot(&self, out: &mut [u64]) {
        mmu_values(&self.0.mmu_stats(), out);
    }
}

/// The source of a vCPU's stats file: the vCPU and, as KVM's file holds a
/// reference on the VM, its VM.
struct VcpuSource(Arc<VcpuFd>);

impl Source for VcpuSource {
    const DESCS: &'static [Desc] = VCPU_DESCS;

    fn snapshot(&self, out: &mut [u64]) {
        self.0.vcpu.stats.snapshot(out);
    }
}

/// The object behind a stats file (`file->private_data`, a `KBox`).
struct StatsFile<S: Source> {
    id: StatsId,
    src: S,
}

impl<S: Source> StatsFile<S> {
    /// `read` at `pos` of up to `count` bytes into user memory at `buf`;
    /// returns the bytes read (0 at or past the end of the file).
    fn read(&self, buf: usize, count: usize, pos: i64) -> Result<usize> {
        // The VFS never passes a negative position (pread refuses one).
        let pos = u64::try_from(pos).map_err(|_| EINVAL)?;
        let len = layout::read_len(S::DESCS, pos, count);
        if len == 0 {
            return Ok(0);
        }
        let mut values = KVec::from_elem(0u64, layout::num_values(S::DESCS), GFP_KERNEL)?;
        if layout::reads_data(S::DESCS, pos, len) {
            self.src.snapshot(&mut values);
        }
        let mut writer = UserSlice::new(UserPtr::from_addr(buf), len).writer();
        let mut chunk = [0u8; 256];
        let mut done = 0;
        while done < len {
            let want = (len - done).min(chunk.len());
            let got = layout::read(
                S::DESCS,
                &self.id,
                &values,
                pos + done as u64,
                &mut chunk[..want],
            );
            if got == 0 {
                break;
            }
            // As KVM: a fault anywhere fails the whole read with EFAULT.
            writer.write_slice(&chunk[..got])?;
            done += got;
        }
        Ok(done)
    }
}

/// `file_operations` made shareable as a static.
#[repr(transparent)]
struct StatsFops(bindings::file_operations);

// SAFETY: the table is immutable after construction and holds only
// function pointers and the module pointer, usable from any thread.
unsafe impl Sync for StatsFops {}

/// The fops of stats files of source `S`: `read`, `release`, and
/// `noop_llseek` (KVM's choice: `lseek` reports the position and moves
/// nothing; readers use `pread`). No `write`: the file is read-only, and
/// `write` fails with `EBADF` in the VFS.
const fn stats_fops<S: Source>() -> StatsFops {
    StatsFops(bindings::file_operations {
        owner: this_module::<crate::LocalModule>().as_ptr(),
        read: Some(read::<S>),
        release: Some(release::<S>),
        llseek: Some(bindings::noop_llseek),
        ..pin_init::zeroed()
    })
}

static VM_STATS_FOPS: StatsFops = stats_fops::<VmSource>();
static VCPU_STATS_FOPS: StatsFops = stats_fops::<VcpuSource>();

/// `FMODE_PREAD` (`include/linux/fs.h`, not in the bindings): the file
/// accepts `pread`.
const FMODE_PREAD: u32 = 1 << 3;

extern "C" {
    // Exported by fs/anon_inodes.c but not part of the generated bindings;
    // `fops` is a `const struct file_operations *` (see `fd.rs`). Returns
    // a new file holding one reference, or an ERR_PTR (a `struct file *`,
    // declared as a void pointer for the same reason).
    fn anon_inode_getfile_fmode(
        name: *const c_char,
        fops: *const c_void,
        private: *mut c_void,
        flags: c_int,
        f_mode: bindings::fmode_t,
    ) -> *mut c_void;
}

/// `KVM_GET_STATS_FD` on a VM fd.
pub(crate) fn vm_stats_fd(vm: Arc<Vm>) -> Result<isize> {
    let id = vm.stats_id;
    install(c"kvm-vm-stats", &VM_STATS_FOPS, id, VmSource(vm))
}

/// `KVM_GET_STATS_FD` on a vCPU fd.
pub(crate) fn vcpu_stats_fd(vcpu_fd: Arc<VcpuFd>) -> Result<isize> {
    let id = vcpu_fd.vcpu.stats_id;
    install(c"kvm-vcpu-stats", &VCPU_STATS_FOPS, id, VcpuSource(vcpu_fd))
}

/// Creates a stats file for `src` and returns its new fd (`O_CLOEXEC`).
/// `fops` must be `stats_fops::<S>()`.
fn install<S: Source>(
    name: &'static CStr,
    fops: &'static StatsFops,
    id: StatsId,
    src: S,
) -> Result<isize> {
    let obj = KBox::new(StatsFile { id, src }, GFP_KERNEL_ACCOUNT)?;
    // The fd first, as KVM: once the file exists, only fd_install remains,
    // which cannot fail.
    let reservation = FileDescriptorReservation::get_unused_fd_flags(bindings::O_CLOEXEC)?;
    let private = obj.into_foreign();
    // SAFETY: `name` is NUL-terminated and static, `fops` is static and
    // built by `stats_fops::<S>()`, whose `read` and `release` expect
    // `private` to be a `KBox<StatsFile<S>>`, which it is.
    let file = unsafe {
        anon_inode_getfile_fmode(
            name.as_char_ptr(),
            (&raw const fops.0).cast::<c_void>(),
            private,
            bindings::O_RDONLY as c_int,
            FMODE_PREAD,
        )
    };
    let file = match from_err_ptr(file).and_then(|f| NonNull::new(f).ok_or(ENOMEM)) {
        Ok(f) => f,
        Err(e) => {
            // SAFETY: no file was created, so `private` is still ours.
            drop(unsafe { <KBox<StatsFile<S>> as ForeignOwnable>::from_foreign(private) });
            return Err(e);
        }
    };
    // SAFETY: `file` is a new, live file whose one reference we own and
    // hand to the `ARef`; nobody has called `fdget_pos` on it. `File` is a
    // transparent wrapper of `struct file`.
    let file = unsafe { ARef::from_raw(file.cast::<File>()) };
    let fd = reservation.reserved_fd();
    reservation.fd_install(file);
    Ok(fd as isize)
}

/// Borrows the object of a stats file.
///
/// # Safety
///
/// `file` must be a live stats file of source `S` (fops from
/// `stats_fops::<S>()`), and the borrow must not outlive the current file
/// operation other than `release`.
unsafe fn borrow<'a, S: Source>(file: *mut bindings::file) -> &'a StatsFile<S> {
    // SAFETY: per the caller, `private_data` holds the
    // `KBox<StatsFile<S>>` that `install` stored, alive until `release`,
    // which cannot run during another operation on the file.
    unsafe { <KBox<StatsFile<S>> as ForeignOwnable>::borrow((*file).private_data) }
}

/// `read` of stats files: `kvm_stats_read()`. Advances `*ppos` by the bytes
/// read (for `read`; `pread` passes a copy).
///
/// # Safety
///
/// Called by the VFS on a stats file of source `S`, with `ppos` valid for
/// the duration of the call; `buf` is a user address.
unsafe extern "C" fn read<S: Source>(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: a file operation on a stats file of source `S`.
    let this = unsafe { borrow::<S>(file) };
    // SAFETY: the VFS passes a valid position for this call.
    let pos = unsafe { *ppos };
    match this.read(buf as usize, count, pos) {
        Ok(n) => {
            // SAFETY: as above. `n` is bounded by the file size (u32).
            unsafe { *ppos = pos + n as bindings::loff_t };
            n as isize
        }
        Err(e) => e.to_errno() as isize,
    }
}

/// `release` of stats files: drops the object and with it the references
/// on the VM and vCPU.
///
/// # Safety
///
/// Called by the VFS once, when the last reference to a stats file of
/// source `S` goes away.
unsafe extern "C" fn release<S: Source>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `private_data` is the `KBox<StatsFile<S>>` from `install`,
    // and release runs exactly once, after every other file operation.
    drop(unsafe { <KBox<StatsFile<S>> as ForeignOwnable>::from_foreign((*file).private_data) });
    0
}
