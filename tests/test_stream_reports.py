"""The reports of streamed runs (--streaming), from result objects built here: console, CSV, the
streaming plot, report.html in headless Chromium (its tables and response timelines), compare, and
`loadgen report` over a streamed summary.json."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from browser import open_page
from PIL import Image
from results import client, level, run

from loadgen.cli import main
from loadgen.compare import STREAM_NOISE_NOTE, compare_runs, comparison_lines
from loadgen.histogram import LatencyHistogram
from loadgen.report import plots
from loadgen.report.console import ConsoleReport
from loadgen.report.csv_report import BASE_COLUMNS, STREAM_GOODPUT_COLUMN, write_csv
from loadgen.report.html_report import render_html
from loadgen.report.junit import write_junit
from loadgen.report.plots import render_plots
from loadgen.report.render import load_summary
from loadgen.report.response_timeline import BARS_WIDTH, BARS_X, TICK_WIDTH, row_label
from loadgen.report.waterfall import tick_step_us
from loadgen.result import RunResult
from loadgen.stats import percentile_of_sorted
from loadgen.stream_stats import StreamStats, build_stream_stats

MS = 1_000_000
STREAMING = {"model-name": "stream16", "protocol": "grpc", "streaming": True, "token-output": "OUT"}
REQUESTS = 30
RESPONSES = 16


def stream(ttft_ms: float = 40.0, itl_ms: float = 5.0, *, requests: int = REQUESTS, responses: int = RESPONSES,
           tokens: bool = True, goodput: float | None = None, percentiles=(), duration_s: float = 3.0) -> StreamStats:
    """A level's streamed requests: request i's first response `ttft_ms` + i/10 ms after its start, then one every
    `itl_ms`, but for one stall of three times that (the 8th gap); two tokens a response."""
    offsets = []
    for i in range(requests):
        gaps = [itl_ms * (3 if j == 7 else 1) for j in range(responses - 1)]
        offsets.append(np.round((ttft_ms + i / 10 + np.concatenate([[0.0], np.cumsum(gaps)])) * MS).astype(np.int64))
    ttft = np.array([o[0] for o in offsets], np.int64)
    itl = np.concatenate([np.diff(o) for o in offsets]) if requests and responses > 1 else np.empty(0, np.int64)
    latency = np.array([o[-1] for o in offsets], np.int64)

    def at_us(values):
        return partial(percentile_of_sorted, np.sort(values) / 1e3)

    count = requests * responses
    return build_stream_stats(
        request_count=requests, response_count=count, ttft=LatencyHistogram.of(ttft), ttft_at_us=at_us(ttft),
        itl=LatencyHistogram.of(itl), itl_at_us=at_us(itl), output_tokens=2 * count if tokens else None,
        tokens_per_s=2 * count / duration_s if tokens else None,
        candidates=[(int(lat), tuple(int(t) for t in o)) for lat, o in zip(latency, offsets)],
        latency_us={p: at_us(latency)(p) for p in (50, 90, 99)} if requests else {}, goodput_infer_per_s=goodput,
        percentiles=percentiles,
    )  # fmt: skip


def streamed_level(value: float, figures: StreamStats | None = None, **fields):
    """A level whose requests took 100 ms each (their latency is not what these tests are about)."""
    figures = figures if figures is not None else stream()
    stats = fields.pop("client_stats", None) or client(figures.request_count, 0, 3.0, figures.request_count / 3.0, 100_000.0)
    return level(value, client_stats=stats, streaming=figures, **fields)


def failing():
    """A level's client figures when every request failed."""
    return client(0, 5, 3.0, error_latency_us={"avg": 900.0, "p50": 800.0, "p90": 1500.0, "p99": 2000.0, "max": 2100.0})


def streamed_run(*levels, **options) -> RunResult:
    return run(*(levels or (streamed_level(1), streamed_level(2, stream(60.0, 8.0)))), options={**STREAMING, **options})


