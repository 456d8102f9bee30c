"""The telescope's Rust beamformer stage feeding the Python search stage, against a real herald:
candidates created by Python have the blocks created by Rust as parents in /lineage.

The beamformer binary comes from BEAMFORMER_BIN, else target/debug/beamformer (built by
`cargo build --workspace`, which scripts/test.sh runs first), else it is built here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from herald_process import REPO, Herald

SEARCH_STAGE = REPO / "examples" / "telescope" / "search_stage.py"


def beamformer_binary() -> str:
    path = os.environ.get("BEAMFORMER_BIN")
    if path:
        return path
    built = REPO / "target" / "debug" / "beamformer"
    if not built.exists():
        cargo = shutil.which("cargo")
        assert cargo is not None, "no beamformer binary and no cargo to build it"
        proc = subprocess.run(
            [cargo, "build", "-p", "telescope-beamformer"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr[-8000:]
    return str(built)


def test_python_candidates_descend_from_rust_blocks(herald: Herald) -> None:
    rust = subprocess.Popen(
        [
            beamformer_binary(),
            "--endpoint",
            herald.otlp_endpoint,
            "--beams",
            "2",
            "--blocks",
            "3",
            "--run",
            "interop",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    search = subprocess.run(
        [sys.executable, str(SEARCH_STAGE), "--endpoint", herald.otlp_endpoint],
        stdin=rust.stdout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rust.stdout is not None
    rust.stdout.close()
    assert rust.wait(timeout=120) == 0, (rust.stderr.read() if rust.stderr else b"")[-4000:]
    assert search.returncode == 0, search.stderr[-4000:]

    blocks = [f"blk-interop-b{beam}-{seq:06d}" for seq in range(1, 4) for beam in range(2)]
    candidates = herald.entities(instrument="TELESCOPE", stage="search")
    assert len(candidates) >= len(blocks)
    seen_blocks = set()
    for cand in candidates:
        up = herald.lineage(cand["id"], "ancestors")
        nodes = {n["id"]: n for n in up["nodes"]}
        (parent_id,) = cand["parent_ids"]
        assert parent_id in blocks
        assert {(e["source"], e["target"]) for e in up["edges"]} == {(parent_id, cand["id"])}
        parent = nodes[parent_id]
        assert parent["depth"] == 1 and parent["stage"] == "beamform"
        seen_blocks.add(parent_id)
    assert seen_blocks == set(blocks)

    block = herald.entity(blocks[0])["entity"]
    assert block["service_name"] == "telescope.beamformer"
    assert block["process_name"] == "TELESCOPE/realtime/beamformer"
    assert block["metadata"]["n_channels"] == "16384"
    assert block["placeholder"] is False
    cand = herald.entity(candidates[0]["id"])["entity"]
    assert cand["service_name"] == "telescope.search"
    # Each side's log lines carry its own entities.
    (line,) = herald.logs(blocks[0])
    assert line["body"] == f"formed block {blocks[0]}"
    assert line["attributes"]["helix_entity_id"] == blocks[0]
    assert any(r["attributes"]["helix_entity_id"] == cand["id"] for r in herald.logs(cand["id"]))
