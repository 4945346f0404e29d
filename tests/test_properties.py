"""Properties of the parsers that take user input: ranges, config files and SLA expressions answer
any input with a value or a UsageError, never another exception, and what they parse round-trips."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from results import client, level

from loadgen.config import MAX_LEVELS, Range, RunConfig, parse_range, prepare
from loadgen.options import BY_NAME as OPTIONS
from loadgen.options import build_config, load_config_file
from loadgen.errors import UsageError
from loadgen.measurement import LevelResult
from loadgen.sla import (
    FIXED_METRICS,
    MODEL_FIELDS,
    OPERATORS,
    Sla,
    describe,
    evaluate,
    parse_sla,
)

PROPERTY = settings(max_examples=200, deadline=None)


# -- ranges ---------------------------------------------------------------------------------------


def _check_values(r: Range) -> None:
    values = r.values()
    assert values is not None and 1 <= len(values) <= MAX_LEVELS
    assert values[0] == r.start
    assert all(r.start <= v <= r.end for v in values)
    off = 4 * math.ulp(r.end)  # how far a decimal level may sit from its exact value
    gaps = [b - a for a, b in zip(values, values[1:])]
    assert all(gap == pytest.approx(r.step, rel=1e-9, abs=off) for gap in gaps[:-1])  # the last may be cut at the end
    assert all(0 < gap <= r.step + off for gap in gaps)
    assert values[-1] + r.step > r.end - off  # no level left out


@st.composite
def whole_ranges(draw) -> str:
    start = draw(st.integers(1, 10**6))
    step = draw(st.integers(1, 1000))
    end = start + draw(st.integers(0, 200)) * step + draw(st.integers(0, step - 1))
    return draw(st.sampled_from([f"{start}", f"{start}:{start + end % 200}", f"{start}:{end}:{step}", f"{start}:0:{step}"]))


@st.composite
def rate_ranges(draw) -> str:
    finite = {"allow_nan": False, "allow_infinity": False}
    start = draw(st.floats(1e-3, 1e6, **finite))
    step = draw(st.floats(1e-3, 1e4, **finite))
    levels = draw(st.integers(0, 200))
    end = start + levels * step
    return draw(st.sampled_from([repr(start), f"{start!r}:{start + levels!r}", f"{start!r}:{end!r}:{step!r}", f"{start}:{end}:{step}"]))


@PROPERTY
@given(whole_ranges())
def test_whole_ranges_round_trip_and_step_through(text):
    r = parse_range(text, "--concurrency-range")
    assert parse_range(str(r), "--concurrency-range") == r
    if r.end == 0:
        assert r.values() is None
    else:
        _check_values(r)
        assert r.values() == list(range(r.start, r.end + 1, r.step))


@PROPERTY
@given(rate_ranges())
def test_rate_ranges_round_trip_and_step_through(text):
    r = parse_range(text, "--request-rate-range", whole=False)
    assert parse_range(str(r), "--request-rate-range", whole=False) == r
    _check_values(r)


numberish = st.one_of(
    st.integers(-10, 10**6).map(str),
    st.floats().map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e3", "0x10", "1_000", "١", "1.5", "-0"]),
    st.text(max_size=4),
)


@PROPERTY
@given(st.one_of(st.text(), st.lists(numberish, max_size=5).map(":".join)), st.booleans())
def test_any_range_text_parses_or_is_a_usage_error(text, whole):
    try:
        r = parse_range(text, "--flag", whole=whole)
    except UsageError as exc:
        assert str(exc).startswith("--flag ") and "\n" not in str(exc)
        return
    assert r.start >= 1 if whole else r.start > 0
    assert r.step >= 1 if whole else r.step > 0
    if r.end != 0:
        _check_values(r)


@PROPERTY
@given(st.integers(1, 100), st.integers(0, 100), st.sampled_from(["{b}:{a}", "{a}:{b}:0", "{a}:{b}:-{a}", "0:{b}",
                                                                    "-{a}", "{a}:{b}:1:1", "{a}:x", "{a};{b}"]))
def test_invalid_ranges_are_usage_errors(a, b, form):
    text = form.format(a=a, b=a + b + 1)
    with pytest.raises(UsageError, match="^--concurrency-range "):
        parse_range(text, "--concurrency-range")


# -- config files ---------------------------------------------------------------------------------

# The --ssl-* keys read certificate files as they are validated: left to tests/test_tls.py.
KEYS = sorted(key for key in OPTIONS if not key.startswith("ssl-"))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12),
    st.sampled_from(["1:4", "1:4:1", "10", "0", "-1", "p99_ms<50", "5%", "localhost:8000", "A: b", "IN:1,2", "http", "grpc",
                     "poisson", "count_windows", "\x00", "centernet-ensemble"]),
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                      max_leaves=6)


def _load(mapping_or_text) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scenario.yaml"
        text = mapping_or_text if isinstance(mapping_or_text, str) else yaml.safe_dump(mapping_or_text, allow_unicode=True)
        path.write_text(text)
        return load_config_file(path)


@PROPERTY
@given(st.dictionaries(st.sampled_from(KEYS).flatmap(lambda k: st.sampled_from([k, k.replace("-", "_")])), values, max_size=6))
def test_known_keys_with_any_values_build_or_are_usage_errors(mapping):
    try:
        config = prepare(build_config(_load(mapping)))  # building reads no file; prepare reads them
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(config, RunConfig)


@PROPERTY
@given(st.text(min_size=1, max_size=30).filter(lambda k: k.replace("_", "-") not in OPTIONS), scalars)
def test_unknown_keys_are_usage_errors(key, value):
    with pytest.raises(UsageError, match="unknown key"):
        _load({key: value})


@PROPERTY
@given(st.sampled_from([k for k in OPTIONS if len(k) > 6]), st.data())
def test_a_mistyped_key_gets_a_suggestion(key, data):
    i = data.draw(st.integers(0, len(key) - 1))
    typo = key[:i] + key[i + 1 :]
    if typo.replace("_", "-") in OPTIONS:
        return
    with pytest.raises(UsageError, match=r"did you mean [a-z-]+\?"):
        _load({typo: 1})


@PROPERTY
@given(st.integers(1, 60), st.integers(0, 59), st.integers(0, 59))
def test_an_unquoted_range_stays_a_range(start, end, step):
    # YAML 1.1 would read 1:4 as the base-60 number 64
    text = f"{start}:{end:02d}" + (f":{step:02d}" if step else "")
    assert _load(f"concurrency-range: {text}\n") == {"concurrency-range": text}


# -- SLA expressions ------------------------------------------------------------------------------

name = st.text(st.characters(blacklist_characters="<>=!", blacklist_categories=("Zs", "Cc")), min_size=1, max_size=10)
metrics = st.one_of(
    st.sampled_from(sorted(FIXED_METRICS)),
    st.integers(0, 100).map(lambda p: f"p{p}_ms"),
    st.sampled_from(["p99.9_ms", "p99.99_ms", "p0.5_ms"]),
    st.tuples(name, st.sampled_from(sorted(MODEL_FIELDS))).map(lambda m: f"{m[0]}.{m[1]}_ms"),
)
numbers = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(-1e12, 1e12, allow_nan=False).map(lambda x: f"{x:.6g}".replace("inf", "1")),
    st.sampled_from(["0.01", ".5", "1e3", "1E-3", "+5", "-0", "50."]),
)
spaces = st.sampled_from(["", " ", "  ", "\t"])


@PROPERTY
@given(st.text(max_size=40))
def test_any_sla_text_parses_or_is_a_usage_error(text):
    try:
        sla = parse_sla(text)
    except UsageError as exc:
        assert str(exc).startswith("--sla ") and "\n" not in str(exc)
        return
    assert parse_sla(sla.expression) == sla


@PROPERTY
@given(metrics, st.sampled_from(sorted(OPERATORS)), numbers, spaces, spaces, spaces)
def test_well_formed_slas_parse_and_round_trip(metric, op, number, s1, s2, s3):
    sla = parse_sla(f"{s1}{metric}{s2}{op}{s3}{number}")
    assert sla == Sla(f"{metric}{op}{number}", metric, op, float(number))
    assert parse_sla(sla.expression) == sla


def _level(request_count: int, error_count: int, avg_us: float, p99_us: float, throughput: float) -> LevelResult:
    return level(1, client_stats=client(request_count, error_count, 3.0, throughput, avg_us, {99: p99_us}, curve=[]))


figure = st.floats(0, 1e7, allow_nan=False)


@PROPERTY
@given(st.sampled_from(["avg_ms", "p99_ms", "throughput", "error_rate"]), st.sampled_from(sorted(OPERATORS)),
       st.floats(-1e4, 1e4, allow_nan=False), st.integers(0, 3), st.integers(0, 3), figure, figure, figure)
def test_a_verdict_is_the_comparison(metric, op, threshold, request_count, error_count, avg_us, p99_us, throughput):
    sla = parse_sla(f"{metric}{op}{threshold!r}")
    level = _level(request_count, error_count, avg_us, p99_us, throughput)
    (verdict,) = evaluate([sla], level)
    error_rate = error_count / (request_count + error_count) if request_count + error_count else None
    expected = {"avg_ms": avg_us / 1000, "p99_ms": p99_us / 1000, "throughput": throughput, "error_rate": error_rate}[metric]
    # No latency without a success, no rate without a request: a gate does not pass on missing data.
    if (request_count == 0 and metric in ("avg_ms", "p99_ms")) or expected is None:
        assert verdict.value is None and not verdict.passed and verdict.reason.startswith("not measured")
    else:
        assert verdict.value == expected
        assert verdict.passed == OPERATORS[op](expected, sla.threshold)
        assert bool(verdict.reason) != verdict.passed
    assert describe(verdict).startswith(f"{sla.expression}: {'PASS' if verdict.passed else 'FAIL'} (")
