"""The metrics scraper: reads the server's /metrics page during the run, every interval and at each window boundary."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable
from time import monotonic_ns
from urllib.parse import urlsplit

import aiohttp

from loadgen.errors import UsageError
from loadgen.metrics import Scrape, parse_metrics
from loadgen.redact import redact_url
from loadgen.transport.tls import TlsOptions

DEFAULT_METRICS_PORT = 8002
# A page that takes longer than this is worth a warning, not a stalled measurement.
SCRAPE_TIMEOUT_S = 5.0


def server_metrics_url(server_url: str) -> str:
    """perf_analyzer's default: the metrics port (8002) on the server's host."""
    host = urlsplit(server_url if "://" in server_url else f"//{server_url}").hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{DEFAULT_METRICS_PORT}/metrics"


def metrics_url(given: str) -> str:
    """--metrics-url as perf_analyzer takes it: host:port/path, the scheme optional."""
    url = given if "://" in given else f"http://{given}"
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unclosed [IPv6 bracket, a port that is not a number from 0 to 65535
        valid = False
    if not valid:
        raise UsageError(f"--metrics-url {redact_url(given)!r} is not host:port/path or http(s)://host:port/path, e.g. localhost:8002/metrics")
    return url


class MetricsScraper:
    """Scrapes in the background and keeps every scrape, in time order, for the run's report.

    Each kept scrape is compact (see `Scrape`: about 0.4 KB for the centernet ensemble's 27
    series), so a long run's series stays small: an hour at the default 1 s interval is ~1.6 MB.

    A scrape that fails is reported once through `on_warning` and counted; the run goes on.
    """

    def __init__(
        self, url: str, interval_ms: int, models: Iterable[str], on_warning: Callable[[str], None], tls: TlsOptions | None = None
    ) -> None:
        self.url = url
        self._tls = tls  # for an https page
        self.interval_ms = interval_ms
        self.series: list[Scrape] = []
        self.attempts = 0
        self.failures = 0
        self._models = set(models)
        self._on_warning = on_warning
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        https = self._tls is not None and self.url.lower().startswith("https://")
        connector = aiohttp.TCPConnector(ssl=self._tls.context("http/1.1") if https else True)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S), connector=connector)
        self._task = asyncio.create_task(self._every_interval())

    async def _every_interval(self) -> None:
        while True:
            started_ns = monotonic_ns()
            await self.scrape()
            elapsed_s = (monotonic_ns() - started_ns) / 1e9
            await asyncio.sleep(max(0.0, self.interval_ms / 1e3 - elapsed_s))

    async def _page(self) -> str:
        async with self._session.get(self.url) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            return await response.text()

    async def scrape(self, at_ns: int | None = None) -> Scrape | None:
        """Read the page now and keep it, stamped `at_ns` (a window boundary) or when it was read."""
        self.attempts += 1
        sent_ns = monotonic_ns()
        try:
            values = parse_metrics(await self._page(), self._models)
        except (TimeoutError, aiohttp.ClientError, ValueError, UnicodeDecodeError) as exc:
            self.failures += 1
            if self.failures == 1:
                shown = redact_url(self.url)
                reason = (str(exc) or type(exc).__name__).replace(self.url, shown)
                self._on_warning(f"cannot read metrics from {shown} ({reason}): the run goes on without them")
            return None
        t_ns = at_ns if at_ns is not None else (sent_ns + monotonic_ns()) // 2
        scrape = Scrape(t_ns, values)
        bisect.insort(self.series, scrape, key=lambda s: s.t_ns)
        return scrape

    def between(self, start_ns: int, end_ns: int) -> list[Scrape]:
        """The scrapes stamped within [start_ns, end_ns], in time order."""
        stamps = [s.t_ns for s in self.series]
        return self.series[bisect.bisect_left(stamps, start_ns) : bisect.bisect_right(stamps, end_ns)]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
