"""The isolated place where generated code runs: one sandbox kernel per session, its files, and data transfer.

:class:`Sandbox` (``local.py``) is the session on this machine; :mod:`.gateway` runs the same seam on Jupyter
Enterprise Gateway, :mod:`.fake` scripts it for tests. The local sandbox is made of:

- isolation: what bubblewrap builds (``isolation.py``, ``seccomp.py``, ``launcher.py``), what each start is
  made of (``startup.py``), and the report of what the sandbox really is (``isolation_report.py``);
- the kernel (``kernel.py``) and its messages, read with capped sizes (``kernel_messages.py``), outputs
  (``outputs.py``, ``sanitize.py``);
- what the parent sees from outside: the sandbox's process (``host_process.py``), its cgroups
  (``cgroups.py``), its files (``host_files.py``), and what the code leaves running (``runaway.py``);
- the network: none, or the hosts a run allows by name through the parent's egress proxy (:mod:`.egress`);
- frames in and values out (``frames_in.py``, ``values_out.py``, ``transfer.py``, ``receive.py``), and what
  the code mentions (``scan.py``).

Frames go in as Arrow IPC files in the parent's private folder, which the sandbox sees read-only, and are
re-sent only when they changed. Values come back through the sandbox's outbox, read from outside without
following links and checked before they are built; nothing is unpickled. The user's files are visible
read-only in the working folder; everything the code writes stays in the sandbox's size-capped tmpfs.
"""

from __future__ import annotations

from .local import Sandbox
from .scan import assigned_names, code_names
from .startup import child_environment

__all__ = ["Sandbox", "assigned_names", "child_environment", "code_names"]
