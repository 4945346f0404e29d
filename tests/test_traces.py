"""loadgen.traces on trace files recorded from the bundled Triton (tests/data/traces) and on
synthetic records: trees, stage times, files read while written, malformed input."""

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.traces import STAGES, ModelTrace, RequestTrace, TraceCollector, TraceReader, split_records

TRACES = Path(__file__).parent / "data" / "traces"


def read_all(directory: Path) -> tuple[list[RequestTrace], TraceReader]:
    reader = TraceReader(directory / "trace.json")
    traces = reader.poll() + reader.finish()
    return traces, reader


def raw_stamps(directory: Path) -> dict[int, dict]:
    """Trace id -> {"header": ..., name: ns}, read with json alone (an independent reading)."""
    found: dict[int, dict] = {}
    for path in sorted(directory.glob("trace.json*")):
        for record in json.loads(path.read_text()):
            entry = found.setdefault(record["id"], {})
            if "model_name" in record:
                entry["header"] = record
            for stamp in record.get("timestamps", ()):
                entry.setdefault(stamp["name"], stamp["ns"])
    return found


def by_id(traces: list[RequestTrace]) -> dict[str, RequestTrace]:
    return {trace.request_id: trace for trace in traces}


def shape(node: ModelTrace) -> tuple:
    return (node.model, tuple(shape(child) for child in node.children))


@pytest.mark.parametrize("directory", ["centernet", "nested", "nested-grpc", "stalling", "error"])
def test_every_request_of_a_capture_has_one_complete_tree(directory):
    traces, reader = read_all(TRACES / directory)
    client_ids = set(json.loads((TRACES / directory / "client.json").read_text()))
    ids = [trace.request_id for trace in traces]
    # Every request the client sent, plus the capture's first request, which had no id.
    assert sorted(ids) == sorted([*client_ids, ""])
    assert (reader.counts.malformed, reader.counts.incomplete, reader.counts.orphans) == (0, 0, 0)
    raw = raw_stamps(TRACES / directory)
    assert sum(1 for trace in traces for _ in trace.root.walk()) == len(raw)


def test_ensemble_steps_are_in_order_with_parent_and_request_id():
    traces, _ = read_all(TRACES / "centernet")
    steps = ("image-preprocess", "centernet", "centernet-postprocess")
    for trace in traces:
        assert shape(trace.root) == ("centernet-ensemble", tuple((step, ()) for step in steps))
    raw = raw_stamps(TRACES / "centernet")
    request = by_id(traces)["req-3"]
    for child in request.root.children:
        header = raw[child.trace_id]["header"]
        assert (header["parent_id"], header["request_id"]) == (request.root.trace_id, "req-3")


def test_nested_ensembles_make_nested_trees():
    for directory in ("nested", "nested-grpc"):
        traces, _ = read_all(TRACES / directory)
        for trace in traces:
            assert shape(trace.root) == ("nested-outer", (("nested-inner", (("add-one", ()),)), ("times-two", ())))
            outer, inner, add_one, times_two = trace.root.walk()
            assert outer.is_ensemble and inner.is_ensemble and not add_one.is_ensemble and not times_two.is_ensemble
            assert outer.scheduling_ns is not None and inner.scheduling_ns is not None
            assert add_one.scheduling_ns is None and outer.stage_ns("queue") is None


def test_stage_times_are_the_differences_of_tritons_timestamps():
    raw = raw_stamps(TRACES / "stalling")
    traces, _ = read_all(TRACES / "stalling")
    checked = 0
    for trace in traces:
        for node in trace.root.walk():
            stamps = raw[node.trace_id]
            assert node.total_ns == stamps["REQUEST_END"] - stamps["REQUEST_START"]
            if node.is_ensemble:
                continue
            for part, (start, end) in STAGES.items():
                assert node.stage_ns(part) == stamps[end] - stamps[start]
            # The four stages lie inside the model's total.
            assert sum(node.stage_ns(part) for part in STAGES) <= node.total_ns
            checked += 1
    assert checked == 3 * len(traces)


