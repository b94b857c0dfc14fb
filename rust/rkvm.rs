// SPDX-License-Identifier: GPL-2.0

//! rkvm: a hypervisor for Linux, written in Rust, with KVM's ioctl ABI.
//!
//! At load time the module probes the CPU's VMX implementation and refuses to
//! load (with a kernel log line saying why) when VMX or a feature rkvm needs is
//! missing. It then registers `/dev/rkvm`, whose ioctls are numbered and laid
//! out like `/dev/kvm`'s. See `Documentation/rkvm/` for the design.

use kernel::{
    miscdevice::{
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*, //
};

mod abi;
mod coalesced;
mod dev;
mod fd;
mod ioeventfd;
mod irqfd;
mod memslot;
mod mmu;
mod notifier;
mod shim;
mod stats;
mod vcpu;
mod vm;
mod vmx;
mod x86;

module! {
    type: Rkvm,
    name: "rkvm",
    authors: ["The rkvm developers"],
    description: "Hypervisor with the KVM ABI, shadow MMU, Intel VMX",
    license: "GPL",
}

/// The loaded module: the probed VMX capabilities and the `/dev/rkvm` device.
#[pin_data]
struct Rkvm {
    #[pin]
    _dev: MiscDeviceRegistration<dev::SystemFd>,
}

impl kernel::InPlaceModule for Rkvm {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _dev <- {
                let caps = vmx::probe::probe_all_cpus()?;
                vmx::probe::report(&caps);
                MiscDeviceRegistration::register(MiscDeviceOptions { name: c"rkvm" })
            },
        })
    }
}
