"""The PROV and OpenLineage exports of a real herald, read by the libraries made for them.

A small telescope DAG (a raw block with a hostile ID and hostile metadata, two beams, a
candidate derived from both — a diamond —, a failed classification, an operation) is sent by
the helixobs Python client (OpenTelemetry SDK, OTLP/gRPC). Then:

- `/prov` parses with `prov` (`ProvDocument.deserialize(format="json")`) and its derivations,
  usages, generations and associations equal the edges of `/lineage` and the operations;
- `?format=provn` parses with `prov`'s strict PROV-N parser into the same document;
- `/openlineage` events are accepted by `openlineage-python`'s models and carry what the
  spec requires;
- `/impact` counts equal a reference computed from `/lineage`, and its CSV reads back;
- bounds and bad parameters are refused with a 400 naming the parameter.

Prints one line per check and a closing `N passed, N failed`.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import helixobs
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from prov.model import ProvDocument

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from herald_process import HERALD, start_herald  # noqa: E402
NS = "https://obs.example.org/prov/"

RAW = 'raw/blk "1" <script>alert(1)</script> \\ é_-.%2F'
HOSTILE_META = {"note": '"]); drop table x; -- \n\u0001 <b>', "k": "v\\"}
BEAM_A, BEAM_B = "beam-A", 'beam-B "=cmd()"; x'
CAND = "cand%2F42 'x'"
CLASS = "class:frb"


def get(api: str, path: str, **params: str) -> tuple[int, bytes, str]:
    url = f"http://{api}{path}" + (("?" + urllib.parse.urlencode(params)) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def entity_path(entity_id: str, tail: str = "") -> str:
    return "/api/v1/entity/" + urllib.parse.quote(entity_id, safe="") + tail


def get_json(api: str, path: str, **params: str) -> Any:
    status, body, _ = get(api, path, **params)
    assert status == 200, (status, body[:500])
    return json.loads(body)


def send_dag(otlp_grpc: str) -> None:
    tel = helixobs.setup("telescope", instrument_id="CHIME", endpoint=otlp_grpc, insecure=True,
                         process_name="CHIME/beamformer")
    with tel.create("raw", id=RAW) as token:
        for k, v in HOSTILE_META.items():
            token.set_attribute(k, v)
    for beam in (BEAM_A, BEAM_B):
        with tel.create("beam", id=beam, parents=[RAW]):
            pass
    with tel.operate("calibrate", entity_id=BEAM_A) as op:
        op.set_attribute("gain", "1.5")
    with tel.create("candidate", id=CAND, parents=[BEAM_A, BEAM_B]):
        pass
    try:
        with tel.create("classify", id=CLASS, parents=[CAND]):
            raise ValueError("model crashed")
    except ValueError:
        pass
    assert tel.flush(), "spans not flushed"
    tel.shutdown()


def wait_for(api: str, entity_id: str) -> None:
    deadline = time.monotonic() + 30
    while get(api, entity_path(entity_id))[0] != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"{entity_id!r} never stored")
        time.sleep(0.1)


def local(raw: str) -> str:
    """The herald's documented local-name rule: ASCII letters and digits kept, every other byte %XX."""
    return "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else f"%{b:02X}" for b in raw.encode())


def ent_iri(entity_id: str) -> str:
    return f"{NS}entity/{local(entity_id)}"


def act_iri(trace_id: str, span_id: str) -> str:
    return f"{NS}activity/{trace_id}_{span_id}"


def attr(record: Any, name: str) -> Any:
    values = [v for k, v in record.attributes if str(k) == name]
    assert len(values) == 1, (name, record.attributes)
    return values[0]


def rel_pairs(doc: ProvDocument, cls_name: str, a: str, b: str) -> set[tuple[str, ...]]:
    out = set()
    for r in doc.get_records():
        if type(r).__name__ == cls_name:
            attrs = {str(k): v for k, v in r.attributes}
            out.add((attrs[a].uri, attrs[b].uri))
    return out


