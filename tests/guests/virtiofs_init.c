/* A whole init for an initramfs that checks a virtio-fs share end to end: load the
   modules the initramfs carries as /mod0.ko, /mod1.ko, ... in that order (virtio's
   PCI transport, fuse, virtiofs), mount the share tagged "lab-share" at /mnt, print
   what /mnt/from-l1.txt holds, write "L2 saw: " and that to /mnt/from-l2.txt,
   unmount and power off. Every step says on the console how it went.

   No libc: static, freestanding, raw system calls. */

typedef unsigned long u64;
typedef long i64;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_fsync 74
#define SYS_mkdir 83
#define SYS_reboot 169
#define SYS_mount 165
#define SYS_umount2 166
#define SYS_finit_module 313

#define O_RDONLY 0
#define O_WRONLY 1
#define O_CREAT 0100
#define O_TRUNC 01000
#define ENOENT 2

static i64 syscall6(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e) {
    i64 ret;
    register i64 r10 __asm__("r10") = d;
    register i64 r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys(n, a, b, c) syscall6(n, (i64)(a), (i64)(b), (i64)(c), 0, 0)

/* gcc may call these for array initializers even in freestanding code. */
void *memset(void *d, int c, u64 n) {
    char *p = d;
    while (n--) *p++ = (char)c;
    return d;
}
void *memcpy(void *d, const void *s, u64 n) {
    char *p = d;
    const char *q = s;
    while (n--) *p++ = *q++;
    return d;
}

static int console = -1;

static u64 length(const char *s) {
    u64 n = 0;
    while (s[n]) n++;
    return n;
}

static void say(const char *s) { sys(SYS_write, console, s, length(s)); }

static void say_number(i64 v) {
    char buf[24];
    int n = sizeof buf;
    int negative = v < 0;
    u64 u = negative ? (u64)-v : (u64)v;
    do buf[--n] = (char)('0' + u % 10); while (u /= 10);
    if (negative) buf[--n] = '-';
    sys(SYS_write, console, buf + n, sizeof buf - n);
}

/* Says what failed and with which errno (negative), then powers off. */
static void check(i64 ret, const char *what) {
    if (ret >= 0) return;
    say("l2 virtiofs: ");
    say(what);
    say(" failed: ");
    say_number(ret);
    say("\n");
    sys(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc);
}

static void load_modules(void) {
    char path[] = "/mod0.ko";
    for (char i = 0; i < 10; i++) {
        path[4] = '0' + i;
        i64 fd = sys(SYS_open, path, O_RDONLY, 0);
        if (fd == -ENOENT) return;
        check(fd, path);
        check(sys(SYS_finit_module, fd, "", 0), path);
        sys(SYS_close, fd, 0, 0);
    }
}

int main(void) {
    sys(SYS_mkdir, "/dev", 0755, 0);
    sys(SYS_mount, "devtmpfs", "/dev", "devtmpfs");
    console = (int)sys(SYS_open, "/dev/console", O_WRONLY, 0);
    say("l2 virtiofs: init started\n");
    load_modules();
    check(sys(SYS_mkdir, "/mnt", 0755, 0), "mkdir /mnt");
    check(syscall6(SYS_mount, (i64) "lab-share", (i64) "/mnt", (i64) "virtiofs", 0, 0),
          "mount -t virtiofs lab-share /mnt");
    say("l2 virtiofs: mounted\n");

    static char seen[512] = "L2 saw: ";
    const u64 prefix = 8;
    i64 in = sys(SYS_open, "/mnt/from-l1.txt", O_RDONLY, 0);
    check(in, "open /mnt/from-l1.txt");
    i64 got = sys(SYS_read, in, seen + prefix, sizeof seen - prefix - 1);
    check(got, "read /mnt/from-l1.txt");
    sys(SYS_close, in, 0, 0);
    say("l2 read: ");
    sys(SYS_write, console, seen + prefix, got);

    i64 out = sys(SYS_open, "/mnt/from-l2.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    check(out, "create /mnt/from-l2.txt");
    check(sys(SYS_write, out, seen, prefix + got), "write /mnt/from-l2.txt");
    check(sys(SYS_fsync, out, 0, 0), "fsync /mnt/from-l2.txt");
    check(sys(SYS_close, out, 0, 0), "close /mnt/from-l2.txt");
    check(sys(SYS_umount2, "/mnt", 0, 0), "umount /mnt");
    say("l2 virtiofs: wrote from-l2.txt and unmounted\n");
    sys(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc);
    for (;;) {}
}

__asm__(".globl _start\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  and $-16, %rsp\n"
        "  call main\n"
        "  ud2\n");
