// SPDX-License-Identifier: GPL-2.0
/*
 * Binary statistics (KVM_GET_STATS_FD) of VMs and vCPUs: the file layout of
 * Documentation/virt/kvm/api.rst (header, id string, descriptors, data), the
 * rules for descriptors, pread and read at any offset, the end of the file,
 * the fd's lifetime and mode, and a cumulative "exits" count that grows when
 * a guest runs.
 *
 * Run against /dev/rkvm, and with RKVM_DEV=/dev/kvm against KVM to show the
 * expectations are KVM's.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

/* KVM_STATS_NAME_SIZE (include/linux/kvm_types.h, not in the uapi). */
#define NAME_SIZE 48

#define MEM_SIZE 0x10000	/* guest memory at gpa 0 */
#define CODE_GPA 0x1000
#define OUT_PORT 0x10
#define OUT_VALUE 0x42

/* Real mode: out %al, $OUT_PORT with AL = OUT_VALUE, then hlt. */
static const unsigned char guest_code[] = {
	0xb0, OUT_VALUE,	/* mov $OUT_VALUE, %al */
	0xe6, OUT_PORT,		/* out %al, $OUT_PORT */
	0xf4,			/* hlt */
};

/* A stats file, read and checked. */
struct stats {
	int fd;
	struct kvm_stats_header h;
	char id[NAME_SIZE];
	/* num_desc entries of sizeof(struct kvm_stats_desc) + name_size bytes. */
	unsigned char *descs;
	size_t desc_len;
	/* The data block: data_len bytes, data_len / 8 values. */
	__u64 *data;
	size_t data_len;
	/* The size of the file: the end of its last block. */
	size_t file_len;
};

static struct kvm_stats_desc *desc_at(const struct stats *s, unsigned int i)
{
	return (struct kvm_stats_desc *)(s->descs +
					 i * (sizeof(struct kvm_stats_desc) + s->h.name_size));
}

static size_t max_sz(size_t a, size_t b)
{
	return a > b ? a : b;
}

/* Reads exactly n bytes at off with pread. */
static void pread_all(struct __test_metadata *_metadata, int fd, void *buf, size_t n, off_t off)
{
	ssize_t r = pread(fd, buf, n, off);

	ASSERT_EQ((ssize_t)n, r) TH_LOG("pread %zu at %jd: %s", n, (intmax_t)off, strerror(errno));
}

/* The four blocks do not overlap; sets file_len to the end of the last. */
static void check_blocks(struct __test_metadata *_metadata, struct stats *s)
{
	const size_t start[] = { 0, s->h.id_offset, s->h.desc_offset, s->h.data_offset };
	const size_t len[] = { sizeof(s->h), NAME_SIZE, s->desc_len, s->data_len };

	for (int i = 0; i < 4; i++) {
		s->file_len = max_sz(s->file_len, start[i] + len[i]);
		for (int j = 0; j < i; j++) {
			EXPECT_TRUE(start[i] >= start[j] + len[j] || start[j] >= start[i] + len[i])
				TH_LOG("blocks %d and %d overlap", i, j);
		}
	}
}

/*
 * Reads the header, id and descriptors of the stats file fd and checks
 * them as KVM's documentation states them; then reads the data block.
 */