def expected(api: str, root: str, directions: list[str]) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """Entities (by ID, from GET /entity) and edges (child IRI, parent IRI) from /lineage."""
    entities: dict[str, Any] = {}
    for direction in directions:
        lineage = get_json(api, entity_path(root, "/lineage"), direction=direction)
        for node in lineage["nodes"]:
            entities[node["id"]] = get_json(api, entity_path(node["id"]))
    edges = set()
    for eid, view in entities.items():
        for p in view["entity"]["parent_ids"]:
            if p in entities and p != eid:
                edges.add((ent_iri(eid), ent_iri(p)))
    return entities, edges


def check_prov(api: str, root: str, directions: list[str], param: str) -> ProvDocument:
    entities, edges = expected(api, root, directions)
    status, body, ctype = get(api, entity_path(root, "/prov"), direction=param)
    assert status == 200 and ctype.startswith("application/json"), (status, ctype, body[:300])
    doc = ProvDocument.deserialize(content=body.decode(), format="json")
    prov_entities = {r.identifier.uri: r for r in doc.get_records() if type(r).__name__ == "ProvEntity"}
    assert set(prov_entities) == {ent_iri(e) for e in entities}, (set(prov_entities), list(entities))
    for eid, view in entities.items():
        rec = prov_entities[ent_iri(eid)]
        assert attr(rec, "prov:label") == eid
        assert attr(rec, "helix:stage") == view["entity"]["stage"]
        assert attr(rec, "helix:timestamp_ns") == view["entity"]["timestamp_ns"]
        meta = view["entity"]["metadata"]
        if meta:
            assert json.loads(attr(rec, "helix:metadata")) == meta
    # The lineage's edges, as derivations and as usages by the child's creation.
    assert rel_pairs(doc, "ProvDerivation", "prov:generatedEntity", "prov:usedEntity") == edges
    creations = {ent_iri(e): act_iri(v["entity"]["trace_id"], v["entity"]["span_id"]) for e, v in entities.items()}
    ops = {(act_iri(o["trace_id"], o["span_id"]), ent_iri(eid))
           for eid, v in entities.items() for o in v["operations"]}
    used = rel_pairs(doc, "ProvUsage", "prov:activity", "prov:entity")
    assert used == {(creations[c], p) for c, p in edges} | ops, used
    generated = rel_pairs(doc, "ProvGeneration", "prov:entity", "prov:activity")
    assert generated == set(creations.items()), generated
    activities = {r.identifier.uri: r for r in doc.get_records() if type(r).__name__ == "ProvActivity"}
    assert set(activities) == set(creations.values()) | {a for a, _ in ops}
    for eid, v in entities.items():
        act = activities[creations[ent_iri(eid)]]
        assert attr(act, "helix:start_ns") == v["entity"]["timestamp_ns"]
        assert attr(act, "helix:end_ns") == v["entity"]["end_ns"]
        assert act.get_startTime() is not None and act.get_endTime() is not None
    associated = rel_pairs(doc, "ProvAssociation", "prov:activity", "prov:agent")
    for a in activities:
        assert (a, f"{NS}agent/instrument_CHIME") in associated, a
    for c in creations.values():
        assert (c, f"{NS}agent/process_{local('CHIME/beamformer')}") in associated, c
    return doc


def test_prov_json_ancestors_equal_the_lineage(api: str) -> None:
    doc = check_prov(api, CLASS, ["ancestors"], "ancestors")
    # The diamond: the candidate derives from both beams, each from the raw block.
    assert len(rel_pairs(doc, "ProvDerivation", "prov:generatedEntity", "prov:usedEntity")) == 5


def test_prov_json_descendants_and_both(api: str) -> None:
    check_prov(api, RAW, ["descendants"], "descendants")
    check_prov(api, BEAM_A, ["ancestors", "descendants"], "both")