def test_the_stalled_requests_show_in_the_middle_step():
    traces = by_id(read_all(TRACES / "stalling")[0])
    middle = {request_id: trace.root.children[1] for request_id, trace in traces.items()}
    assert {node.model for node in middle.values()} == {"middle"}
    # Its 10th and 20th executions (the capture's first request was the 1st) slept 50 ms; sent
    # two at a time, req-18 waited in middle's queue for req-19's stall.
    stalled = {request_id for request_id, node in middle.items() if node.stage_ns("compute_infer") > 45_000_000}
    queued = {request_id for request_id, node in middle.items() if node.stage_ns("queue") > 45_000_000}
    assert (stalled, queued) == ({"req-8", "req-19"}, {"req-18"})


def test_scheduling_is_the_ensemble_time_outside_the_union_of_its_steps():
    for directory in ("centernet", "nested", "stalling"):
        for trace in read_all(TRACES / directory)[0]:
            for node in trace.root.walk():
                if not node.is_ensemble:
                    continue
                start, end = node.timestamps_ns["REQUEST_START"], node.timestamps_ns["REQUEST_END"]
                covered = set()
                # Independently: the steps' spans in 1 µs cells (the stamps are ns; cells make the union trivial).
                for child in node.children:
                    first = max(start, child.timestamps_ns["REQUEST_START"]) // 1000
                    last = min(end, child.timestamps_ns["REQUEST_END"]) // 1000
                    covered.update(range(first, last))
                assert 0 <= node.scheduling_ns <= node.total_ns
                assert node.scheduling_ns / 1000 == pytest.approx(node.total_ns / 1000 - len(covered), abs=len(node.children) + 1)


def stamps_of(**times) -> dict[str, int]:
    return {name.upper(): ns for name, ns in times.items()}


def test_scheduling_counts_overlapping_steps_once_and_clips_them_to_the_ensemble():
    steps = (
        ModelTrace(2, "a", "1", stamps_of(request_start=100, request_end=400, compute_start=150)),
        ModelTrace(3, "b", "1", stamps_of(request_start=300, request_end=600, compute_start=350)),  # overlaps a
        ModelTrace(4, "c", "1", stamps_of(request_start=900, request_end=1200, compute_start=950)),  # past the end
        ModelTrace(5, "d", "1", stamps_of(request_start=700)),  # no end: covers nothing
    )
    ensemble = ModelTrace(1, "e", "1", stamps_of(request_start=0, request_end=1000), steps)
    # Covered: 100..600 and 900..1000.
    assert ensemble.scheduling_ns == 1000 - 500 - 100


def test_grpc_server_time_runs_from_the_read_to_the_send_end():
    raw = raw_stamps(TRACES / "nested-grpc")
    for trace in read_all(TRACES / "nested-grpc")[0]:
        stamps = raw[trace.root.trace_id]
        assert "GRPC_WAITREAD_START" in stamps  # before the request came: not the start
        assert trace.server_ns == stamps["GRPC_SEND_END"] - stamps["GRPC_WAITREAD_END"]


def test_http_server_time_runs_from_the_receive_to_the_send_end():
    raw = raw_stamps(TRACES / "centernet")
    for trace in read_all(TRACES / "centernet")[0]:
        stamps = raw[trace.root.trace_id]
        assert trace.server_ns == stamps["HTTP_SEND_END"] - stamps["HTTP_RECV_START"]


def test_a_file_left_cut_by_triton_keeps_the_complete_trees_and_counts_the_rest():
    # Recorded from a server that exited on its exit timeout: PATH ends mid-record, unflushed.
    traces, reader = read_all(TRACES / "exit-timeout")
    assert [trace.request_id for trace in traces] == [""]
    assert reader.counts.malformed == 1  # the cut record
    assert reader.counts.orphans == 4  # req-0's three steps and its top-level timestamps, without its header


def test_a_cut_at_any_byte_is_read_later_and_nothing_is_lost():
    text = (TRACES / "nested" / "trace.json").read_text()
    whole = split_records(text)
    assert whole.closed and whole.malformed == 0
    for cut in range(len(text)):
        first = split_records(text[:cut])
        assert first.malformed == 0
        assert first.records == whole.records[: len(first.records)]
        rest = split_records(text[first.consumed:])
        assert first.records + rest.records == whole.records, cut