static void stats_open(struct __test_metadata *_metadata, int fd, struct stats *s)
{
	const struct kvm_stats_header *h = &s->h;
	size_t desc_size;

	memset(s, 0, sizeof(*s));
	s->fd = fd;
	pread_all(_metadata, fd, &s->h, sizeof(s->h), 0);
	EXPECT_EQ(0U, h->flags);
	ASSERT_EQ((__u32)NAME_SIZE, h->name_size);
	ASSERT_LT(0U, h->num_desc);
	ASSERT_LT(h->num_desc, 100000U);
	/* Offsets: multiples of 8, after the header. */
	EXPECT_EQ(0U, h->id_offset % 8);
	EXPECT_EQ(0U, h->desc_offset % 8);
	EXPECT_EQ(0U, h->data_offset % 8);
	ASSERT_LE(sizeof(*h), h->id_offset);
	ASSERT_LE(sizeof(*h), h->desc_offset);
	ASSERT_LE(sizeof(*h), h->data_offset);

	/* The id string: "kvm-..." and NUL-terminated within name_size. */
	pread_all(_metadata, fd, s->id, NAME_SIZE, h->id_offset);
	ASSERT_NE(NULL, memchr(s->id, 0, NAME_SIZE));
	EXPECT_EQ(0, strncmp(s->id, "kvm-", 4)) TH_LOG("id \"%s\"", s->id);

	desc_size = sizeof(struct kvm_stats_desc) + h->name_size;
	s->desc_len = h->num_desc * desc_size;
	s->descs = malloc(s->desc_len);
	ASSERT_NE(NULL, s->descs);
	pread_all(_metadata, fd, s->descs, s->desc_len, h->desc_offset);

	for (unsigned int i = 0; i < h->num_desc; i++) {
		const struct kvm_stats_desc *d = desc_at(s, i);
		__u32 type = d->flags & KVM_STATS_TYPE_MASK;
		__u32 unit = d->flags & KVM_STATS_UNIT_MASK;
		__u32 base = d->flags & KVM_STATS_BASE_MASK;
		size_t len = strnlen(d->name, h->name_size);

		ASSERT_LT(len, (size_t)h->name_size) TH_LOG("descriptor %u: name not terminated", i);
		ASSERT_LT(0U, len) TH_LOG("descriptor %u: empty name", i);
		EXPECT_LE(type, (__u32)KVM_STATS_TYPE_MAX) TH_LOG("%s", d->name);
		EXPECT_LE(unit, (__u32)KVM_STATS_UNIT_MAX) TH_LOG("%s", d->name);
		EXPECT_LE(base, (__u32)KVM_STATS_BASE_MAX) TH_LOG("%s", d->name);
		EXPECT_EQ(0U, d->flags & ~(KVM_STATS_TYPE_MASK | KVM_STATS_UNIT_MASK |
					   KVM_STATS_BASE_MASK)) TH_LOG("%s", d->name);
		if (unit == KVM_STATS_UNIT_NONE || unit == KVM_STATS_UNIT_BOOLEAN) {
			EXPECT_EQ(0, d->exponent) TH_LOG("%s", d->name);
		}
		EXPECT_LT(0, d->size) TH_LOG("%s", d->name);
		if (type != KVM_STATS_TYPE_LINEAR_HIST && type != KVM_STATS_TYPE_LOG_HIST) {
			EXPECT_EQ(1, d->size) TH_LOG("%s", d->name);
		}
		if (type == KVM_STATS_TYPE_LINEAR_HIST) {
			EXPECT_NE(0U, d->bucket_size) TH_LOG("%s", d->name);
		} else {
			EXPECT_EQ(0U, d->bucket_size) TH_LOG("%s", d->name);
		}
		EXPECT_EQ(0U, d->offset % 8) TH_LOG("%s", d->name);
		s->data_len = max_sz(s->data_len, d->offset + d->size * sizeof(__u64));

		/* Unique names; values that do not overlap. */
		for (unsigned int j = 0; j < i; j++) {
			const struct kvm_stats_desc *e = desc_at(s, j);

			EXPECT_NE(0, strcmp(d->name, e->name)) TH_LOG("duplicate %s", d->name);
			EXPECT_TRUE(d->offset >= e->offset + e->size * 8 ||
				    e->offset >= d->offset + d->size * 8)
				TH_LOG("%s overlaps %s", d->name, e->name);
		}
	}
	ASSERT_LE(h->num_desc * sizeof(__u64), s->data_len);
	check_blocks(_metadata, s);

	s->data = malloc(s->data_len);
	ASSERT_NE(NULL, s->data);
	pread_all(_metadata, fd, s->data, s->data_len, h->data_offset);
}

static void stats_close(struct stats *s)
{
	free(s->descs);
	free(s->data);
	close(s->fd);
}

/* The descriptor named name, or NULL. */
static const struct kvm_stats_desc *stats_find(const struct stats *s, const char *name)
{
	for (unsigned int i = 0; i < s->h.num_desc; i++)
		if (!strcmp(desc_at(s, i)->name, name))
			return desc_at(s, i);
	return NULL;
}

