"""tune.png and tune.html, from a real tune's tune.json (tests/data/tune) and from tunes built here;
the page opened in headless Chromium. No server."""

from __future__ import annotations

import html
import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import open_page
from PIL import Image

from loadgen.cli import main
from loadgen.knobs import StageSettings
from loadgen.report.render import load_tune
from loadgen.report.tune_html import KEPT, START, kept, render_tune_report
from loadgen.report.tune_plots import plot_data, render_tune_plot, sla_p99_ms, tune_chart
from loadgen.tune_result import COMPLETE, LOAD_FAILED, MEASURED, NO_LEVEL, CandidateResult, TuneResult

DATA = Path(__file__).parent / "data" / "tune"
HOSTILE = "<script>alert(1)</script>"
# The real tune's candidates: best first by mean throughput, then whether each became the current best.
RANKED = [11, 9, 8, 10, 7, 6, 5, 3, 4, 1, 2, 0]
KEPT_REAL = [True, True, False, False, False, False, True, False, True, False, False, False]
HEADINGS = ["Candidates, best first", "Plots", "How the search went", "The best configuration's models ([11])"]


class _Tables(HTMLParser):
    """Every table of a page: rows of (cell text, href of the cell's link or None), header rows included."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, str | None]]]] = []
        self._cell: list[str] | None = None
        self._href: str | None = None
        self.feed(source)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._href = [], None
        elif tag == "a" and self._cell is not None:
            self._href = dict(attrs)["href"]

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(("".join(self._cell), self._href))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tune_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "tune"
    shutil.copytree(DATA, folder)
    return folder


def settings(instances: int) -> StageSettings:
    return StageSettings(instances=instances, dynamic_batching=False, max_queue_delay_us=0, preferred_batch_size=(),
                         max_batch_size=8)  # fmt: skip


def candidate(index: int, outcome: str = MEASURED, throughput: float | None = None, p99_ms: float | None = None,
              models: tuple[str, ...] = ("pre", "main"), **more) -> CandidateResult:  # fmt: skip
    return CandidateResult(index=index, settings=tuple((model, settings(index + 1)) for model in models), configs={},
                           outcome=outcome, throughput_infer_per_s=throughput, p99_ms=p99_ms, level_value=4.0 if throughput else None,
                           run_dir=f"candidates/{index:03d}", reason=f"reason {index}", spread=0.02, **more)  # fmt: skip


def tune(candidates, ensemble: str = "pipeline", best: int | None = None, **options) -> TuneResult:
    bounds = {"sla": ["p99_ms<50", "throughput>1"], "latency_threshold_ms": None, "target_throughput": None,
              "headroom_pct": 0.0} | options  # fmt: skip
    return TuneResult(ensemble=ensemble, search="guided", options={"min_gain_pct": 5.0, "bounds": bounds},
                      candidates=tuple(candidates), best=best, status=COMPLETE, stop_reason="the search ended",
                      started_at="2026-12-02T10:00:00", finished_at="2026-12-02T10:05:00")  # fmt: skip


def open_clean(path: Path):
    page = open_page(path)
    assert not page.errors, page.errors
    assert not page.dialogs, page.dialogs
    # Nothing fetched but the page itself and its inline image.
    assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
    assert page.dom["scripts"] == 0
    return path.read_text(), page


def test_the_plot_shows_the_measured_candidates_and_their_pareto_front(tmp_path):
    result = load_tune(DATA / "tune.json")
    data = plot_data(result)
    assert [point.index for point in data.points] == list(range(12)) and data.left_out == ()
    # [1] has the lowest p99 of all, [9] the lowest above 1's throughput, [11] the highest throughput.
    assert data.front == (1, 9, 11)
    assert (data.default, data.best, data.sla_p99_ms) == (0, 11, 100.0)
    assert data.points[8].throughput_infer_per_s == pytest.approx(506.03, abs=0.01)  # the mean of its 3 measurements

    plot = render_tune_plot(result, tmp_path / "plots")
    assert plot is not None and plot.path == tmp_path / "plots" / "tune.png"
    with Image.open(plot.path) as image:
        assert image.format == "PNG" and image.size == (900, 500)


def test_failed_and_no_level_candidates_are_listed_not_plotted(tmp_path):
    candidates = [candidate(0, throughput=100.0, p99_ms=40.0), candidate(1, LOAD_FAILED, message="out of memory"),
                  candidate(2, NO_LEVEL, p99_ms=80.0), candidate(3, throughput=90.0, p99_ms=45.0),
                  candidate(4, throughput=150.0, p99_ms=48.0), candidate(5, throughput=150.0, p99_ms=30.0)]  # fmt: skip
    result = tune(candidates, best=5)
    data = plot_data(result)
    assert [point.index for point in data.points] == [0, 3, 4, 5]
    assert [each.index for each in data.left_out] == [1, 2]
    assert data.front == (5,)  # 5 has 4's throughput at a lower p99, and beats 0 and 3 on both
    figure = tune_chart(result)
    assert "Not plotted: [1] failed to load, [2] no level within the bounds" in figure.axes[0].get_xlabel()

    # Nothing measured: no chart, and a stale one from an earlier rendering is removed.
    render_tune_plot(result, tmp_path)
    assert (tmp_path / "tune.png").exists()
    assert render_tune_plot(tune(candidates[1:3]), tmp_path) is None
    assert not (tmp_path / "tune.png").exists()


@pytest.mark.parametrize(("slas", "expected"), [
    (["p99_ms<100", "p99_ms<=80", "avg_ms<10"], 80.0), (["p99_ms>5", "p90_ms<10"], None), ([], None),
])  # fmt: skip
def test_the_sla_line_is_the_tightest_p99_bound(slas, expected):
    assert sla_p99_ms({"sla": slas}) == expected


def test_kept_is_the_noise_rule_over_the_running_best():
    assert kept(load_tune(DATA / "tune.json").candidates, 0.05) == KEPT_REAL
    # A failed start is replaced by the first measured candidate; a gain within the spread (here 2%,
    # the floor 5%) is not kept; one past it is, against the new current best.
    flags = kept([candidate(0, LOAD_FAILED), candidate(1, throughput=100.0), candidate(2, throughput=104.0),
                  candidate(3, throughput=106.0), candidate(4, throughput=110.0)], 0.05)  # fmt: skip
    assert flags == [True, True, False, True, False]


def test_the_page_of_a_real_tune(tmp_path):
    folder = tune_copy(tmp_path)
    (folder / "candidates" / "001").mkdir(parents=True)
    (folder / "candidates" / "001" / "summary.json").write_text("{}")
    (folder / "candidates" / "002").mkdir()
    (folder / "candidates" / "002" / "summary.json").write_text("{}")
    (folder / "candidates" / "002" / "report.html").write_text("<p>run</p>")
    (folder / "best" / "model_repository").mkdir(parents=True)

    path = render_tune_report(load_tune(folder / "tune.json"), folder)
    assert path == folder / "tune.html" and (folder / "plots" / "tune.png").exists()
    source, page = open_clean(path)
    dom, text = page.dom, page.dom["text"]
    assert dom["title"] == "loadgen tune: tunable, 2026-12-02 13:39:50"
    assert dom["headings"] == HEADINGS
    assert dom["images"] == 1 and dom["loaded_images"] == 1
    assert "Complete: --max-candidates 12 reached." in text and "Within: p99_ms<100." in text
    assert "Best: [11] 520.6 infer/s within the bounds, p99 98.5 ms: 11.02x the default configuration's 47.3 infer/s." in text
    assert 'href="best/model_repository/"' in source

    ranked, steps, again = _Tables(source).tables
    assert [cell for cell, _ in ranked[0]][:4] == ["", "#", "batcher", "worker"]
    rows = ranked[1:]
    assert [int(row[1][0]) for row in rows] == RANKED
    assert rows[0][0][0] == "best" and rows[-1][0][0] == "default" and all(not row[0][0] for row in rows[1:-1])
    assert [cell for cell, _ in rows[0][2:]] == ["3 inst dyn q=0us mbs=8", "3 inst dyn q=0us mbs=8", "520.6", "3", "32",
                                                 "98.5", "10 %", "—", "—", ""]  # fmt: skip
    assert [cell for cell, _ in rows[1][2:8]] == ["2 inst dyn q=1000us mbs=8", "3 inst no dyn mbs=8", "509.9", "3", "32", "70.4"]

    head = [cell for cell, _ in steps[0]]
    assert head[0] == "#" and head[7] == "Kept" and head[8] == "Run"
    assert [int(row[0][0]) for row in steps[1:]] == list(range(12))
    assert [row[7][0] for row in steps[1:]] == [START if flag and i == 0 else KEPT if flag else ""
                                                for i, flag in enumerate(KEPT_REAL)]  # fmt: skip
    assert steps[2][1][0].startswith("batcher took 93% of the ensemble's time") and steps[2][4][0] == "171.9"
    # Links only to what is there: 001's summary, 002's rendered report; the others have no folder here.
    assert [row[8] for row in steps[1:4]] == [("—", None), ("candidates/001/summary.json", "candidates/001/summary.json"),
                                              ("candidates/002/report.html", "candidates/002/report.html")]  # fmt: skip
    assert [int(row[0][0]) for row in again[1:]] == [8, 9, 11]  # the leaders measured again


def test_hostile_names_are_escaped_everywhere(tmp_path):
    models = (HOSTILE, "worker$\\frac{a}{")  # a "$" would start mathtext in a matplotlib label
    candidates = [candidate(0, throughput=10.0, p99_ms=20.0, models=models),
                  candidate(1, LOAD_FAILED, message=f"Triton says {HOSTILE}", models=models),
                  candidate(2, throughput=30.0, p99_ms=25.0, models=models)]  # fmt: skip
    candidates[2] = replace(candidates[2], reason=f"{HOSTILE} took 90% of the time", run_dir=f"candidates/{HOSTILE}",
                            configs={HOSTILE: {"name": HOSTILE}})  # fmt: skip
    (tmp_path / "candidates" / HOSTILE).mkdir(parents=True)
    (tmp_path / "candidates" / HOSTILE / "summary.json").write_text("{}")
    result = tune(candidates, ensemble=f"{HOSTILE}$x$", best=2)
    path = render_tune_report(result, tmp_path)
    source, page = open_clean(path)
    text = page.dom["text"]
    assert "<script>" not in source and HOSTILE in page.dom["title"]
    assert f"loadgen tune: {HOSTILE}$x$" in text
    assert f"failed to load: Triton says {HOSTILE}" in text and f"{HOSTILE} took 90% of the time" in text
    assert f"{HOSTILE}: 3 inst no dyn mbs=8" in text  # the settings, per model
    assert page.dom["images"] == 1 and page.dom["loaded_images"] == 1
    # The link to the hostile run folder is URL-quoted: a relative address, not markup or a scheme.
    steps = _Tables(source).tables[1]
    assert steps[3][8] == (f"candidates/{HOSTILE}/summary.json", "candidates/%3Cscript%3Ealert%281%29%3C/script%3E/summary.json")
    assert html.escape(HOSTILE) in source


def test_loadgen_report_re_renders_a_tune_folder(tmp_path, capsys):
    folder = tune_copy(tmp_path)
    (folder / "tune.html").write_text("stale")
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"Report: {folder / 'tune.html'}"
    assert "How the search went" in (folder / "tune.html").read_text()
    assert (folder / "plots" / "tune.png").stat().st_size > 10_000


@pytest.mark.parametrize(("content", "message"), [
    ("{", "is not valid JSON"), ('{"schema_version": 1}', "is not a whole tune.json"),
])  # fmt: skip
def test_loadgen_report_of_a_broken_tune_json_is_one_line(content, message, tmp_path, capsys):
    (tmp_path / "tune.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
