# Counts forever on COM1: "tick 00000001", "tick 00000002", ... with a busy wait
# between ticks. The count is kept in %ebx and in memory, and checked against each
# other at every tick, so a machine continued from a saved state must have both
# back to go on where it was; a mismatch prints "lost count" and powers off.
        .include "common.S"
        .set COUNT, 0x180000
        .set DELAY, 20000
        .globl _start
_start:
        mov $0x200000, %esp
        xor %ebx, %ebx
        movl $0, COUNT
1:      cmp COUNT, %ebx
        jne lost
        inc %ebx
        incl COUNT
        mov $tick, %esi
        call puts
        mov %ebx, %eax
        call puthex
        call newline
        mov $DELAY, %ecx
2:      dec %ecx
        jnz 2b
        jmp 1b
lost:
        mov $lost_msg, %esi
        call puts
        jmp poweroff
tick:     .asciz "tick "
lost_msg: .asciz "lost count\n"