def test_prov_n_parses_strictly_into_the_same_document(api: str) -> None:
    status, body, ctype = get(api, entity_path(CLASS, "/prov"), format="provn")
    assert status == 200 and ctype.startswith("text/provenance-notation"), (status, ctype)
    text = body.decode()
    from_n = ProvDocument.deserialize(content=text, format="provn", profile="strict")
    from_json = ProvDocument.deserialize(content=get(api, entity_path(CLASS, "/prov"))[1].decode(), format="json")
    assert from_n == from_json, (from_n.get_provn(), from_json.get_provn())
    # The hostile metadata came through as one inert string.
    raw = next(r for r in from_n.get_records() if str(r.identifier) == f"ent:{local(RAW)}")
    assert json.loads(attr(raw, "helix:metadata"))["k"] == "v\\"
    assert "<script>" not in text.split("prov:label=")[0]


def test_openlineage_events_validate_and_match_the_lineage(api: str) -> None:
    entities, _ = expected(api, CLASS, ["ancestors"])
    events = get_json(api, entity_path(CLASS, "/openlineage"))
    assert len(events) == 2 * len(entities), len(events)
    runs: dict[str, list[str]] = {}
    for ev in events:
        for required in ("eventTime", "producer", "schemaURL", "run", "job"):
            assert required in ev, required
        model = RunEvent(
            eventType=RunState(ev["eventType"]), eventTime=ev["eventTime"],
            run=Run(runId=ev["run"]["runId"]),
            job=Job(namespace=ev["job"]["namespace"], name=ev["job"]["name"]),
            inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in ev["inputs"]],
            outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in ev["outputs"]],
            producer=ev["producer"],
        )
        assert model.schemaURL == ev["schemaURL"], (model.schemaURL, ev["schemaURL"])
        (out,) = ev["outputs"]
        view = entities[out["name"]]["entity"]
        assert out["namespace"] == NS
        assert [d["name"] for d in ev["inputs"]] == view["parent_ids"]
        assert ev["job"] == {"namespace": "CHIME", "name": view["stage"], "facets": {}}
        runs.setdefault(ev["run"]["runId"], []).append(ev["eventType"])
    # One run per creation: START, then COMPLETE or, for the failed classification, FAIL.
    assert len(runs) == len(entities)
    assert sorted(map(tuple, runs.values())) == sorted([("START", "COMPLETE")] * (len(entities) - 1) + [("START", "FAIL")])
    # Same span, same run ID: stable across requests.
    again = get_json(api, entity_path(CLASS, "/openlineage"))
    assert [e["run"]["runId"] for e in again] == [e["run"]["runId"] for e in events]


def test_bounds_and_bad_parameters_are_refused(api: str) -> None:
    def refused(path: str, param: str, **params: str) -> str:
        status, body, _ = get(api, path, **params)
        assert status == 400, (status, body)
        message = json.loads(body)["error"]
        assert f"`{param}`" in message, message
        return message

    message = refused(entity_path(RAW, "/prov"), "limit", direction="descendants", limit="2")
    assert "smaller `depth`" in message, message
    refused(entity_path(RAW, "/openlineage"), "limit", direction="descendants", limit="2")
    refused(entity_path(RAW, "/prov"), "depth", depth="0")
    refused(entity_path(RAW, "/prov"), "limit", limit="10001")
    refused(entity_path(RAW, "/prov"), "format", format="xml")
    refused(entity_path(RAW, "/openlineage"), "direction", direction="sideways")
    refused(entity_path(RAW, "/openlineage"), "format", format="provn")
    # depth bounds the walk: one level down from the raw block is the two beams.
    doc = ProvDocument.deserialize(content=get(api, entity_path(RAW, "/prov"), direction="descendants", depth="1")[1].decode(), format="json")
    assert {r.identifier.uri for r in doc.get_records() if type(r).__name__ == "ProvEntity"} == {ent_iri(RAW), ent_iri(BEAM_A), ent_iri(BEAM_B)}
    for path in ("/prov", "/openlineage"):
        status, body, _ = get(api, entity_path("no-such-entity", path))
        assert status == 404 and b"no-such-entity" in body, (status, body)