def console(result: RunResult) -> str:
    text = io.StringIO()
    report = ConsoleReport(text)
    report.run_started(result.config)
    for each in result.levels:
        report.level_finished(each, result)
    report.run_finished(result)
    return text.getvalue()


# Request i's first response at 40 + i/10 ms: over 30 requests the average is 41.45 ms, and perf_analyzer's
# ranks (round(p/100 * 29)) put p50 at i=15, p90 at 26, p99 at 29. Of the 15 gaps of each request 14 are 5 ms
# and one 15 ms: avg 5.667 ms, p50 and p90 5 ms, p99 (rank 445 of 450) 15 ms.
TTFT_US = {"avg": 41_450, "p50": 41_500, "p90": 42_600, "p99": 42_900}
ITL_US = {"avg": 5_666, "p50": 5_000, "p90": 5_000, "p99": 15_000}


def test_the_stream_figures_are_what_the_tests_expect():
    figures = stream()
    assert {key: int(figures.ttft_us[key]) for key in TTFT_US} == TTFT_US
    assert {key: int(figures.itl_us[key]) for key in ITL_US} == ITL_US


# --- console -------------------------------------------------------------------------------------


def test_console_shows_each_streamed_levels_figures_and_the_closing_table_its_ttft_itl_and_tokens():
    out = console(streamed_run())
    assert "  Streaming: every response timed\n" in out
    assert ("    Time to first response (TTFT): avg 41450 usec, p50 41500 usec, p90 42600 usec, p99 42900 usec\n"
            "    Inter-response latency (ITL): avg 5666 usec, p50 5000 usec, p90 5000 usec, p99 15000 usec\n"
            "    Responses per request: 16 (480 responses)\n"
            "    Output tokens: 960 (320 tokens/sec)\n") in out  # fmt: skip
    assert out.count("    Time to first response (TTFT): ") == 2
    # Under the request latency, before the server block.
    assert out.index("    p99 latency: ") < out.index("    Time to first response") < out.index("  Server: ")
    closing = out[out.index("Inferences/Second vs. Client Average Batch Latency"):]
    assert "Concurrency: 1, throughput: 10 infer/sec, latency 100000 usec, TTFT 41450 usec, ITL 5666 usec, 320 tokens/sec\n" in closing
    assert "Streaming goodput" not in out  # no bound given


def test_console_follows_percentile_and_says_what_was_not_measured():
    one_response = stream(responses=1, tokens=False, percentiles=(95,))
    none = stream(requests=0, tokens=False, percentiles=(95,))
    out = console(streamed_run(streamed_level(1, stream(percentiles=(95,))), streamed_level(2, one_response),
                               streamed_level(3, none, client_stats=failing()), percentile=95))
    assert "    Time to first response (TTFT): avg 41450 usec, p50 41500 usec, p90 42600 usec, p95 42800 usec, p99 42900 usec\n" in out
    assert "    Inter-response latency (ITL): none, no request had two responses\n" in out
    assert "    Responses per request: 1 (30 responses)\n" in out
    assert out.count("    Output tokens: ") == 1  # tokens not counted at the other levels
    assert "    Streaming: no streamed request succeeded\n" in out
    closing = out[out.index("Inferences/Second vs. Client p95 Batch Latency"):].splitlines()
    assert closing[1].endswith(", TTFT 42800 usec, ITL 15000 usec, 320 tokens/sec, error rate 0.00%")  # p95 as the latency
    assert closing[2].endswith(", TTFT 42800 usec, error rate 0.00%")
    assert closing[3].startswith("Concurrency: 3,") and "TTFT" not in closing[3]


def test_console_shows_the_streaming_goodput_and_its_bounds():
    result = streamed_run(streamed_level(1, stream(goodput=8.5)), **{"goodput-latency-ms": 200, "goodput-ttft-ms": 42,
                                                                     "goodput-itl-ms": 20})  # fmt: skip
    out = console(result)
    bounds = "latency within 200 msec, TTFT within 42 msec and ITL within 20 msec"
    assert f"  Streaming goodput: successful requests with {bounds}\n" in out
    assert f"    Streaming goodput: 8.5 infer/sec ({bounds})\n" in out
    assert "goodput: 8.5 infer/sec, latency" in out  # the closing table's goodput is the one the goodput SLA judges