/* Rereads the data block. */
static void stats_refresh(struct __test_metadata *_metadata, struct stats *s)
{
	pread_all(_metadata, s->fd, s->data, s->data_len, s->h.data_offset);
}

/* The first value of stat name (after stats_refresh), or -1 if absent. */
static long long stats_value(const struct stats *s, const char *name)
{
	const struct kvm_stats_desc *d = stats_find(s, name);

	return d ? (long long)s->data[d->offset / 8] : -1;
}

FIXTURE(stats) {
	int dev, vm, vcpu;
};

FIXTURE_SETUP(stats)
{
	self->dev = open(rkvm_dev_path(), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->dev) TH_LOG("open %s: %s", rkvm_dev_path(), strerror(errno));
	self->vm = ioctl(self->dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, self->vm) TH_LOG("KVM_CREATE_VM: %s", strerror(errno));
	self->vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, self->vcpu) TH_LOG("KVM_CREATE_VCPU: %s", strerror(errno));
}

FIXTURE_TEARDOWN(stats)
{
	if (self->vcpu >= 0)
		close(self->vcpu);
	if (self->vm >= 0)
		close(self->vm);
	close(self->dev);
}

/* KVM_GET_STATS_FD; the fd or -errno. */
static int get_stats_fd(int fd, unsigned long arg)
{
	int r = ioctl(fd, KVM_GET_STATS_FD, arg);

	return r < 0 ? -errno : r;
}

TEST_F(stats, capability_is_reported)
{
	EXPECT_EQ(1, ioctl(self->dev, KVM_CHECK_EXTENSION, KVM_CAP_BINARY_STATS_FD));
	EXPECT_EQ(1, ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_BINARY_STATS_FD));
}

TEST_F(stats, vm_file_layout)
{
	struct stats s;
	int fd = get_stats_fd(self->vm, 0);

	ASSERT_LE(0, fd) TH_LOG("KVM_GET_STATS_FD: %s", strerror(-fd));
	stats_open(_metadata, fd, &s);
	/* "kvm-<pid>": digits only after the prefix. */
	EXPECT_LT(4U, strlen(s.id));
	EXPECT_EQ(strlen(s.id), 4 + strspn(s.id + 4, "0123456789")) TH_LOG("id \"%s\"", s.id);
	stats_close(&s);
}

TEST_F(stats, vcpu_file_layout)
{
	struct stats vm, vcpu;
	int vm_fd = get_stats_fd(self->vm, 0);
	int vcpu_fd = get_stats_fd(self->vcpu, 0);
	size_t n;

	ASSERT_LE(0, vm_fd) TH_LOG("KVM_GET_STATS_FD (VM): %s", strerror(-vm_fd));
	ASSERT_LE(0, vcpu_fd) TH_LOG("KVM_GET_STATS_FD (vCPU): %s", strerror(-vcpu_fd));
	stats_open(_metadata, vm_fd, &vm);
	stats_open(_metadata, vcpu_fd, &vcpu);
	/* "<VM id>/vcpu-0": the same creator, vCPU id 0. */
	n = strlen(vm.id);
	EXPECT_EQ(0, strncmp(vcpu.id, vm.id, n)) TH_LOG("\"%s\" vs \"%s\"", vcpu.id, vm.id);
	EXPECT_STREQ("/vcpu-0", vcpu.id + n);
	/* The per-vCPU counters KVM and rkvm both have. */
	EXPECT_NE(NULL, stats_find(&vcpu, "exits"));
	stats_close(&vcpu);
	stats_close(&vm);
}

/* Each vCPU's file names its own vCPU. */
TEST_F(stats, vcpu_id_in_id_string)
{
	int vcpu5 = ioctl(self->vm, KVM_CREATE_VCPU, 5);
	struct stats s;
	const char *slash;
	int fd;

	ASSERT_LE(0, vcpu5) TH_LOG("KVM_CREATE_VCPU 5: %s", strerror(errno));
	fd = get_stats_fd(vcpu5, 0);
	ASSERT_LE(0, fd);
	stats_open(_metadata, fd, &s);
	slash = strchr(s.id, '/');
	ASSERT_NE(NULL, slash) TH_LOG("id \"%s\"", s.id);
	EXPECT_STREQ("/vcpu-5", slash);
	stats_close(&s);
	close(vcpu5);
}

