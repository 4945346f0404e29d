"""What the benchmarks share: the model, perf_analyzer, the input and the server's success count."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadgen.inputs import sample_photographs  # noqa: E402

MODEL = "centernet-ensemble"
GET_PERF_ANALYZER = ROOT.parent / "shared" / "tools" / "get-perf-analyzer"


def perf_analyzer() -> str:
    """The perf_analyzer binary's path, installed by ../shared/tools/get-perf-analyzer if needed."""
    return subprocess.run([str(GET_PERF_ANALYZER)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


def success_count(http: str, model: str = MODEL) -> int:
    with urllib.request.urlopen(f"http://{http}/v2/models/{model}/stats", timeout=5) as response:
        stats = json.load(response)["model_stats"][0]["inference_stats"]["success"]["count"]
    return int(stats)


def input_file(workdir: Path) -> Path:
    """perf_analyzer's JSON with the photograph; for a BYTES input, b64 holds the serialized tensor."""
    photo = sample_photographs()[0].read_bytes()
    serialized = len(photo).to_bytes(4, "little") + photo
    path = workdir / "photo.json"
    path.write_text(json.dumps({"data": [{"IMAGE": {"b64": base64.b64encode(serialized).decode()}}]}))
    return path
