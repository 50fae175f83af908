# Powers off at once: measures the VMM, not the guest.
        .include "common.S"
        .globl _start
_start:
        jmp poweroff
