# Loads an empty IDT, then a segment selector past the end of the GDT: the #GP
# cannot be delivered, the #DF neither, and the CPU shuts down (a triple fault).
        .include "common.S"
        .globl _start
_start:
        lidt idt
        mov $0x80, %ax
        mov %ax, %ds
1:      hlt
        jmp 1b
idt:    .word 0
        .long 0
