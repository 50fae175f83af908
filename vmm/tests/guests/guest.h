/* The C test guests' runtime: port and MMIO access, COM1 output, PCI config
   space through both mechanisms, and interrupts (IDT gates to the stubs in
   c_start.S, local APIC). Guests run in 32-bit protected mode, paging off,
   identity-mapped: a physical address is a pointer. Every instruction here is
   emulated on some hosts, so keep loops short. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define COM1 0x3f8
#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define ECAM_BASE 0xe0000000u
#define LAPIC_SVR 0xfee000f0u
#define IRQ_BASE 0x40

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline u8 read8(u32 a) { return *(volatile u8 *)a; }
static inline u16 read16(u32 a) { return *(volatile u16 *)a; }
static inline u32 read32(u32 a) { return *(volatile u32 *)a; }
static inline void write8(u32 a, u8 v) { *(volatile u8 *)a = v; }
static inline void write16(u32 a, u16 v) { *(volatile u16 *)a = v; }
static inline void write32(u32 a, u32 v) { *(volatile u32 *)a = v; }
static inline void barrier(void) { __asm__ volatile("" : : : "memory"); }

/* gcc may call these for struct copies and zeroing loops. */
void *memset(void *d, int c, unsigned n) {
    u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}
void *memcpy(void *d, const void *s, unsigned n) {
    u8 *p = d;
    const u8 *q = s;
    while (n--) *p++ = *q++;
    return d;
}

static void putc(char c) { outb(COM1, (u8)c); }
static void puts(const char *s) { while (*s) putc(*s++); }
static void puthex(u32 v, int digits) {
    while (digits--) putc("0123456789abcdef"[(v >> (4 * digits)) & 0xf]);
}
static void putdec(u32 v) {
    char buf[10];
    int n = 0;
    do buf[n++] = (char)('0' + v % 10); while (v /= 10);
    while (n) putc(buf[--n]);
}
static int streq(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

/* Configuration mechanism #1. */
static void cf8_select(u8 dev, u16 reg) { outl(PCI_CONFIG_ADDRESS, 0x80000000u | (u32)dev << 11 | (reg & 0xfc)); }
static u32 cf8_read32(u8 dev, u16 reg) { cf8_select(dev, reg); return inl(PCI_CONFIG_DATA); }
static u16 cf8_read16(u8 dev, u16 reg) { cf8_select(dev, reg); return inw(PCI_CONFIG_DATA + (reg & 2)); }
static u8 cf8_read8(u8 dev, u16 reg) { cf8_select(dev, reg); return inb(PCI_CONFIG_DATA + (reg & 3)); }

/* ECAM: bus 0, function 0 of slot `dev`. */
static u32 ecam(u8 dev, u16 reg) { return ECAM_BASE + ((u32)dev << 15) + reg; }

/* Interrupts: IDT gates for vectors IRQ_BASE..IRQ_BASE+3 to irq_stubN, which
   count into irq_counts[N]. */
extern volatile u32 irq_counts[4];
volatile u32 irq_counts[4];
extern void irq_stub0(void), irq_stub1(void), irq_stub2(void), irq_stub3(void);

struct gate {
    u16 offset_lo, selector;
    u8 zero, flags;
    u16 offset_hi;
} __attribute__((packed));
static struct gate idt[IRQ_BASE + 4];

static void interrupts_init(void) {
    void (*stubs[4])(void) = {irq_stub0, irq_stub1, irq_stub2, irq_stub3};
    u16 cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    for (int i = 0; i < 4; i++) {
        u32 handler = (u32)stubs[i];
        struct gate *g = &idt[IRQ_BASE + i];
        g->offset_lo = (u16)handler;
        g->selector = cs;
        g->zero = 0;
        g->flags = 0x8e; /* present, ring 0, 32-bit interrupt gate */
        g->offset_hi = (u16)(handler >> 16);
    }
    struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (u32)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
    /* Software-enable the local APIC so it accepts fixed interrupts (MSIs). */
    write32(LAPIC_SVR, read32(LAPIC_SVR) | 0x100);
}

/* Sleep until an interrupt, without missing one that came after the check:
   `sti; hlt` opens the window only once hlt has started. The handler returns
   right after the hlt with interrupts off and %eax clobbered (see c_start.S). */
static void wait_for_interrupt(void) { __asm__ volatile("sti; hlt; cli" : : : "memory", "eax"); }
