"""The seccomp filter of the sandbox: system calls that capabilities and namespaces do not already close.

Built with libseccomp (through ``pyseccomp``) and handed to bubblewrap as a compiled BPF program, which it
loads right before the kernel process starts. The default is to allow; what is refused follows Flatpak's and
Docker's lists: debugging other processes, the kernel keyring, BPF, perf events, userfaultfd, io_uring, every
mount-family call, new namespaces (``unshare``, ``setns``, ``clone`` with namespace flags; ``clone3`` answers
ENOSYS so the C library falls back to ``clone``, whose flags can be checked), kernel modules, kexec, reboot,
terminal injection (``TIOCSTI``/``TIOCLINUX``), and the 32-bit ABIs through which a filter could be dodged.
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
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
)
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
    for flag in NAMESPACE_FLAGS:  # one rule per bit: refused when any of them is set
        filt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for request in (TIOCSTI, TIOCLINUX):
        filt.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    with tempfile.TemporaryFile() as tmp:  # libseccomp writes through a real file descriptor
        filt.export_bpf(tmp)
        tmp.seek(0)
        return tmp.read()
