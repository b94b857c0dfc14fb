// SPDX-License-Identifier: GPL-2.0

//! Anonymous-inode file descriptors: the VM and vCPU fds.
//!
//! Each kind of fd is an object `T` shared through an `Arc<T>` stored in
//! `file->private_data`; its `file_operations` (built by [`fops`]) forward
//! ioctls to [`FdObject::ioctl`] and drop the reference on release. The
//! `owner` field pins the module while any such file is open. Model:
//! `drivers/android/binder/rust_binder_main.rs` (hand-written fops) and
//! `kvm_dev_ioctl_create_vm()` in `virt/kvm/kvm_main.c` (fd creation).

use kernel::ffi::{
    c_char,
    c_int,
    c_long,
    c_uint,
    c_ulong,
    c_void, //
};

use kernel::{
    bindings,
    module::this_module,
    prelude::*,
    sync::{
        Arc,
        ArcBorrow, //
    },
    types::ForeignOwnable, //
};

extern "C" {
    // Exported by fs/anon_inodes.c but not part of the generated bindings.
    // `fops` is a `const struct file_operations *`, declared as a void
    // pointer because the struct is not FFI-safe as far as rustc can tell.
    fn anon_inode_getfd(
        name: *const c_char,
        fops: *const c_void,
        private: *mut c_void,
        flags: c_int,
    ) -> c_int;
}

/// An object behind an fd.
pub(crate) trait FdObject: Send + Sync + Sized + 'static {
    /// Handles one ioctl; the returned value is the ioctl's return value.
    fn ioctl(this: ArcBorrow<'_, Self>, cmd: u32, arg: usize) -> Result<isize>;

    /// The fd is being closed (other references to the object may live
    /// on, e.g. a vCPU's on its VM).
    fn release(&self) {}
}

/// `file_operations` made shareable as a static.
#[repr(transparent)]
pub(crate) struct Fops(bindings::file_operations);

// SAFETY: the table is immutable after construction and contains only
// function pointers and the module pointer, which may be used from any
// thread.
unsafe impl Sync for Fops {}

/// The `mmap` signature of `file_operations`.
pub(crate) type MmapFn =
    unsafe extern "C" fn(*mut bindings::file, *mut bindings::vm_area_struct) -> c_int;

/// Builds the fops of fds backed by `Arc<T>`.
pub(crate) const fn fops<T: FdObject>(mmap: Option<MmapFn>) -> Fops {
    Fops(bindings::file_operations {
        owner: this_module::<crate::LocalModule>().as_ptr(),
        unlocked_ioctl: Some(ioctl::<T>),
        release: Some(release::<T>),
        mmap,
        llseek: Some(bindings::noop_llseek),
        ..pin_init::zeroed()
    })
}

/// Borrows the object of an fd created by [`install`] with `T`.
///
/// # Safety
///
/// `file` must be a live file whose fops come from [`fops::<T>`]; the borrow
/// must not outlive the current file operation.
pub(crate) unsafe fn borrow<'a, T: FdObject>(file: *mut bindings::file) -> ArcBorrow<'a, T> {
    // SAFETY: per the caller, private_data holds an `Arc<T>` from
    // `into_foreign` that stays alive until `release`, which cannot run
    // while this file operation is in progress.
    unsafe { <Arc<T> as ForeignOwnable>::borrow((*file).private_data) }
}

/// Creates an fd (O_RDWR | O_CLOEXEC, as KVM does) for `obj`.
pub(crate) fn install<T: FdObject>(
    name: &'static CStr,
    fops: &'static Fops,
    obj: Arc<T>,
) -> Result<isize> {
    let private = obj.into_foreign();
    // SAFETY: `name` is NUL-terminated and static, `fops` is static, and
    // `private` is an `Arc<T>` that `release::<T>` takes back.
    let fd = unsafe {
        anon_inode_getfd(
            name.as_char_ptr(),
            (&raw const fops.0).cast::<c_void>(),
            private,
            (bindings::O_RDWR | bindings::O_CLOEXEC) as c_int,
        )
    };
    if fd < 0 {
        // SAFETY: no file was created, so nobody else owns `private`.
        drop(unsafe { <Arc<T> as ForeignOwnable>::from_foreign(private) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd as isize)
}

/// `unlocked_ioctl` of every fd kind.
///
/// # Safety
///
/// Called by the VFS on a file whose fops are `fops::<T>()`.
unsafe extern "C" fn ioctl<T: FdObject>(
    file: *mut bindings::file,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    // SAFETY: this is a file operation on a file of this kind.
    let obj = unsafe { borrow::<T>(file) };
    match T::ioctl(obj, cmd, arg) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// `release` of every fd kind: drops the file's reference on the object.
///
/// # Safety
///
/// Called by the VFS once, when the last reference to the file goes away.
unsafe extern "C" fn release<T: FdObject>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: private_data was set from `Arc::<T>::into_foreign` by
    // `install`, and release runs exactly once, after every other file
    // operation has finished.
    let obj = unsafe { <Arc<T> as ForeignOwnable>::from_foreign((*file).private_data) };
    obj.release();
    drop(obj);
    0
}
