"""Network by name: the sandbox's way out to the hosts a run allows (``Ask.allow_hosts``), through a proxy in the
parent (``proxy.py``) reached from inside by a forwarder on the sandbox's own loopback (``forward.py``). What a
rule admits is :mod:`ci_magic.core.hosts`."""
