# A whole init for an initramfs: power the machine off through the kernel
# (reboot(2) with LINUX_REBOOT_CMD_POWER_OFF), which on ACPI hardware ends in
# the S5 write the VMM turns into a clean exit.
        .globl _start
        .text
_start:
        mov $169, %eax                   # SYS_reboot
        mov $0xfee1dead, %edi            # LINUX_REBOOT_MAGIC1
        mov $672274793, %esi             # LINUX_REBOOT_MAGIC2
        mov $0x4321fedc, %edx            # LINUX_REBOOT_CMD_POWER_OFF
        syscall
1:      jmp 1b