/*
 * The whole file read in one pread, then through read() in odd-sized
 * pieces (which moves the file position), then piecewise with pread at
 * every offset: the same bytes (the VM and vCPU are idle, so the data does
 * not move either). Reads at and past the end return 0.
 */
static void check_reads(struct __test_metadata *_metadata, int fd)
{
	struct stats s;
	unsigned char *whole, *buf;
	size_t got = 0;
	ssize_t r;

	stats_open(_metadata, fd, &s);
	whole = malloc(s.file_len + 64);
	buf = malloc(s.file_len + 64);
	ASSERT_NE(NULL, whole);
	ASSERT_NE(NULL, buf);

	/* One pread of more than the file: the file, no more. */
	r = pread(fd, whole, s.file_len + 64, 0);
	ASSERT_EQ((ssize_t)s.file_len, r) TH_LOG("pread: %s", strerror(errno));
	EXPECT_EQ(0, memcmp(whole, &s.h, sizeof(s.h)));
	EXPECT_EQ(0, memcmp(whole + s.h.id_offset, s.id, NAME_SIZE));
	EXPECT_EQ(0, memcmp(whole + s.h.desc_offset, s.descs, s.desc_len));
	EXPECT_EQ(0, memcmp(whole + s.h.data_offset, s.data, s.data_len));

	/* read() from the start, 7 bytes at a time, to the end. */
	while ((r = read(fd, buf + got, 7)) > 0)
		got += r;
	ASSERT_EQ(0, r) TH_LOG("read: %s", strerror(errno));
	ASSERT_EQ(s.file_len, got);
	EXPECT_EQ(0, memcmp(whole, buf, s.file_len));
	/* At the end, read() keeps returning 0. */
	EXPECT_EQ(0, read(fd, buf, 16));

	/* pread at every offset, of sizes that straddle the blocks. */
	for (size_t off = 0; off < s.file_len; off++) {
		const size_t sizes[] = { 1, 13, 64 };

		for (unsigned int k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			size_t want = s.file_len - off < sizes[k] ? s.file_len - off : sizes[k];

			r = pread(fd, buf, sizes[k], off);
			ASSERT_EQ((ssize_t)want, r) TH_LOG("pread %zu at %zu", sizes[k], off);
			ASSERT_EQ(0, memcmp(whole + off, buf, want)) TH_LOG("at %zu", off);
		}
	}

	/* At and past the end: 0. */
	EXPECT_EQ(0, pread(fd, buf, 8, s.file_len));
	EXPECT_EQ(0, pread(fd, buf, 8, s.file_len + 1));
	EXPECT_EQ(0, pread(fd, buf, 8, 1L << 40));
	/* A negative offset: EINVAL (from the VFS). */
	errno = 0;
	EXPECT_EQ(-1, pread(fd, buf, 8, -1));
	EXPECT_EQ(EINVAL, errno);

	free(whole);
	free(buf);
	stats_close(&s);
}

TEST_F(stats, vm_reads_at_any_offset)
{
	int fd = get_stats_fd(self->vm, 0);

	ASSERT_LE(0, fd);
	check_reads(_metadata, fd);
}

TEST_F(stats, vcpu_reads_at_any_offset)
{
	int fd = get_stats_fd(self->vcpu, 0);

	ASSERT_LE(0, fd);
	check_reads(_metadata, fd);
}

/* Reading again gives the same header, id and descriptors. */
TEST_F(stats, reads_are_repeatable)
{
	int fds[2] = { get_stats_fd(self->vm, 0), get_stats_fd(self->vcpu, 0) };

	for (int i = 0; i < 2; i++) {
		struct stats a, b;

		ASSERT_LE(0, fds[i]);
		stats_open(_metadata, fds[i], &a);
		stats_open(_metadata, dup(fds[i]), &b);
		EXPECT_EQ(0, memcmp(&a.h, &b.h, sizeof(a.h)));
		EXPECT_EQ(0, memcmp(a.id, b.id, NAME_SIZE));
		EXPECT_EQ(0, memcmp(a.descs, b.descs, a.desc_len));
		ASSERT_EQ(a.data_len, b.data_len);
		stats_close(&a);
		stats_close(&b);
	}
}

