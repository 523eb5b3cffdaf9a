"""The vocabulary every part of ci_magic speaks, importing nothing else of ci_magic: settings and errors, the
results and events of an ask, the executor protocol, the privacy levels and where caches live. The flow that
uses it is in :mod:`ci_magic.engine`."""
