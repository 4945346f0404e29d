"""Open a local HTML file in headless Chromium and report what the page did, over the DevTools protocol.

Debian's chromium package is the browser (CI installs it). No selenium or playwright: aiohttp's
websocket client speaks the protocol, and Chromium is stopped by its pid and process group
whatever happens, so no browser outlives a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0"]
# Evaluated in the page once it has loaded; returned by value.
DOM_FACTS = """({
    title: document.title,
    images: document.images.length,
    loaded_images: [...document.images].filter(image => image.complete && image.naturalWidth > 0).length,
    tables: document.querySelectorAll("table").length,
    headings: [...document.querySelectorAll("h2")].map(heading => heading.textContent),
    scripts: document.scripts.length,
    text: document.body.innerText,
    svgs: [...document.querySelectorAll("svg")].map(svg => ({
        width: svg.getBoundingClientRect().width,
        height: svg.getBoundingClientRect().height,
        texts: [...svg.querySelectorAll("text")].map(text => text.textContent),
        rows: [...svg.querySelectorAll("text.row")].map(text => text.textContent),
        bars: [...svg.querySelectorAll("rect")].map(rect => {
            const box = rect.getBBox();
            return {x: box.x, width: box.width, title: rect.querySelector("title").textContent};
        }),
    })),
})"""
ERROR_LEVELS = {"error", "assert"}


@dataclass
class Page:
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text): console API and browser log
    exceptions: list[str] = field(default_factory=list)  # uncaught exceptions
    dialogs: list[str] = field(default_factory=list)  # alert/confirm/prompt messages (dismissed)
    requests: list[str] = field(default_factory=list)  # every URL the page requested, itself included
    dom: dict[str, Any] = field(default_factory=dict)  # DOM_FACTS

    @property
    def errors(self) -> list[str]:
        """Console errors and uncaught exceptions: what a clean page has none of."""
        return [text for level, text in self.console if level in ERROR_LEVELS] + self.exceptions


def open_page(path: Path, timeout_s: float = 30.0) -> Page:
    """Load file://`path` in a fresh headless Chromium and return what happened until the load event."""
    assert os.access(CHROMIUM, os.X_OK), (
        f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    url = Path(path).resolve().as_uri()
    scratch = Path(tempfile.mkdtemp(prefix="loadgen-chromium-"))
    stderr_path = scratch / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        # A new session, so that the renderer and helper processes can be killed as one group.
        process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={scratch / 'profile'}", "about:blank"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
    try:
        return asyncio.run(asyncio.wait_for(_visit(process, stderr_path, url), timeout_s))
    except TimeoutError:
        raise AssertionError(f"Chromium did not load {url} within {timeout_s:g} s; its stderr:\n"
                             f"{stderr_path.read_text(errors='replace')[-3000:]}") from None
    finally:
        _stop(process)
        shutil.rmtree(scratch, ignore_errors=True)


def _stop(process: subprocess.Popen) -> None:
    """Terminate Chromium, kill it if it lingers, then kill whatever is left of its process group."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
        # Orphaned helpers are reaped by init, not by us: wait (briefly) until the group is gone.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)
            time.sleep(0.05)


async def _devtools_url(process: subprocess.Popen, stderr_path: Path) -> str:
    """Chromium prints its browser websocket URL on stderr once it listens (port 0: a free port)."""
    while True:
        log = stderr_path.read_text(errors="replace")
        if found := re.search(r"DevTools listening on (ws://\S+)", log):
            return found.group(1)
        assert process.poll() is None, f"Chromium exited with code {process.returncode}; its stderr:\n{log[-3000:]}"
        await asyncio.sleep(0.05)


class _Connection:
    """One DevTools websocket: numbered calls and their results; events are kept in order as they pass."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self.last_id = 0

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        self.last_id += 1
        call_id = self.last_id
        await self._send(method, session, params, call_id)
        while True:
            message = await self._receive()
            if message.get("id") == call_id:
                assert "error" not in message, f"DevTools {method} failed: {message['error']}"
                return message["result"]

    async def until(self, event: str) -> None:
        """Read until `event` has arrived (it may have already)."""
        while not any(e.get("method") == event for e in self.events):
            await self._receive()

    async def _send(self, method: str, session: str | None, params: dict, call_id: int) -> None:
        await self.ws.send_str(json.dumps({"id": call_id, "method": method, "params": params,
                                           **({"sessionId": session} if session else {})}))

    async def _receive(self) -> dict:
        message = await self.ws.receive()
        assert message.type == aiohttp.WSMsgType.TEXT, f"DevTools connection ended: {message.type.name}"
        data = json.loads(message.data)
        if "method" in data:
            self.events.append(data)
            if data["method"] == "Page.javascriptDialogOpening":
                # A dialog blocks the page until answered: dismiss it and let the load go on (no reply awaited).
                self.last_id += 1
                await self._send("Page.handleJavaScriptDialog", data.get("sessionId"), {"accept": False}, self.last_id)
        return data


async def _visit(process: subprocess.Popen, stderr_path: Path, url: str) -> Page:
    browser_url = await _devtools_url(process, stderr_path)
    async with aiohttp.ClientSession() as http, http.ws_connect(browser_url, max_msg_size=0) as ws:
        devtools = _Connection(ws)
        target = await devtools.call("Target.createTarget", url="about:blank")
        session = (await devtools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True))["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            await devtools.call(f"{domain}.enable", session)
        devtools.events.clear()  # about:blank's own events are not the page's
        await devtools.call("Page.navigate", session, url=url)
        await devtools.until("Page.loadEventFired")
        facts = await devtools.call("Runtime.evaluate", session, expression=DOM_FACTS, returnByValue=True)
        assert "exceptionDetails" not in facts, f"evaluating the DOM facts failed: {facts['exceptionDetails']}"

    page = Page(dom=facts["result"]["value"])
    for event in devtools.events:
        params = event.get("params", {})
        match event["method"]:
            case "Runtime.consoleAPICalled":
                text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
                page.console.append((params["type"], text))
            case "Log.entryAdded":
                page.console.append((params["entry"]["level"], params["entry"]["text"]))
            case "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                page.exceptions.append(details.get("exception", {}).get("description") or details["text"])
            case "Page.javascriptDialogOpening":
                page.dialogs.append(params["message"])
            case "Network.requestWillBeSent":
                page.requests.append(params["request"]["url"])
    return page