def test_impact_counts_equal_a_reference_from_lineage(api: str) -> None:
    import csv
    from collections import Counter

    lineage = get_json(api, entity_path(RAW, "/lineage"), direction="descendants")
    reference = [n for n in lineage["nodes"] if n["id"] != RAW]
    assert len(reference) == 4  # two beams, the candidate once (a diamond), the classification
    impact = get_json(api, entity_path(RAW, "/impact"))
    assert impact["root"] == RAW and impact["total"] == len(reference)
    assert impact["by_stage"] == dict(Counter(n["stage"] for n in reference))
    assert impact["by_status"] == dict(Counter(n["status"] for n in reference)) == {"ok": 3, "error": 1}
    assert impact["by_instrument"] == {"CHIME": 4}
    assert impact["oldest_ns"] == min(n["timestamp_ns"] for n in reference)
    assert impact["newest_ns"] == max(n["timestamp_ns"] for n in reference)
    # Pages of the list partition it; the counts are the whole radius on every page.
    ids, cursor = [], None
    while True:
        page = get_json(api, entity_path(RAW, "/impact"), limit="3", **({"cursor": cursor} if cursor else {}))
        assert page["total"] == 4
        ids += [n["id"] for n in page["entities"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids == [n["id"] for n in reference]
    shallow = get_json(api, entity_path(RAW, "/impact"), depth="1")
    assert shallow["total"] == 2 and shallow["by_stage"] == {"beam": 2}
    status, body, ctype = get(api, entity_path(RAW, "/impact"), format="csv")
    assert status == 200 and ctype.startswith("text/csv"), (status, ctype)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [r["id"] for r in rows] == [n["id"] for n in reference]
    assert [r["status"] for r in rows] == [n["status"] for n in reference]
    # BEAM_B's ID holds quotes (a parent ID cannot hold a comma, docs/wire.md): one quoted CSV field, read back exactly.
    assert BEAM_B in [r["id"] for r in rows]
    rows_cand = list(csv.DictReader(io.StringIO(get(api, entity_path(CAND, "/impact"), format="csv")[1].decode())))
    assert [r["id"] for r in rows_cand] == [CLASS]
    leaf = get_json(api, entity_path(CLASS, "/impact"))
    assert leaf["total"] == 0 and leaf["entities"] == [] and leaf["oldest_ns"] is None
    for params, param in (({"format": "xml"}, "format"), ({"format": "csv", "limit": "5"}, "format"), ({"depth": "0"}, "depth")):
        status, body, _ = get(api, entity_path(RAW, "/impact"), **params)
        assert status == 400 and f"`{param}`" in json.loads(body)["error"], (params, status, body)
    assert get(api, entity_path("no-such-entity", "/impact"))[0] == 404


def test_a_bad_namespace_stops_the_herald_with_the_reason() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([HERALD, "--prov-namespace", "not an iri", "--db-url", f"sqlite://{tmp}/h.db"],
                                capture_output=True, timeout=60, cwd=tmp)
        assert result.returncode != 0
        assert b"prov-namespace" in result.stderr and b"absolute IRI" in result.stderr, result.stderr


def main() -> int:
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        proc, ready = start_herald(Path(tmp), {"HELIX_PROV_NAMESPACE": NS})
        try:
            send_dag(ready["otlp_grpc"])
            for eid in (RAW, BEAM_A, BEAM_B, CAND, CLASS):
                wait_for(ready["api"], eid)
            checks: list[tuple[str, Callable[[], None]]] = [
                (name, (lambda f=f: f(ready["api"])))
                for name, f in globals().items()
                if name.startswith("test_") and f.__code__.co_argcount == 1
            ]
            checks.append(("test_a_bad_namespace_stops_the_herald_with_the_reason",
                           test_a_bad_namespace_stops_the_herald_with_the_reason))
            for name, check in checks:
                try:
                    check()
                    passed += 1
                    print(f"PASS {name}")
                except Exception:  # noqa: BLE001 - every failure is reported, then counted
                    failed += 1
                    print(f"FAIL {name}")
                    traceback.print_exc(file=sys.stdout)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