/* Two fds of the same VM are independent files with the same content. */
TEST_F(stats, several_fds)
{
	int a = get_stats_fd(self->vm, 0), b = get_stats_fd(self->vm, 0);
	struct stats sa, sb;

	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_NE(a, b);
	stats_open(_metadata, a, &sa);
	stats_open(_metadata, b, &sb);
	EXPECT_EQ(0, memcmp(&sa.h, &sb.h, sizeof(sa.h)));
	EXPECT_STREQ(sa.id, sb.id);
	stats_close(&sa);
	stats_close(&sb);
}

/*
 * O_RDONLY and close-on-exec, as KVM creates it: write fails with EBADF,
 * pwrite with ESPIPE (FMODE_PREAD without FMODE_PWRITE), ioctl with ENOTTY.
 */
TEST_F(stats, read_only_and_cloexec)
{
	int fds[2] = { get_stats_fd(self->vm, 0), get_stats_fd(self->vcpu, 0) };
	char byte = 0;

	for (int i = 0; i < 2; i++) {
		ASSERT_LE(0, fds[i]);
		EXPECT_EQ(O_RDONLY, fcntl(fds[i], F_GETFL) & O_ACCMODE);
		EXPECT_EQ(FD_CLOEXEC, fcntl(fds[i], F_GETFD));
		errno = 0;
		EXPECT_EQ(-1, write(fds[i], &byte, 1));
		EXPECT_EQ(EBADF, errno);
		/* pread only: the VFS refuses pwrite before looking further. */
		errno = 0;
		EXPECT_EQ(-1, pwrite(fds[i], &byte, 1, 0));
		EXPECT_EQ(ESPIPE, errno);
		/* Not an ioctl target either. */
		errno = 0;
		EXPECT_EQ(-1, ioctl(fds[i], KVM_GET_STATS_FD, 0));
		EXPECT_EQ(ENOTTY, errno);
		close(fds[i]);
	}
}

/* KVM ignores the argument of KVM_GET_STATS_FD. */
TEST_F(stats, argument_is_ignored)
{
	int a = get_stats_fd(self->vm, 0x1234);
	int b = get_stats_fd(self->vcpu, ~0UL);

	EXPECT_LE(0, a) TH_LOG("VM: %s", strerror(-a));
	EXPECT_LE(0, b) TH_LOG("vCPU: %s", strerror(-b));
	close(a);
	close(b);
}