def test_a_classic_run_shows_none_of_it():
    out = console(run(level(1)))
    assert "TTFT" not in out and "Streaming" not in out and "tokens" not in out


# --- CSV -----------------------------------------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    header, *rows = list(csv.reader(path.open()))
    return header, [dict(zip(header, row)) for row in rows]


def test_csv_has_the_streaming_columns_with_units_after_perf_analyzers(tmp_path):
    write_csv(tmp_path / "streamed.csv", streamed_run(sla=["ttft_p99_ms<100"]))
    header, rows = read_csv(tmp_path / "streamed.csv")
    stream_columns = ["TTFT avg (us)", "TTFT p50 (us)", "TTFT p90 (us)", "TTFT p99 (us)", "ITL avg (us)", "ITL p50 (us)",
                      "ITL p90 (us)", "ITL p99 (us)", "Responses/Request", "Output Tokens", "Output Tokens/s"]  # fmt: skip
    assert header == ["Concurrency", *BASE_COLUMNS, "p50 latency", "p90 latency", "p95 latency", "p99 latency",
                      *stream_columns, "SLA"]  # fmt: skip
    assert len(set(header)) == len(header)
    first = rows[0]
    assert {key: first[f"TTFT {key} (us)"] for key in TTFT_US} == {key: str(us) for key, us in TTFT_US.items()}
    assert {key: first[f"ITL {key} (us)"] for key in ITL_US} == {key: str(us) for key, us in ITL_US.items()}
    assert (first["Responses/Request"], first["Output Tokens"], first["Output Tokens/s"]) == ("16", "960", "320")
    assert rows[1]["TTFT p50 (us)"] == "61500" and rows[1]["ITL p50 (us)"] == "8000"

    # The same columns whatever was not measured: empty cells, as an unmeasured goodput's.
    one_response = streamed_level(1, stream(responses=1, tokens=False, percentiles=(95,)))
    none = streamed_level(2, stream(requests=0, percentiles=(95,)))
    write_csv(tmp_path / "sparse.csv", streamed_run(one_response, none, percentile=95))
    header, rows = read_csv(tmp_path / "sparse.csv")
    assert [column for column in header if column.startswith(("TTFT", "ITL"))] == [
        f"{figure} {key} (us)" for figure in ("TTFT", "ITL") for key in ("avg", "p50", "p90", "p95", "p99")]
    assert rows[0]["TTFT p95 (us)"] == "42800" and rows[0]["ITL p95 (us)"] == "" and rows[0]["Output Tokens/s"] == ""
    assert rows[0]["Responses/Request"] == "1"
    assert all(value == "" for key, value in rows[1].items() if key.startswith(("TTFT", "ITL", "Responses", "Output")))


def test_csv_streaming_goodput_column_only_with_a_ttft_or_itl_bound(tmp_path):
    write_csv(tmp_path / "bounded.csv", streamed_run(streamed_level(1, stream(goodput=7.25)), **{"goodput-ttft-ms": 42}))
    header, rows = read_csv(tmp_path / "bounded.csv")
    assert header[-1] == STREAM_GOODPUT_COLUMN and rows[0][STREAM_GOODPUT_COLUMN] == "7.25"
    write_csv(tmp_path / "latency.csv", streamed_run(streamed_level(1, stream(goodput=7.25)), **{"goodput-latency-ms": 100}))
    header, _ = read_csv(tmp_path / "latency.csv")
    assert STREAM_GOODPUT_COLUMN not in header and "Goodput Inferences/Second" in header  # the same figure: once


