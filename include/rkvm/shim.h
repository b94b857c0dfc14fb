/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers of rkvm.ko: kernel facilities that are macros or static inlines
 * (so Rust cannot call them) wrapped as functions. Each is declared in
 * rust/shim.rs as well.
 */
#ifndef RKVM_SHIM_H
#define RKVM_SHIM_H

#include <linux/types.h>

/* Whether [addr, addr + size) is a valid, untagged user range (access_ok). */
bool rkvm_user_range_ok(unsigned long addr, unsigned long size);
/* num_online_cpus(). */
unsigned int rkvm_num_online_cpus(void);
/* The host TSC frequency in kHz (tsc_khz). */
unsigned int rkvm_tsc_khz(void);
/* One reading of the host's clocks: CLOCK_MONOTONIC_RAW and CLOCK_REALTIME
 * in ns and the TSC, taken together with interrupts off. */
void rkvm_clock_read(u64 *raw_ns, u64 *real_ns, u64 *tsc);
/* virt_to_phys() / phys_to_virt() of the direct map. */
u64 rkvm_virt_to_phys(const void *addr);
void *rkvm_phys_to_virt(u64 pa);
/* Long-term pin of the current process's page at hva (for writing if
 * write). */
int rkvm_pin_user_page(unsigned long hva, bool write, u64 *pfn);
/* Unpins a page pinned by rkvm_pin_user_page(), marking it dirty if dirty;
 * never sleeps. */
void rkvm_unpin_pfn(u64 pfn, bool dirty);
/* kernel_fpu_begin() / kernel_fpu_end(). */
void rkvm_fpu_begin(void);
void rkvm_fpu_end(void);
/* signal_pending(current). */
bool rkvm_signal_pending(void);
/* cond_resched(). */
void rkvm_cond_resched(void);
/* Runs an empty function on cpu and waits for it: returns once cpu has had
 * interrupts enabled, i.e. has left any VMX window it was in. */
void rkvm_kick_cpu(int cpu);
/* load_gs_index(). */
void rkvm_load_gs_index(u16 sel);
/* rdmsrq_safe() / wrmsrq(). */
int rkvm_rdmsr_safe(u32 msr, u64 *val);
void rkvm_wrmsr(u32 msr, u64 val);

/* A zeroed page below 4 GiB for a shadow page table (a PAE root must be
 * there); NULL without memory. */
void *rkvm_table_alloc(void);
/* Frees a page from rkvm_table_alloc(). */
void rkvm_table_free(void *va);
/* The owner tag of such a page (page->private), and setting it. */
unsigned long rkvm_table_owner(const void *va);
void rkvm_table_set_owner(void *va, unsigned long owner);
/* need_resched(). */
bool rkvm_need_resched(void);

/* c/notifier.c: an mmu_notifier on mm whose callbacks call the Rust
 * functions below with vm; returns the registration or an ERR_PTR. */
struct mm_struct;
void *rkvm_mn_register(const void *vm, struct mm_struct *mm);
void rkvm_mn_unregister(void *reg, struct mm_struct *mm);
/* rust/notifier.rs. */
int rkvm_mn_invalidate_start(const void *vm, unsigned long start,
			     unsigned long end, bool blockable);
void rkvm_mn_invalidate_end(const void *vm);
void rkvm_mn_release(const void *vm);
bool rkvm_mn_age(const void *vm, unsigned long start, unsigned long end,
		 bool clear);
/* c/irqfd.c: an irqfd on the eventfd behind fd whose signals call
 * rkvm_irqfd_fire(vm, gsi) from a work item; an ERR_PTR for a bad fd
 * (-EBADF), a file that is no eventfd (-EINVAL), an eventfd some irqfd
 * already has (-EBUSY) or no memory. */
void *rkvm_irqfd_new(int fd, const void *vm, u32 gsi);
/* The eventfd context of an irqfd (to compare with rkvm_eventfd_get()). */
const void *rkvm_irqfd_eventfd(const void *irqfd);
/* Whether the eventfd's file was released, which detached the irqfd. */
bool rkvm_irqfd_hung_up(const void *irqfd);
/* Detaches the irqfd, waits for a pending injection and frees it. */
void rkvm_irqfd_free(void *irqfd);
/* rust/irqfd.rs. */
void rkvm_irqfd_fire(const void *vm, u32 gsi);
/* eventfd_ctx_fdget(): a counted reference on the eventfd behind fd, or an
 * ERR_PTR (-EBADF, -EINVAL). */
void *rkvm_eventfd_get(int fd);
/* eventfd_signal() on a context from rkvm_eventfd_get(). */
void rkvm_eventfd_signal(void *ctx);
/* eventfd_ctx_put(): drops that reference. */
void rkvm_eventfd_put(void *ctx);

#endif
