# Halts forever with interrupts off: only the host can end this VM.
        .include "common.S"
        .globl _start
_start:
        cli
1:      hlt
        jmp 1b
