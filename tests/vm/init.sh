#!/bin/busybox sh
# shellcheck shell=dash
# SPDX-License-Identifier: Apache-2.0
# init.sh -- /init of the kernel-matrix initramfs (tests/vm/mkinitramfs.sh).
#
# Sets up the minimum a nodemesh node needs (proc, sys, devtmpfs, bpffs,
# cgroup v2, loopback), loads the kernel modules shipped for this kernel
# (veth, tls, ...: decompressed on the host, busybox insmod cannot inflate),
# runs /nm/vm-tests.sh, and powers off. Results leave through the serial
# console as "VM..." marker lines that tests/vm/run.sh parses.
#
# PID 1 must never exit (the kernel would panic): everything below runs in a
# subshell and poweroff -f ends the VM whatever happened.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/host/bin:/nm/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# bash process substitution needs /dev/fd; devtmpfs does not make it.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /sys/fs/bpf /sys/fs/cgroup /root /var/run
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# Keep printk off the console so it cannot split a marker line; dmesg is
# dumped on failure instead.
dmesg -n 1
ip link set lo up

(
	krel=$(uname -r)
	echo "VMBOOT kernel=$krel uptime=$(cut -d' ' -f1 /proc/uptime)"
	NM_VM_MODE=vm NM_VM_LABEL=$krel NM_VM_ROOT=/nm /bin/sh /nm/vm-tests.sh
	echo "VMDONE kernel=$krel uptime=$(cut -d' ' -f1 /proc/uptime)"
)
sync
poweroff -f
