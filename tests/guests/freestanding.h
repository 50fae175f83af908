/* What the lab's whole-init programs share: raw Linux system calls, console output
   and power-off, with no libc. Define GUEST_NAME (the prefix of every console line)
   before including this file, and write `int main(void)`. */

typedef unsigned long u64;
typedef long i64;

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_pause 34
#define SYS_fsync 74
#define SYS_mkdir 83
#define SYS_mount 165
#define SYS_umount2 166
#define SYS_reboot 169
#define SYS_finit_module 313

#define O_RDONLY 0
#define O_WRONLY 1
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_DIRECTORY 0200000
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

/* Standard output until the program opens /dev/console. */
static int console = 1;

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

/* LINUX_REBOOT_CMD_POWER_OFF: on ACPI hardware the S5 write the VMM turns into a
   clean exit. */
__attribute__((noreturn)) static void power_off(void) {
    sys(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc);
    for (;;) {}
}

/* Says what failed and with which errno (negative), then powers off. */
static void check(i64 ret, const char *what) {
    if (ret >= 0) return;
    say(GUEST_NAME ": ");
    say(what);
    say(" failed: ");
    say_number(ret);
    say("\n");
    power_off();
}

int main(void);

__asm__(".globl _start\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  and $-16, %rsp\n"
        "  call main\n"
        "  ud2\n");
