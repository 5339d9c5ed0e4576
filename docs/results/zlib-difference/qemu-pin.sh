#!/bin/sh
# Pin the source QEMU (all its threads: vCPU, migration, multifd senders) to
# host CPU 0 and a destination (-incoming) to CPU 1, so that the source's
# vCPU thread is preempted by its own migration threads.  Pass this script
# as the harness's --qemu, with MECOM_PIN_QEMU naming the real binary.
Q=${MECOM_PIN_QEMU:?set MECOM_PIN_QEMU to a qemu-system-x86_64}
for a in "$@"; do
    [ "$a" = "-incoming" ] && exec taskset -c 1 "$Q" "$@"
done
exec taskset -c 0 "$Q" "$@"
