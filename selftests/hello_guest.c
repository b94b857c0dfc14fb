// SPDX-License-Identifier: GPL-2.0
/*
 * hello_guest: the smallest useful VMM, for `make demo`. It gives a guest
 * 64 KiB of "ROM" at the top of the 4 GiB space and 64 KiB of RAM at 0,
 * starts it from the reset vector like a PC (no KVM_SET_SREGS), and prints
 * whatever the guest writes to port 0xe9. The guest switches itself from
 * real mode to 32-bit protected mode, asks CPUID who it runs on, copies its
 * message with REP MOVSB, prints it with REP OUTSB, and halts.
 *
 * Usage: hello_guest [device]   (default $RKVM_DEV or /dev/rkvm)
 * Exit status 0 when the guest halted after printing its greeting.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define ROM_GPA		0xffff0000UL
#define ROM_SIZE	0x10000UL
#define RAM_SIZE	0x10000UL
#define PORT_CON	0xe9
#define STR(x) #x
#define XSTR(x) STR(x)

/*
 * The ROM image: code at ROM offset 0 (CS base 0xffff0000 after reset), the
 * GDT and message after it, the reset vector at offset 0xfff0. Addresses are
 * ROM offsets in real mode and linear (0xffff0000 + offset) once flat.
 */
asm(".pushsection .rodata.guest, \"a\"\n"
	".code16\n"
	".global rom_start, rom_end\n"
	"rom_start:\n"
	"	cli\n"
	"	lgdtl %cs:(gdtr - rom_start)\n"
	"	mov %cr0, %eax\n"
	"	or $1, %eax\n"
	"	mov %eax, %cr0\n"
	/* Far jump to the flat 32-bit code segment (selector 8). */
	"	ljmpl $8, $(0xffff0000 + pm32 - rom_start)\n"
	".code32\n"
	"pm32:\n"
	"	mov $16, %ax\n"
	"	mov %ax, %ds\n"
	"	mov %ax, %es\n"
	"	mov %ax, %ss\n"
	"	mov $0x8000, %esp\n"
	/* CPUID leaf 0: the vendor string goes into the message. */
	"	xor %eax, %eax\n"
	"	cpuid\n"
	"	mov $(0xffff0000 + vendor - rom_start), %edi\n"
	"	mov %ebx, (%edi)\n"
	"	mov %edx, 4(%edi)\n"
	"	mov %ecx, 8(%edi)\n"
	/* Copy the message to RAM, then print it from there. */
	"	mov $(0xffff0000 + msg - rom_start), %esi\n"
	"	mov $0x1000, %edi\n"
	"	mov $(msg_end - msg), %ecx\n"
	"	cld\n"
	"	rep movsb\n"
	"	mov $0x1000, %esi\n"
	"	mov $(msg_end - msg), %ecx\n"
	"	mov $" XSTR(PORT_CON) ", %dx\n"
	"	rep outsb\n"
	"	hlt\n"
	".balign 8\n"
	"gdt:\n"
	"	.quad 0\n"
	"	.quad 0x00cf9b000000ffff\n"	/* 8: flat 32-bit code */
	"	.quad 0x00cf93000000ffff\n"	/* 16: flat data */
	"gdtr:\n"
	"	.word gdtr - gdt - 1\n"
	"	.long 0xffff0000 + gdt - rom_start\n"
	"msg:\n"
	"	.ascii \"Hello from a guest in 32-bit protected mode; CPUID says \"\n"
	"vendor:\n"
	"	.ascii \"????????????\"\n"
	"	.ascii \".\\n\"\n"
	"msg_end:\n"
	"	.org rom_start + 0xfff0\n"
	".code16\n"
	"	jmp rom_start\n"
	"	.org rom_start + 0x10000\n"
	"rom_end:\n"
	".code64\n"
	".popsection\n");
extern const char rom_start[], rom_end[];

static void die(const char *what)
{
	fprintf(stderr, "hello_guest: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

static void add_slot(int vm, unsigned int slot, unsigned long gpa, unsigned long size, void *mem)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (unsigned long)mem,
	};

	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
		die("KVM_SET_USER_MEMORY_REGION");
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : getenv("RKVM_DEV") ? : "/dev/rkvm";
	unsigned long exits = 0, bytes = 0;
	struct kvm_run *run;
	int dev, vm, vcpu, size;
	void *rom = map(ROM_SIZE), *ram = map(RAM_SIZE);

	memcpy(rom, rom_start, rom_end - rom_start);
	dev = open(path, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		die(path);
	vm = ioctl(dev, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	add_slot(vm, 0, 0, RAM_SIZE, ram);
	add_slot(vm, 1, ROM_GPA, ROM_SIZE, rom);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	size = ioctl(dev, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vcpu < 0 || size <= 0)
		die("KVM_CREATE_VCPU");
	run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap vcpu");
	printf("hello_guest: running a guest from the reset vector on %s\n", path);
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0))
			die("KVM_RUN");
		exits++;
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == PORT_CON &&
		    run->io.direction == KVM_EXIT_IO_OUT && run->io.size == 1) {
			bytes += run->io.count;
			fwrite((char *)run + run->io.data_offset, 1, run->io.count, stdout);
			continue;
		}
		if (run->exit_reason == KVM_EXIT_HLT)
			break;
		fprintf(stderr, "hello_guest: unexpected exit %u\n", run->exit_reason);
		return 1;
	}
	printf("hello_guest: guest halted after %lu exits to user space, %lu bytes printed\n",
	       exits, bytes);
	return bytes ? 0 : 1;
}
