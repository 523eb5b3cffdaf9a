"""The seccomp filter of the sandbox: system calls that capabilities and namespaces do not already close.

Built with libseccomp (through ``pyseccomp``) and handed to bubblewrap as a compiled BPF program, which it
loads right before the kernel process starts. The default is to allow; what is refused follows Flatpak's and
Docker's lists: debugging other processes, the kernel keyring, BPF, perf events, userfaultfd, io_uring, every
mount-family call, new namespaces (``unshare``, ``setns``, ``clone`` with namespace flags; ``clone3`` answers
ENOSYS so the C library falls back to ``clone``, whose flags can be checked), kernel modules, kexec, reboot,
terminal injection (``TIOCSTI``/``TIOCLINUX``), and the 32-bit ABIs through which a filter could be dodged.

Some kernel interfaces sit outside every namespace, so only the filter can close them: sockets of families
other than Unix, IPv4/IPv6 (the sandbox's own loopback) and netlink — ``AF_VSOCK`` reaches the hypervisor even
with the network off, ``AF_ALG`` and the rest are kernel attack surface nobody's analysis needs — answer
EAFNOSUPPORT, as a kernel without them would; Linux AIO contexts are counted machine-wide (``aio-max-nr``), so a
sandbox could use them up for the host: the AIO calls answer ENOSYS and libraries fall back to threads.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import tempfile
from typing import Any

#: Refused with EPERM.
DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "name_to_handle_at",
    "open_by_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "uselib",
    "personality",
    "vhangup",
    "nfsservctl",
    "settimeofday",
    "socketcall",  # i386's multiplexer: its arguments are in memory, where a filter cannot check the family
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
)
#: Refused with ENOSYS (Linux AIO: machine-wide contexts; callers fall back to plain I/O).
UNAVAILABLE = ("io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents")
#: Socket families the sandbox may open: AF_UNIX, AF_INET, AF_INET6, AF_NETLINK.
SOCKET_FAMILIES = (1, 2, 10, 16)
#: clone() flags that create namespaces: user, mount, pid, uts, ipc, net, cgroup, time.
NAMESPACE_FLAGS = (0x10000000, 0x00020000, 0x20000000, 0x04000000, 0x08000000, 0x40000000, 0x02000000, 0x80)
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python binding) is missing: the sandbox runs without a seccomp filter."""


@functools.cache
def program() -> bytes:
    """The compiled BPF filter (cached per process: it depends only on the machine)."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError) as exc:  # pyseccomp raises RuntimeError when libseccomp.so is missing
        raise SeccompUnavailable(f"libseccomp is not available ({exc})") from None
    filt: Any = sc.SyscallFilter(defaction=sc.ALLOW)
    for arch in ("X86", "X32"):
        # A native x86-64 process can still make i386/x32 system calls; filter those ABIs too.
        with contextlib.suppress(AttributeError, OSError, RuntimeError, ValueError):  # not an x86 machine
            filt.add_arch(getattr(sc.Arch, arch))
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        with contextlib.suppress(OSError, RuntimeError, ValueError):  # a call this architecture lacks
            filt.add_rule(eperm, name)
    filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for name in UNAVAILABLE:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            filt.add_rule(sc.ERRNO(errno.ENOSYS), name)
    _allow_socket_families(sc, filt)
    for flag in NAMESPACE_FLAGS:  # one rule per bit: refused when any of them is set
        filt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for request in (TIOCSTI, TIOCLINUX):
        filt.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    with tempfile.TemporaryFile() as tmp:  # libseccomp writes through a real file descriptor
        filt.export_bpf(tmp)
        tmp.seek(0)
        return tmp.read()


def _allow_socket_families(sc: Any, filt: Any) -> None:
    """socket() and socketpair() only for SOCKET_FAMILIES. The kernel reads the family as a 32-bit int: a value
    with high bits set is refused by the "at least" rule, low values outside the list by a masked comparison."""
    refused = sc.ERRNO(errno.EAFNOSUPPORT)
    highest = max(SOCKET_FAMILIES)
    for call in ("socket", "socketpair"):
        filt.add_rule(refused, call, sc.Arg(0, sc.GE, highest + 1))
        for family in range(highest):
            if family not in SOCKET_FAMILIES:
                filt.add_rule(refused, call, sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, family))
