/* /sbin/init of the lab's suspend check: counts on the console forever, "l2 tick N:
   read 4096 bytes from /dev/vda", a fifth of a second apart. Each tick reads a block
   of the root disk past the page cache (O_DIRECT), so every tick is a virtio-blk
   request answered with an interrupt, and sleeps on the guest's timer: a machine
   continued from a saved state must have its disk, its interrupts and its clock
   back to go on counting.

   No libc: static, freestanding, raw system calls (freestanding.h). */

#define GUEST_NAME "l2 counter"
#include "freestanding.h"

#define SYS_pread64 17
#define SYS_nanosleep 35
#define O_DIRECT 040000
#define BLOCK 4096

static unsigned char block[BLOCK] __attribute__((aligned(BLOCK)));

int main(void) {
    i64 fd = sys(SYS_open, "/dev/console", O_WRONLY, 0);
    if (fd >= 0) console = (int)fd;
    i64 disk = sys(SYS_open, "/dev/vda", O_RDONLY | O_DIRECT, 0);
    check(disk, "open /dev/vda");
    struct { i64 sec, nsec; } pause = {0, 200000000};
    for (i64 tick = 1;; tick++) {
        /* A different block each time: 16 MiB of disk, 4096 blocks. */
        i64 got = syscall6(SYS_pread64, disk, (i64)block, BLOCK, (tick % 4096) * BLOCK, 0);
        check(got, "read /dev/vda");
        say("l2 tick ");
        say_number(tick);
        say(": read ");
        say_number(got);
        say(" bytes from /dev/vda\n");
        sys(SYS_nanosleep, &pause, 0, 0);
    }
}
