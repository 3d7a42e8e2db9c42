"""What every service's /metrics has in common: no ``*_created`` series, process and runtime metrics, build
info, and the exposition format the scraper asks for.

The ``*_created`` series (one extra series per counter, histogram and labelled child, carrying the time it was
created) double what Prometheus stores for Vigil's counters and no dashboard or alert reads them; a counter's
reset is visible in the counter itself. They are turned off once, here, for the whole process.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from vigil import __version__

disable_created_metrics()  # type: ignore[no-untyped-call]  # the library leaves it unannotated


def service_metrics(registry: CollectorRegistry, component: str) -> None:
    """Build info plus the process (CPU, memory, file descriptors, start time), Python platform and garbage
    collector metrics, on the registry the service serves (services take their own registry, not the
    library's global one)."""
    info = Gauge(f"vigil_{component}_build_info", "Build information.", ["version"], registry=registry)
    info.labels(version=__version__).set(1)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The registry in the format the scraper's Accept header asks for: OpenMetrics when it lists
    ``application/openmetrics-text``, the Prometheus text format otherwise; returns (body, content type)."""
    encode: Callable[[CollectorRegistry], bytes]
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