def test_a_file_read_while_it_grows_gives_each_tree_once(tmp_path):
    source = TRACES / "stalling"
    expected = {trace.request_id: trace for trace in read_all(source)[0]}
    path = tmp_path / "trace.json"
    reader = TraceReader(path)
    assert reader.poll() == []  # no file yet
    got = []
    data = (source / "trace.json").read_bytes()
    for start in range(0, len(data), 997):  # a prime: cuts fall everywhere in the records
        with open(path, "ab") as file:
            file.write(data[start : start + 997])
        got += reader.poll()
    for index in range(10):
        shutil.copy(source / f"trace.json.{index}", tmp_path / f"trace.json.{index}")
        got += reader.poll()
    got += reader.finish()
    assert sorted(trace.request_id for trace in got) == sorted(expected)
    assert by_id(got) == expected
    assert reader.counts.malformed == 0


def test_a_multibyte_character_cut_between_reads(tmp_path):
    record = '[{"id":1,"model_name":"m","model_version":1,"request_id":"réq-é"},' \
             '{"id":1,"timestamps":[{"name":"REQUEST_START","ns":1},{"name":"REQUEST_END","ns":5}]}]'
    data = record.encode()
    cut = data.index("é".encode()) + 1  # inside the two bytes of é
    path = tmp_path / "trace.json"
    path.write_bytes(data[:cut])
    reader = TraceReader(path)
    assert reader.poll() == []
    path.write_bytes(data)
    [trace] = reader.poll()
    assert trace.request_id == "réq-é" and trace.root.total_ns == 4


def test_a_tree_waits_for_its_last_timestamps():
    collector = TraceCollector()
    collector.add([
        {"id": 2, "model_name": "step", "model_version": 1, "request_id": "r", "parent_id": 1},
        {"id": 2, "timestamps": [{"name": "REQUEST_START", "ns": 10}]},
        {"id": 1, "model_name": "ens", "model_version": 1, "request_id": "r"},
        {"id": 1, "timestamps": [{"name": "HTTP_RECV_START", "ns": 1}, {"name": "REQUEST_START", "ns": 5},
                                 {"name": "REQUEST_END", "ns": 50}]},
    ])
    assert collector.take_complete() == []  # the step has not ended
    collector.add([{"id": 2, "timestamps": [{"name": "REQUEST_END", "ns": 40}]}])
    assert collector.take_complete() == []  # the response is not sent yet
    collector.add([{"id": 1, "timestamps": [{"name": "HTTP_SEND_END", "ns": 60}]}])
    [trace] = collector.take_complete()
    assert (trace.request_id, trace.server_ns, shape(trace.root)) == ("r", 59, ("ens", (("step", ()),)))
    assert collector.take_all() == []


def test_what_never_completes_is_counted_at_the_end():
    collector = TraceCollector()
    collector.add([
        {"id": 1, "model_name": "ens", "model_version": 1, "request_id": "r"},
        {"id": 1, "timestamps": [{"name": "REQUEST_START", "ns": 5}]},
        {"id": 7, "model_name": "step", "model_version": 1, "request_id": "s", "parent_id": 6},
        {"id": 9, "timestamps": [{"name": "REQUEST_START", "ns": 5}]},
    ])
    assert collector.take_all() == []
    counts = collector.counts
    assert (counts.records, counts.incomplete, counts.orphans, counts.malformed) == (4, 1, 2, 0)


MALFORMED = [
    "not an object", 3, None, [], {"model_name": "m"}, {"id": "1"}, {"id": -1}, {"id": True},
    {"id": 1.5}, {"id": 1, "model_name": 3}, {"id": 1, "model_name": "m", "request_id": 4},
    {"id": 1, "model_name": "m", "parent_id": "1"}, {"id": 1, "model_name": "m", "model_version": [1]},
    {"id": 1, "timestamps": {}}, {"id": 1, "timestamps": [3]}, {"id": 1, "timestamps": [{"name": "X"}]},
    {"id": 1, "timestamps": [{"name": "X", "ns": "12"}]}, {"id": 1, "timestamps": [{"name": 1, "ns": 12}]},
    {"id": 1, "timestamps": [{"name": "X", "ns": float("nan")}]},
]


@pytest.mark.parametrize("record", MALFORMED, ids=repr)
def test_a_malformed_record_is_skipped_and_counted(record):
    collector = TraceCollector()
    good = [{"id": 1, "model_name": "m", "model_version": 1, "request_id": "r"},
            {"id": 1, "timestamps": [{"name": "REQUEST_START", "ns": 1}, {"name": "REQUEST_END", "ns": 3}]}]
    collector.add([good[0], record, good[1]])
    [trace] = collector.take_all()
    assert trace.root.total_ns == 2 and collector.counts.malformed == 1


