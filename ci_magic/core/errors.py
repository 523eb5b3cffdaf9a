"""Every exception ci_magic raises on purpose, in one tree.

::

    CIMagicError                      base: always carries a one-paragraph, user-facing message
    ├── UsageError                    bad magic/CLI arguments or settings (CLI exit 2)
    ├── ContextError                  a frame cannot be described or named frames are missing
    ├── ProviderError                 talking to the model failed (never the model's *code*)
    │   ├── ProviderConfigError       no model configured / no key where one is required
    │   ├── ProviderUnreachable       connection refused, DNS, server down
    │   ├── ProviderAuthError         401/403
    │   ├── ProviderRateLimited       429 after our retries (carries retry_after)
    │   ├── ProviderTimeout           the request or the stream stalled
    │   └── ProviderResponseError     malformed or truncated reply, unknown model, other 4xx/5xx
    ├── SandboxError                  the child kernel could not be started or recovered
    │   └── TransferError             a value could not be moved between kernels
    ├── BudgetExceeded                a token/cost budget stopped the loop
    └── Cancelled                     the user interrupted an ask

Errors *from generated code* (exceptions, timeouts, a dead child, a reply without code) are not
exceptions here: they are data, recorded on :class:`ci_magic.core.results.Attempt` and fed back to the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import AskSummary


class CIMagicError(Exception):
    """Base class. ``str(err)`` is the whole message shown to the user. An error that ended an ask carries
    what the ask had spent until then (``summary``, set by the interpreter)."""

    summary: AskSummary | None = None

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback: the message is the whole story.
        return [f"ci_magic {type(self).__name__}: {self}"]


class UsageError(CIMagicError):
    """Arguments or settings that cannot work."""


class ContextError(CIMagicError):
    """The data context cannot be built."""


class ProviderError(CIMagicError):
    """The model endpoint could not give us a reply. ``status``: the HTTP status it answered, if it did."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProviderConfigError(ProviderError):
    """No usable model configuration."""


class ProviderUnreachable(ProviderError):
    """The server could not be reached."""


class ProviderAuthError(ProviderError):
    """The server refused our credentials."""


class ProviderRateLimited(ProviderError):
    """The server kept answering 429."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """The request or the stream stalled past the timeout."""


class ProviderResponseError(ProviderError):
    """The server answered, but not with a usable completion."""


class SandboxError(CIMagicError):
    """The child kernel could not be started, or could not be recovered."""


class TransferError(SandboxError):
    """A frame or a result could not be moved between the kernels."""


class CodeFailed(CIMagicError):
    """Code run again through ``%%sandbox`` failed there (its error is shown above): the cell fails, so "Run
    All" stops instead of running later cells on missing results."""


class BudgetExceeded(CIMagicError):
    """A token or cost budget was exhausted. ``limit``: the budget as given ("5000", "$0.05")."""

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class Cancelled(CIMagicError):
    """The user interrupted the ask."""
