// SPDX-License-Identifier: GPL-2.0
/*
 * rkvm's irqfd glue (KVM_IRQFD): the wait-queue entry an irqfd hangs on its
 * eventfd, which needs C (container_of, poll tables, wait-queue internals).
 * A signal schedules a work item that calls rkvm_irqfd_fire() in
 * rust/irqfd.rs with the VM and GSI, in process context, where the VM's
 * locks may be taken. The design follows virt/kvm/eventfd.c: an exclusive
 * priority waiter (so an eventfd feeds at most one irqfd, anywhere), the
 * counter consumed in the wake-up, and EPOLLHUP (the eventfd file is being
 * released) detaching the irqfd.
 */
#include <linux/eventfd.h>
#include <linux/err.h>
#include <linux/file.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <rkvm/shim.h>

struct rkvm_irqfd {
	/* On wqh (the eventfd's wait queue) while listening. */
	wait_queue_entry_t wait;
	poll_table pt;
	wait_queue_head_t *wqh;
	/* A counted reference: keeps wqh alive while this irqfd exists. */
	struct eventfd_ctx *eventfd;
	/* Calls rkvm_irqfd_fire(vm, gsi). */
	struct work_struct inject;
	const void *vm;
	u32 gsi;
	/* What registering on wqh returned (-EBUSY: another irqfd has it). */
	int ret;
	/* Set under wqh->lock when EPOLLHUP detached the irqfd. */
	bool hung_up;
};

static void irqfd_inject(struct work_struct *work)
{
	struct rkvm_irqfd *f = container_of(work, struct rkvm_irqfd, inject);

	rkvm_irqfd_fire(f->vm, f->gsi);
}

/* Called with wqh->lock held and interrupts off: nothing here sleeps. */
static int irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync,
			void *key)
{
	struct rkvm_irqfd *f = container_of(wait, struct rkvm_irqfd, wait);
	__poll_t flags = key_to_poll(key);
	int ret = 0;

	if (flags & EPOLLIN) {
		u64 cnt;

		eventfd_ctx_do_read(f->eventfd, &cnt);
		schedule_work(&f->inject);
		ret = 1;
	}
	if (flags & EPOLLHUP) {
		/* The wake-up loop tolerates removal of the current entry. */
		list_del_init(&wait->entry);
		WRITE_ONCE(f->hung_up, true);
	}
	return ret;
}

static void irqfd_register(struct file *file, wait_queue_head_t *wqh,
			   poll_table *pt)
{
	struct rkvm_irqfd *f = container_of(pt, struct rkvm_irqfd, pt);

	f->wqh = wqh;
	init_waitqueue_func_entry(&f->wait, irqfd_wakeup);
	f->ret = add_wait_queue_priority_exclusive(wqh, &f->wait);
}

static int irqfd_attach(struct rkvm_irqfd *f, struct file *file)
{
	struct eventfd_ctx *ctx = eventfd_ctx_fileget(file);
	__poll_t events;

	if (IS_ERR(ctx))
		return PTR_ERR(ctx);
	f->eventfd = ctx;
	f->ret = -EINVAL;
	init_poll_funcptr(&f->pt, irqfd_register);
	events = vfs_poll(file, &f->pt);
	if (f->ret) {
		eventfd_ctx_put(ctx);
		return f->ret;
	}
	/* Signalled before the irqfd existed: that counts too, as in KVM. */
	if (events & EPOLLIN)
		schedule_work(&f->inject);
	return 0;
}

void *rkvm_irqfd_new(int fd, const void *vm, u32 gsi)
{
	struct rkvm_irqfd *f = kzalloc(sizeof(*f), GFP_KERNEL_ACCOUNT);
	struct file *file;
	int ret;

	if (!f)
		return ERR_PTR(-ENOMEM);
	f->vm = vm;
	f->gsi = gsi;
	INIT_WORK(&f->inject, irqfd_inject);
	file = fget(fd);
	if (!file) {
		kfree(f);
		return ERR_PTR(-EBADF);
	}
	ret = irqfd_attach(f, file);
	fput(file);
	if (ret) {
		kfree(f);
		return ERR_PTR(ret);
	}
	return f;
}

const void *rkvm_irqfd_eventfd(const void *irqfd)
{
	const struct rkvm_irqfd *f = irqfd;

	return f->eventfd;
}

bool rkvm_irqfd_hung_up(const void *irqfd)
{
	const struct rkvm_irqfd *f = irqfd;

	return READ_ONCE(f->hung_up);
}

void rkvm_irqfd_free(void *irqfd)
{
	struct rkvm_irqfd *f = irqfd;
	unsigned long flags;
	u64 cnt;

	/*
	 * No wake-up runs or starts once the entry is off wqh. As KVM, a
	 * signal not yet seen is consumed with it.
	 */
	spin_lock_irqsave(&f->wqh->lock, flags);
	if (!list_empty(&f->wait.entry)) {
		list_del_init(&f->wait.entry);
		eventfd_ctx_do_read(f->eventfd, &cnt);
		if (cnt && waitqueue_active(f->wqh))
			wake_up_locked_poll(f->wqh, EPOLLOUT);
	}
	spin_unlock_irqrestore(&f->wqh->lock, flags);
	/* A signal that came before is still delivered (KVM flushes too). */
	flush_work(&f->inject);
	eventfd_ctx_put(f->eventfd);
	kfree(f);
}