/* Another process may not get the fds (EIO, like every VM/vCPU ioctl)... */
TEST_F(stats, other_process_gets_eio)
{
	pid_t pid = fork();
	int status;

	ASSERT_LE(0, pid);
	if (pid == 0) {
		int a = get_stats_fd(self->vm, 0);
		int b = get_stats_fd(self->vcpu, 0);

		_exit(a == -EIO && b == -EIO ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ...but an inherited stats fd reads in any process. */
TEST_F(stats, inherited_fd_reads_in_child)
{
	int fd = get_stats_fd(self->vcpu, 0);
	struct kvm_stats_header h;
	pid_t pid;
	int status;

	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)sizeof(h), pread(fd, &h, sizeof(h), 0));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct kvm_stats_header c;

		_exit(pread(fd, &c, sizeof(c), 0) == sizeof(c) && !memcmp(&c, &h, sizeof(c)) ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fd);
}

/* The stats fds outlive the VM, vCPU and device fds. */
TEST_F(stats, outlives_vm_fd)
{
	int vm_fd = get_stats_fd(self->vm, 0);
	int vcpu_fd = get_stats_fd(self->vcpu, 0);
	struct stats before_vm, before_vcpu, vm, vcpu;

	ASSERT_LE(0, vm_fd);
	ASSERT_LE(0, vcpu_fd);
	stats_open(_metadata, dup(vm_fd), &before_vm);
	stats_open(_metadata, dup(vcpu_fd), &before_vcpu);
	close(self->vcpu);
	close(self->vm);
	close(self->dev);
	self->vcpu = self->vm = -1;
	self->dev = open("/dev/null", O_RDONLY);

	stats_open(_metadata, vm_fd, &vm);
	stats_open(_metadata, vcpu_fd, &vcpu);
	EXPECT_EQ(0, memcmp(&vm.h, &before_vm.h, sizeof(vm.h)));
	EXPECT_STREQ(before_vm.id, vm.id);
	EXPECT_EQ(0, memcmp(vm.descs, before_vm.descs, vm.desc_len));
	EXPECT_EQ(0, memcmp(&vcpu.h, &before_vcpu.h, sizeof(vcpu.h)));
	EXPECT_STREQ(before_vcpu.id, vcpu.id);
	stats_close(&vm);
	stats_close(&vcpu);
	stats_close(&before_vm);
	stats_close(&before_vcpu);
}

/*
 * A real-mode guest does OUT then HLT: "exits" (cumulative) grows, and so
 * does "halt_exits" where it exists. Cumulative and peak values never go
 * down. ("io_exits" is not checked: KVM counts it in its VMX and SVM I/O
 * exit handlers, and a KVM flavour without them, such as kvm_pvm, leaves
 * it at 0.)
 */
TEST_F(stats, exits_grow_when_the_guest_runs)
{
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = MEM_SIZE };
	int fd = get_stats_fd(self->vcpu, 0);
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 0x2 };
	struct kvm_run *run;
	struct stats s;
	long long exits, halt;
	__u64 *before;
	char *mem;
	int size;

	ASSERT_LE(0, fd);
	stats_open(_metadata, fd, &s);
	before = malloc(s.data_len);
	ASSERT_NE(NULL, before);
	memcpy(before, s.data, s.data_len);
	exits = stats_value(&s, "exits");
	halt = stats_value(&s, "halt_exits");

	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	memcpy(mem + CODE_GPA, guest_code, sizeof(guest_code));
	r.userspace_addr = (__u64)(unsigned long)mem;
	ASSERT_EQ(0, ioctl(self->vm, KVM_SET_USER_MEMORY_REGION, &r)) TH_LOG("%s", strerror(errno));
	size = ioctl(self->dev, KVM_GET_VCPU_MMAP_SIZE, 0);
	ASSERT_LT(0, size);
	run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, self->vcpu, 0);
	ASSERT_NE(MAP_FAILED, run);
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_GET_SREGS, &sregs));
	sregs.cs.selector = 0;
	sregs.cs.base = 0;
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_SREGS, &sregs)) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_SET_REGS, &regs)) TH_LOG("%s", strerror(errno));

	ASSERT_EQ(0, ioctl(self->vcpu, KVM_RUN, 0)) TH_LOG("KVM_RUN: %s", strerror(errno));
	ASSERT_EQ((__u32)KVM_EXIT_IO, run->exit_reason);
	EXPECT_EQ(OUT_PORT, run->io.port);
	EXPECT_EQ(OUT_VALUE, *((unsigned char *)run + run->io.data_offset));
	ASSERT_EQ(0, ioctl(self->vcpu, KVM_RUN, 0)) TH_LOG("KVM_RUN: %s", strerror(errno));
	ASSERT_EQ((__u32)KVM_EXIT_HLT, run->exit_reason);

	stats_refresh(_metadata, &s);
	if (exits >= 0) {
		EXPECT_LT(exits, stats_value(&s, "exits"));
	} else {
		TH_LOG("no \"exits\" statistic");
	}
	if (halt >= 0) {
		EXPECT_LT(halt, stats_value(&s, "halt_exits"));
	}
	for (unsigned int i = 0; i < s.h.num_desc; i++) {
		const struct kvm_stats_desc *d = desc_at(&s, i);
		__u32 type = d->flags & KVM_STATS_TYPE_MASK;

		if (type == KVM_STATS_TYPE_CUMULATIVE || type == KVM_STATS_TYPE_PEAK) {
			EXPECT_LE(before[d->offset / 8], s.data[d->offset / 8])
				TH_LOG("%s", d->name);
		}
	}

	free(before);
	stats_close(&s);
	munmap(run, size);
	munmap(mem, MEM_SIZE);
}

TEST_HARNESS_MAIN
