# The boot vCPU prints its APIC ID, wakes the second vCPU with INIT-SIPI-SIPI,
# waits until that one has printed its own APIC ID (from real mode), then powers off.
        .include "common.S"
        .set TRAMPOLINE, 0x10000        # SIPI vector 0x10
        .set AP_DONE, 0x11000
        .set LAPIC_ICR_LOW, 0xfee00300
        .set LAPIC_ICR_HIGH, 0xfee00310
        .globl _start
_start:
        mov $0x200000, %esp
        movl $0, AP_DONE
        mov $1, %eax
        cpuid
        shr $24, %ebx
        mov $bsp_label, %esi
        call puts
        mov %ebx, %eax
        call puthex8
        call newline
        # Copy the real-mode trampoline below 1 MiB.
        mov $ap_start, %esi
        mov $TRAMPOLINE, %edi
        mov $(ap_end - ap_start), %ecx
        rep movsb
        # INIT, then two STARTUPs, to APIC ID 1.
        movl $(1 << 24), LAPIC_ICR_HIGH
        movl $0x00004500, LAPIC_ICR_LOW
        movl $(1 << 24), LAPIC_ICR_HIGH
        movl $(0x00004600 | (TRAMPOLINE >> 12)), LAPIC_ICR_LOW
        movl $(1 << 24), LAPIC_ICR_HIGH
        movl $(0x00004600 | (TRAMPOLINE >> 12)), LAPIC_ICR_LOW
1:      pause
        cmpl $1, AP_DONE
        jne 1b
        jmp poweroff

# Runs at TRAMPOLINE in real mode (CS = 0x1000, IP = 0): position-independent
# 16-bit code that prints "ap XX" with the AP's APIC ID in hex.
        .code16
ap_start:
        mov $1, %eax
        cpuid
        shr $24, %ebx
        mov $COM1, %dx
        mov $'a', %al
        out %al, %dx
        mov $'p', %al
        out %al, %dx
        mov $' ', %al
        out %al, %dx
        mov %bl, %al
        shr $4, %al
        add $'0', %al
        out %al, %dx
        mov %bl, %al
        and $0xf, %al
        add $'0', %al
        out %al, %dx
        mov $'\n', %al
        out %al, %dx
        mov $(AP_DONE >> 4), %ax
        mov %ax, %ds
        movl $1, %ds:0
ap_halt:
        cli
        hlt
        jmp ap_halt
ap_end:
        .code32
bsp_label: .asciz "bsp "
