"""OpenTelemetry for traces (optional): spans go to a configured ``TracerProvider``, or over OTLP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and an exporter is installed (``pip install ".[otel]"``)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

_otel_provider: Any = None  # set by use_tracer_provider (tests, apps) or built from OTEL_* env vars
_otel_from_env: Any = None


def use_tracer_provider(provider: Any) -> None:
    """Send ci_magic's spans to this OpenTelemetry ``TracerProvider`` (None: back to the automatic choice)."""
    global _otel_provider
    _otel_provider = provider


def tracer() -> Any:
    """A tracer, or None when OpenTelemetry is not installed or nothing is configured to receive spans."""
    global _otel_from_env
    try:
        from opentelemetry import trace as otel_trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return None
    provider = _otel_provider
    if provider is None:
        current = otel_trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current  # the application configured OpenTelemetry itself
        elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            if _otel_from_env is None:
                _otel_from_env = _provider_from_env()
            provider = _otel_from_env or None
    return provider.get_tracer("ci_magic") if provider is not None else None


def _provider_from_env() -> Any:
    """An SDK provider exporting over OTLP; the exporter reads the standard OTEL_EXPORTER_OTLP_* variables
    (endpoint, headers, protocol, timeout) and the resource reads OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning(
            "ci_magic: OTEL_EXPORTER_OTLP_ENDPOINT is set but no OTLP exporter is installed "
            "(pip install opentelemetry-exporter-otlp); spans go to the JSONL trace only."
        )
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": "ci_magic"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def attribute_value(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