def test_a_second_header_that_differs_is_malformed_and_the_first_kept():
    collector = TraceCollector()
    collector.add([{"id": 1, "model_name": "m", "request_id": "r"}, {"id": 1, "model_name": "m", "request_id": "r"},
                   {"id": 1, "model_name": "other", "request_id": "x"},
                   {"id": 1, "timestamps": [{"name": "REQUEST_END", "ns": 3}]}])
    [trace] = collector.take_complete()
    assert (trace.root.model, trace.request_id, collector.counts.malformed) == ("m", "r", 1)


def test_garbage_between_records_is_skipped_and_the_next_record_read():
    text = '[{"id":1,"model_name":"m"},  garbage {"a": 1}, {"id":1,"timestamps":[{"name":"REQUEST_END","ns":3}]}'
    chunk = split_records(text)
    assert chunk.records == [{"id": 1, "model_name": "m"}, {"id": 1, "timestamps": [{"name": "REQUEST_END", "ns": 3}]}]
    assert (chunk.malformed, chunk.consumed, chunk.closed) == (1, len(text), False)


def test_a_trailing_fragment_waits_unless_the_file_is_finished():
    text = '[{"id":1,"model_name":"m"},{"id":1,"timestamps":[{"name":"REQUEST_END","ns":3}'
    waiting = split_records(text)
    assert (len(waiting.records), waiting.malformed, text[waiting.consumed:]) == (1, 0, text[27:])
    finished = split_records(text, final=True)
    assert (len(finished.records), finished.malformed, finished.consumed) == (1, 1, len(text))


def test_only_path_and_its_numbered_files_are_read(tmp_path):
    shutil.copy(TRACES / "error" / "trace.json", tmp_path / "trace.json.7")
    shutil.copy(TRACES / "nested" / "trace.json", tmp_path / "trace.json.bak")
    shutil.copy(TRACES / "nested" / "trace.json", tmp_path / "other.json")
    assert len(TraceReader(tmp_path / "trace.json").finish()) == 2


def test_a_deep_chain_of_traces_needs_no_recursion():
    depth = 5000
    records = [{"id": 1, "model_name": "m0", "request_id": "r"}]
    records += [{"id": n, "model_name": f"m{n}", "parent_id": n - 1} for n in range(2, depth + 1)]
    records += [{"id": n, "timestamps": [{"name": "REQUEST_START", "ns": n}, {"name": "REQUEST_END", "ns": 3 * depth - n}]}
                for n in range(1, depth + 1)]
    collector = TraceCollector()
    collector.add(records)
    [trace] = collector.take_complete()
    nodes = list(trace.root.walk())
    assert len(nodes) == depth and all(node.is_ensemble for node in nodes[:-1])
    assert nodes[0].scheduling_ns == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**64) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "model_name", "model_version", "request_id", "parent_id", "timestamps", "name", "ns"]),
        children, max_size=5),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=12))
def test_any_json_values_are_read_or_counted_never_raised(records):
    collector = TraceCollector()
    collector.add(records)
    collector.take_complete()
    collector.take_all()
    counts = collector.counts
    assert counts.records == len(records) and counts.malformed <= len(records)


REAL = (TRACES / "nested" / "trace.json").read_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(REAL)), st.integers(0, 40), st.binary(max_size=6)), max_size=5),
       final=st.booleans())
def test_a_damaged_real_file_is_read_without_raising(tmp_path, edits, final):
    data = bytearray(REAL)
    for position, deleted, inserted in edits:
        data[position : position + deleted] = inserted
    path = tmp_path / "trace.json"
    path.write_bytes(bytes(data))
    reader = TraceReader(path)
    traces = reader.finish() if final else reader.poll()
    for trace in traces:
        for node in trace.root.walk():
            assert all(value is None or value >= 0 for value in (node.total_ns, node.scheduling_ns, *map(node.stage_ns, STAGES)))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('[]{},:" \nid0123456789namestRQUEND_-\\x'), max_size=200), st.booleans())
def test_any_text_is_split_without_raising(text, final):
    chunk = split_records(text, final)
    assert 0 <= chunk.consumed <= len(text)
    if final:
        assert chunk.consumed == len(text)
