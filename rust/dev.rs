// SPDX-License-Identifier: GPL-2.0

//! `/dev/rkvm`: the system file descriptor of the KVM ABI.
//!
//! Model: `kvm_dev_ioctl()` in `virt/kvm/kvm_main.c`, whose errno choices this
//! follows: a non-zero argument where none is taken and every unknown ioctl
//! get `-EINVAL` (not `-ENOTTY`).

use kernel::{
    fs::File,
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    prelude::*, //
};

use crate::abi;

/// An open `/dev/rkvm`. It holds no state: everything a VM needs lives in
/// the VM's own file descriptor.
pub(crate) struct SystemFd;

#[vtable]
impl MiscDevice for SystemFd {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<()> {
        Ok(())
    }

    fn ioctl(_me: (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            abi::KVM_GET_API_VERSION if arg == 0 => Ok(abi::KVM_API_VERSION),
            abi::KVM_CHECK_EXTENSION => Ok(abi::check_extension(arg)),
            abi::KVM_CREATE_VM => crate::vm::create(arg),
            abi::KVM_GET_VCPU_MMAP_SIZE if arg == 0 => {
                Ok((abi::VCPU_MMAP_PAGES << kernel::bindings::PAGE_SHIFT) as isize)
            }
            abi::KVM_GET_MSR_INDEX_LIST => msr_index_list(arg),
            abi::KVM_GET_SUPPORTED_CPUID => supported_cpuid(arg),
            abi::KVM_X86_GET_MCE_CAP_SUPPORTED => {
                use kernel::uaccess::{
                    UserPtr,
                    UserSlice, //
                };
                UserSlice::new(UserPtr::from_addr(arg), size_of::<u64>())
                    .writer()
                    .write(&crate::x86::mce::SUPPORTED_CAP)?;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }
}

/// `KVM_GET_MSR_INDEX_LIST`: the count is always written back; `E2BIG` if
/// the caller's array is too small (KVM's protocol).
fn msr_index_list(arg: usize) -> Result<isize> {
    use crate::x86::msr::SAVED;
    use kernel::uaccess::{
        UserPtr,
        UserSlice, //
    };
    let header = UserSlice::new(UserPtr::from_addr(arg), size_of::<u32>());
    let (mut reader, mut writer) = header.reader_writer();
    let room = reader.read::<u32>()? as usize;
    writer.write(&(SAVED.len() as u32))?;
    if room < SAVED.len() {
        return Err(E2BIG);
    }
    let entries = arg.checked_add(size_of::<u32>()).ok_or(EFAULT)?;
    let mut w =
        UserSlice::new(UserPtr::from_addr(entries), SAVED.len() * size_of::<u32>()).writer();
    for i in SAVED {
        w.write(&i)?;
    }
    Ok(0)
}

/// `KVM_GET_SUPPORTED_CPUID`: the table of `cpuid::supported()` for this
/// CPU, copied out with KVM's `E2BIG` protocol.
fn supported_cpuid(arg: usize) -> Result<isize> {
    let table = crate::x86::cpuid::supported(|function, index| {
        // SAFETY: CPUID exists on every x86-64 CPU and only writes the
        // registers the intrinsic declares.
        let r = unsafe { core::arch::x86_64::__cpuid_count(function, index) };
        [r.eax, r.ebx, r.ecx, r.edx]
    });
    abi::write_cpuid2(arg, &table)?;
    Ok(0)
}