def test_a_classic_runs_csv_is_byte_identical(tmp_path):
    classic = run(level(1), level(2))
    write_csv(tmp_path / "classic.csv", classic)
    # As perf_analyzer writes it: its own columns only, whatever the levels hold.
    write_csv(tmp_path / "stray.csv", replace(classic, levels=tuple(replace(each, streaming=stream()) for each in classic.levels)))
    assert (tmp_path / "classic.csv").read_bytes() == (tmp_path / "stray.csv").read_bytes()
    assert "TTFT" not in (tmp_path / "classic.csv").read_text()


def test_junit_cases_carry_the_streaming_figures(tmp_path):
    write_junit(tmp_path / "junit.xml", streamed_run(streamed_level(1), streamed_level(2, stream(responses=1, tokens=False))))
    first, second = (case.find("system-out").text for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"))
    assert first.endswith("stable yes; streamed: TTFT p50 41.50 ms, p99 42.90 ms, ITL p50 5.00 ms, p99 15.00 ms, "
                          "16.0 responses/request, 320.0 tokens/s")  # fmt: skip
    assert second.endswith("; streamed: TTFT p50 41.50 ms, p99 42.90 ms, ITL p50 n/a, p99 n/a, 1.0 responses/request")
    write_junit(tmp_path / "classic.xml", run(level(1)))
    assert "streamed" not in (tmp_path / "classic.xml").read_text()


# --- plots ---------------------------------------------------------------------------------------


def test_the_streaming_chart_draws_each_levels_ttft_and_itl_by_percentile(tmp_path):
    result = streamed_run()
    drawn = render_plots(result, tmp_path)
    assert [plot.name for plot in drawn] == ["throughput_latency", "latency_breakdown", "stream_distribution"]
    with Image.open(tmp_path / "stream_distribution.png") as image:
        assert image.format == "PNG" and image.width == 900 and image.height == 800
    figure = plots.stream_distribution(result)
    ttft_axes, itl_axes = figure.axes
    assert [ax.get_title(loc="left") for ax in figure.axes] == ["Time to first response (TTFT)", "Inter-response latency (ITL)"]
    for ax, kind in ((ttft_axes, "ttft"), (itl_axes, "itl")):
        assert [line.get_label() for line in ax.get_lines()] == ["c=1", "c=2"]
        for line, each in zip(ax.get_lines(), result.levels):
            histogram = getattr(each.streaming, f"{kind}_histogram")
            x, y = line.get_data()
            assert x[50] == pytest.approx(2.0) and y[50] == pytest.approx(histogram.percentile(50) / 1e6)  # 1/(1-p): p50 at 2
            assert y[-1] == pytest.approx(histogram.percentile(99.99) / 1e6)  # the tail, p100 left off


def test_the_streaming_chart_without_itl_or_streaming(tmp_path):
    result = streamed_run(streamed_level(1, stream(responses=1)))
    figure = plots.stream_distribution(result)
    assert len(figure.axes[0].get_lines()) == 1 and not figure.axes[1].get_lines()
    assert figure.axes[1].texts[0].get_text() == "not measured: no request had two responses"
    assert plots.stream_distribution(run(level(1))) is None
    render_plots(result, tmp_path)
    render_plots(run(level(1)), tmp_path)  # re-rendered from a classic run: no stale chart left
    assert not (tmp_path / "stream_distribution.png").exists()


# --- report.html ---------------------------------------------------------------------------------


def render_and_open(result: RunResult, folder: Path, with_plots: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.html"
    render_html(result, render_plots(result, folder / "plots") if with_plots else [], path)
    page = open_page(path)
    assert not page.errors, page.errors
    assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
    return path.read_text(), page


def test_report_html_shows_each_streamed_level_and_a_timeline_of_its_example_requests(tmp_path):
    result = streamed_run(**{"goodput-ttft-ms": 42})
    result = replace(result, levels=tuple(replace(each, streaming=replace(each.streaming, goodput_infer_per_s=value))
                                          for each, value in zip(result.levels, (6.5, 0.0))))  # fmt: skip
    source, page = render_and_open(result, tmp_path)
    dom, text = page.dom, page.dom["text"]
    assert dom["headings"][:3] == ["Levels", "Streaming", "Plots"]
    assert dom["images"] == 3 and dom["loaded_images"] == 3  # the streaming chart among the plots
    assert "Streaming: time to first response and inter-response latency" in text
    assert dom["scripts"] == 0 and "<script>" not in source
    # The table: every figure of each level, in ms.
    assert ("Level\tRequests\tResponses/request\tTTFT avg (ms)\tTTFT p50 (ms)\tTTFT p90 (ms)\tTTFT p99 (ms)\tITL avg (ms)\t"
            "ITL p50 (ms)\tITL p90 (ms)\tITL p99 (ms)\tOutput tokens\tOutput tokens/s\tGoodput, TTFT ≤ 42 ms (infer/s)") in text
    assert "Concurrency 1\t30\t16.00\t41.45\t41.50\t42.60\t42.90\t5.67\t5.00\t5.00\t15.00\t960\t320.0\t6.5" in text
    assert "Concurrency 2\t30\t16.00\t61.45\t61.50\t62.60\t62.90\t9.07\t8.00\t8.00\t24.00\t960\t320.0\t0.0" in text

    # A timeline per level: a row per example request, fastest first; a tick per response, then the final one.
    assert len(dom["svgs"]) == 2
    for svg, each in zip(dom["svgs"], result.levels):
        examples = sorted(each.streaming.examples, key=lambda request: request.latency_us)
        assert len(examples) == 4  # nearest p50, p90, p99 (the slowest too), and the first
        assert svg["rows"] == [row_label(request) for request in examples]
        assert svg["rows"][0] == f"16 responses in {125.0 if each.value == 1 else 196.0} ms"  # its first request's
        assert svg["texts"][0].startswith(f"TTFT p50 {each.streaming.ttft_us['p50'] / 1e3:,.2f} ms, ITL p50 ")
        step_us = tick_step_us(examples[-1].latency_us)
        axis_us = np.ceil(examples[-1].latency_us / step_us) * step_us
        ticks = [tick for request in examples for tick in (*request.response_offsets_us, request.latency_us)]
        assert len(svg["bars"]) == len(ticks) == 4 * (RESPONSES + 1)
        for bar, tick_us in zip(svg["bars"], ticks):
            assert bar["x"] + TICK_WIDTH / 2 == pytest.approx(BARS_X + tick_us / axis_us * BARS_WIDTH, abs=0.01)
        first = examples[0]
        assert svg["bars"][0]["title"] == f"response 1: {first.response_offsets_us[0] / 1e3:,.3f} ms (first response)"
        stall_ms = 15 if each.value == 1 else 24  # the 8th gap, three times the others
        assert svg["bars"][8]["title"] == f"response 9: {first.response_offsets_us[8] / 1e3:,.3f} ms ({stall_ms}.000 ms after the one before)"
        assert svg["bars"][RESPONSES]["title"] == f"final response: {first.latency_us / 1e3:,.3f} ms"
        assert svg["width"] > 500


def test_report_html_of_levels_without_itl_tokens_or_successes(tmp_path):
    one_response = streamed_level(1, stream(responses=1, tokens=False))
    none = streamed_level(2, stream(requests=0, tokens=False), client_stats=failing())
    _, page = render_and_open(streamed_run(one_response, none), tmp_path)
    text = page.dom["text"]
    assert "Concurrency 1\t30\t1.00\t41.45\t41.50\t42.60\t42.90\t—\t—\t—\t—\t—\t—" in text
    assert "Concurrency 2\t0\t0.00\t—\t—\t—\t—\t—\t—\t—\t—\t—\t—" in text
    assert "No request succeeded." in text
    (svg,) = page.dom["svgs"]
    assert len(svg["bars"]) == 4 * 2  # each example's one response, and its final at the same time
    assert [bar["x"] for bar in svg["bars"][:2]] == [svg["bars"][0]["x"]] * 2


def test_a_classic_report_has_no_streaming_section(tmp_path):
    source, page = render_and_open(run(level(1)), tmp_path, with_plots=False)
    assert "Streaming" not in page.dom["headings"] and "<svg" not in source


# --- compare -------------------------------------------------------------------------------------


def test_compare_judges_ttft_and_itl_against_their_histograms_and_tokens_by_the_limit():
    base = streamed_run(streamed_level(1, stream(40.0, 5.0)))
    slower = streamed_run(streamed_level(1, replace(stream(52.0, 5.0), tokens_per_s=300.0)))  # TTFT +30%, tokens/s -6%
    comparison = compare_runs(base, slower, 5.0)
    deltas = {delta.figure: delta for delta in comparison.levels[0].deltas}
    assert list(deltas)[6:] == ["avg TTFT", "p50 TTFT", "p90 TTFT", "p99 TTFT", "avg ITL", "p50 ITL", "p90 ITL", "p99 ITL",
                                "tokens/s"]  # fmt: skip
    ttft = deltas["p50 TTFT"]
    assert ttft.tested and 2 <= ttft.df <= 4 and ttft.regression  # the reported windows' degrees of freedom, as latency's
    assert ttft.change_pct == pytest.approx((53.5 - 41.5) / 41.5 * 100)
    assert not deltas["p50 ITL"].beyond_limit and deltas["p50 ITL"].tested
    tokens = deltas["tokens/s"]
    assert tokens.higher_is_better and not tokens.tested and tokens.regression and tokens.change_pct == pytest.approx(-6.25)
    assert {figure for _, delta in comparison.regressions for figure in [delta.figure]} == {
        "avg TTFT", "p50 TTFT", "p90 TTFT", "p99 TTFT", "tokens/s"}
    assert comparison.notes == (STREAM_NOISE_NOTE,)
    lines = comparison_lines(comparison)
    row = next(line for line in lines if " p50 TTFT " in line)
    assert row.split()[:7] == ["Concurrency", "1", "p50", "TTFT", "41.50", "ms", "53.50"] and row.endswith("REGRESSION")
    assert next(line for line in lines if "tokens/s" in line and "Concurrency" in line).split()[3:7] == [
        "320.0", "tokens/s", "300.0", "tokens/s"]
    assert f"Note: {STREAM_NOISE_NOTE}." in lines
    assert compare_runs(base, base, 5.0).regressions == []


def test_compare_of_a_streamed_and_a_classic_run_compares_what_both_have():
    streamed = streamed_run(streamed_level(1))
    classic = run(*(replace(each, streaming=None) for each in streamed.levels))
    for base, cand, which in ((streamed, classic, "baseline"), (classic, streamed, "candidate")):
        comparison = compare_runs(base, cand, 5.0)
        assert [delta.figure for delta in comparison.levels[0].deltas] == [
            "throughput", "avg latency", "p50 latency", "p90 latency", "p95 latency", "p99 latency"]
        assert comparison.notes == (f"TTFT, ITL, tokens/s: not compared: only the {which} run streamed (--streaming)",)


def test_compare_leaves_out_what_one_streamed_run_did_not_measure():
    base = streamed_run(streamed_level(1))
    cand = streamed_run(streamed_level(1, stream(responses=1, tokens=False)))
    comparison = compare_runs(base, cand, 5.0)
    figures = [delta.figure for delta in comparison.levels[0].deltas]
    assert "p50 TTFT" in figures and not any("ITL" in figure for figure in figures) and "tokens/s" not in figures
    assert comparison.notes == (
        STREAM_NOISE_NOTE,
        "ITL: not compared at some levels, where the candidate had no request with two responses",
        "tokens/s: not compared at some levels, where the candidate counted no tokens",
    )


# --- a streamed summary.json, re-rendered ----------------------------------------------------------


def test_a_streamed_summary_re_renders_every_report(tmp_path, capsys):
    result = streamed_run(**{"goodput-itl-ms": 20})
    result = replace(result, levels=tuple(replace(each, streaming=replace(each.streaming, goodput_infer_per_s=9.0))
                                          for each in result.levels))  # fmt: skip
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(result.to_dict()))
    read = load_summary(folder)
    assert read.to_dict() == result.to_dict()
    assert console(read) == console(result)
    write_csv(tmp_path / "original.csv", result)
    write_csv(tmp_path / "read.csv", read)
    assert (tmp_path / "read.csv").read_bytes() == (tmp_path / "original.csv").read_bytes()

    assert main(["report", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == f"Report: {folder / 'report.html'}"
    assert (folder / "plots" / "stream_distribution.png").exists()
    page = open_page(folder / "report.html")
    assert not page.errors and page.dom["headings"][:3] == ["Levels", "Streaming", "Plots"]
    assert "Concurrency 1\t30\t16.00\t41.45\t41.50\t42.60\t42.90\t5.67\t5.00\t5.00\t15.00\t960\t320.0\t9.0" in page.dom["text"]
    assert len(page.dom["svgs"]) == 2 and len(page.dom["svgs"][0]["bars"]) == 4 * (RESPONSES + 1)


SUMMARIES = Path(__file__).resolve().parent / "data" / "summaries"


@pytest.mark.parametrize("folder", sorted(path.parent for path in SUMMARIES.glob("v*/*/summary.json")
                                           if int(path.parent.parent.name[1:]) < 11),
                         ids=lambda folder: str(folder.relative_to(SUMMARIES)))  # fmt: skip
def test_older_summaries_render_the_console_and_csv_without_streaming(folder, tmp_path):
    """Summaries from before streaming (version 11) read back without a streaming figure."""
    result = load_summary(folder)
    out = console(result)
    assert "TTFT" not in out and "Streaming" not in out
    write_csv(tmp_path / "results.csv", result)
    assert "TTFT" not in (tmp_path / "results.csv").read_text()


# --- a real streamed run ---------------------------------------------------------------------------


def test_a_real_streamed_run_reports_ttft_itl_and_a_timeline_everywhere(decoupled_triton, tmp_path, capsys):
    """stream16 answers 16 responses, the first 40 ms after the request, then one every 5 ms: its figures in
    every report, and its report folder re-rendered and compared with itself."""
    report = tmp_path / "report"
    args = ["run", "-u", decoupled_triton.grpc, "-i", "grpc", "-m", "stream16", "--streaming", "--shape", "IN:3",
            "--concurrency-range", "2", "-p", "1000", "-r", "4", "-s", "50", "--report-dir", str(report),
            "-f", str(tmp_path / "results.csv")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "  Streaming: every response timed\n" in out
    assert "    Responses per request: 16 (" in out and "    Inter-response latency (ITL): avg " in out
    _, rows = read_csv(tmp_path / "results.csv")
    (row,) = rows
    # Loose bounds: the machine is shared, and a late thread only ever makes the figures longer.
    assert 40_000 <= int(row["TTFT p50 (us)"]) < 80_000 and 5_000 <= int(row["ITL p50 (us)"]) < 15_000
    assert row["Responses/Request"] == "16"
    assert float(row["Output Tokens/s"]) == pytest.approx(3 * 16 * float(row["Inferences/Second"]), rel=0.05)  # IN:3

    assert main(["report", str(report)]) == 0
    capsys.readouterr()
    page = open_page(report / "report.html")
    assert not page.errors and "Streaming" in page.dom["headings"]
    assert page.dom["images"] == page.dom["loaded_images"] == 4  # with the streaming chart
    (svg,) = page.dom["svgs"]
    assert svg["rows"] and all(row.startswith("16 responses in ") for row in svg["rows"])
    assert len(svg["bars"]) == 17 * len(svg["rows"])

    assert main(["compare", str(report), str(report)]) == 0
    compared = capsys.readouterr().out
    assert "p99 TTFT" in compared and "p50 ITL" in compared and "tokens/s" in compared
    assert compared.splitlines()[-1] == "Result: no regression beyond 5%"
