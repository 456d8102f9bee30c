"""Simulated radio-telescope pipeline emitting helixobs telemetry from several processes.

Per-beam search processes turn data blocks into candidates; a clustering process turns
candidates of *other* processes into events (cross-process provenance) and classifies
them; an operations process archives, converts and replicates events, sometimes before
the event itself exists. Only the public helixobs API is used.

    python telescope.py --endpoint localhost:4317 --beams 4 --rate 1 --duration 60
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import queue
import random
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from helixobs import Instrument, setup

INSTRUMENT = "TELESCOPE"
# Dispersion measures of the "sky": a few repeating sources plus random noise.
SOURCES = [56.8, 349.2, 557.4, 1210.0]
CLUSTER_WINDOW_S = 0.5
OPS_DELAY_S = 0.3
STOP = "__stop__"  # queue sentinel (compared by value: it crosses processes)

log = logging.getLogger("telescope")


@dataclass(frozen=True)
class Candidate:
    id: str
    beam: int
    block: str
    snr: float
    dm: float
    at: float


@dataclass(frozen=True)
class Options:
    endpoint: str
    rate: float
    run: str
    json_logs: bool
    seed: int


def _telemetry(service: str, process_name: str, opts: Options) -> Instrument:
    # Ctrl-C is handled by the parent, which then asks every worker to drain and stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return setup(
        service,
        instrument_id=INSTRUMENT,
        endpoint=opts.endpoint,
        process_name=process_name,
        otlp=not opts.json_logs,
    )


# --- per-beam search ---------------------------------------------------------------------
def beam_worker(beam: int, opts: Options, candidates: Any, stop: Any) -> None:
    tel = _telemetry(f"telescope.search.beam{beam}", f"{INSTRUMENT}/search/beam-{beam}", opts)
    rng = random.Random(opts.seed * 1000 + beam)
    seq = 0
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            seq += 1
            block_id = f"blk-{opts.run}-b{beam}-{seq:06d}"
            found = search_block(tel, rng, beam, block_id, opts.run)
            for cand in found:
                candidates.put(cand)
            next_at += 1.0 / opts.rate
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        candidates.put(STOP)
        tel.shutdown()


def search_block(
    tel: Instrument, rng: random.Random, beam: int, block_id: str, run: str
) -> list[Candidate]:
    found: list[Candidate] = []
    with tel.create("ingest", id=block_id) as block:
        block.set_attribute("beam", beam)
        block.set_attribute("freq_min_mhz", 400.0)
        block.set_attribute("freq_max_mhz", 800.0)
        block.set_attribute("n_channels", 16384)
        log.info("ingested block %s", block_id)
        with tel.child_span(
            "rfi-mask", attributes={"masked_fraction": round(rng.random() * 0.2, 3)}
        ):
            pass
        with tel.child_span("dedisperse", attributes={"n_trials": 1024}):
            time.sleep(rng.uniform(0.001, 0.005))
        if rng.random() < 0.02:
            block.add_error({"message": "packet_loss", "stage": "ingest", "lost_packets": 128})
            log.warning("block %s lost packets", block_id)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        cand_id = f"cand-{run}-{uuid.uuid4().hex[:10]}"
        if rng.random() < 0.7:
            dm = rng.choice(SOURCES) * rng.uniform(0.98, 1.02)
        else:
            dm = rng.uniform(5, 2000)
        snr = round(rng.lognormvariate(2.1, 0.4), 2)
        with tel.create("search", id=cand_id, parents=[block_id]) as cand:
            cand.set_attribute("snr", snr)
            cand.set_attribute("dm", round(dm, 2))
            cand.set_attribute("beam", beam)
            if snr < 6.0:
                cand.error({"message": "snr_below_threshold", "snr": snr})
                log.info("candidate %s rejected (snr %.1f)", cand_id, snr)
                continue
            log.info("candidate %s snr=%.1f dm=%.1f", cand_id, snr, dm)
        found.append(Candidate(cand_id, beam, block_id, snr, dm, time.time()))
    return found


# --- clustering and classification (a separate process) --------------------------------
def cluster_worker(n_beams: int, opts: Options, candidates: Any, ops: Any) -> None:
    tel = _telemetry("telescope.cluster", f"{INSTRUMENT}/realtime/cluster", opts)
    rng = random.Random(opts.seed * 1000 + 999)
    pending: list[Candidate] = []
    finished_beams = 0
    seq = 0
    window_end = time.monotonic() + CLUSTER_WINDOW_S
    try:
        while finished_beams < n_beams:
            try:
                item = candidates.get(timeout=max(0.01, window_end - time.monotonic()))
            except queue.Empty:
                item = None
            else:
                if item == STOP:
                    finished_beams += 1
                else:
                    pending.append(item)
            if time.monotonic() >= window_end or finished_beams == n_beams:
                for group in group_by_dm(pending):
                    seq += 1
                    make_event(tel, rng, f"evt-{opts.run}-{seq:05d}", group, ops)
                pending.clear()
                window_end = time.monotonic() + CLUSTER_WINDOW_S
    finally:
        ops.put(STOP)
        tel.shutdown()


def group_by_dm(cands: list[Candidate]) -> list[list[Candidate]]:
    groups: list[list[Candidate]] = []
    for cand in sorted(cands, key=lambda c: c.dm):
        if groups and abs(groups[-1][-1].dm - cand.dm) < 0.03 * cand.dm:
            groups[-1].append(cand)
        else:
            groups.append([cand])
    return groups


def make_event(
    tel: Instrument, rng: random.Random, event_id: str, group: list[Candidate], ops: Any
) -> None:
    # Announce first: operations may then reach the herald before the event exists.
    ops.put(("allocate", event_id))
    beams = sorted({c.beam for c in group})
    with tel.create("cluster", id=event_id, parents=[c.id for c in group]) as event:
        event.set_attribute("n_candidates", len(group))
        event.set_attribute("beams", beams)
        event.set_attribute("dm", round(sum(c.dm for c in group) / len(group), 2))
        event.set_attribute("max_snr", max(c.snr for c in group))
        with tel.child_span("classify", attributes={"model": "frb-cnn-v3"}):
            time.sleep(rng.uniform(0.002, 0.01))
            label, confidence = classify(group, rng)
        if label == "RFI":
            event.add_event(
                "helix.event.rfi_flagged", {"n_beams": len(beams), "algorithm": "multibeam"}
            )
        event.add_event("helix.event.classified", {"label": label, "confidence": confidence})
        log.info(
            "event %s from %d candidates classified %s (%.2f)",
            event_id,
            len(group),
            label,
            confidence,
        )
    if label != "RFI":
        ops.put(("process", event_id))


def classify(group: list[Candidate], rng: random.Random) -> tuple[str, float]:
    n_beams = len({c.beam for c in group})
    if n_beams >= 3:
        return "RFI", round(rng.uniform(0.8, 0.99), 2)
    dm = sum(c.dm for c in group) / len(group)
    if any(abs(dm - s) < 0.03 * s for s in SOURCES[:2]):
        return "known-pulsar", round(rng.uniform(0.9, 0.999), 3)
    if max(c.snr for c in group) > 10:
        return "FRB", round(rng.uniform(0.6, 0.99), 2)
    return "noise", round(rng.uniform(0.5, 0.9), 2)


# --- operations on events ----------------------------------------------------------------
class TransientError(Exception):
    pass


def ops_worker(opts: Options, ops: Any) -> None:
    tel = _telemetry("telescope.ops", f"{INSTRUMENT}/offline/ops", opts)
    rng = random.Random(opts.seed * 1000 + 777)
    due: list[tuple[float, str]] = []
    archived: list[str] = []
    done = False
    try:
        while not done or due:
            try:
                item = ops.get(timeout=0.05)
            except queue.Empty:
                item = None
            if item == STOP:
                done = True
            elif item is not None:
                kind, event_id = item
                if kind == "allocate":
                    allocate(tel, event_id)
                else:
                    due.append((time.monotonic() + (0 if done else OPS_DELAY_S), event_id))
            now = time.monotonic()
            for entry in [d for d in due if d[0] <= now or done]:
                due.remove(entry)
                if process_event(tel, rng, entry[1]):
                    archived.append(entry[1])
            if rng.random() < 0.05 or (done and not due):
                cleanup(tel, rng, archived)
    finally:
        tel.shutdown()


def allocate(tel: Instrument, event_id: str) -> None:
    with tel.operate("allocate-storage", entity_id=event_id) as op:
        op.set_attribute("volume", "/data/fast")
        log.info("reserved storage for %s", event_id)


def process_event(tel: Instrument, rng: random.Random, event_id: str) -> bool:
    path = f"/data/events/{event_id}.msgpack"
    with tel.operate("archive", entity_id=event_id) as op:
        if rng.random() < 0.05:
            op.error({"message": "nfs_timeout", "path": path})
            log.error("archive of %s failed: NFS timeout", event_id)
            return False
        op.set_attribute("path", path)
        op.set_attribute("size_mb", round(rng.uniform(5, 80), 1))
        log.info("archived %s", event_id)
    try:
        with tel.operate("convert", entity_id=event_id) as op:
            op.set_attribute("format", "hdf5")
            if rng.random() < 0.04:
                raise ValueError(f"corrupt header in {path}")
            log.info("converted %s to HDF5", event_id)
    except ValueError:
        log.exception("conversion of %s failed", event_id)
    with tel.operate("replicate", entity_id=event_id) as op:
        op.set_attribute("site", rng.choice(["site-b", "site-c"]))
        for attempt in range(1, 4):
            if rng.random() < 0.15:
                op.add_error({"message": "transfer_reset", "attempt": attempt})
                log.warning("replication of %s failed, attempt %d", event_id, attempt)
                continue
            op.set_attribute("attempts", attempt)
            log.info("replicated %s", event_id)
            break
        else:
            op.error({"message": "replication_gave_up"})
    return True


def cleanup(tel: Instrument, rng: random.Random, archived: list[str]) -> None:
    # The entity is discovered inside the operation: deferred entity ID.
    with tel.operate("stage-deletion") as op:
        if not archived or rng.random() < 0.3:
            log.info("nothing to stage for deletion")
            return
        event_id = archived.pop(0)
        op.set_entity_id(event_id)
        op.add_event("helix.event.deletion-staged", {"num_replicas": 2})
        log.info("staged %s for deletion", event_id)


# --- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="localhost:4317", help="OTLP/gRPC endpoint")
    parser.add_argument("--beams", type=int, default=4, help="number of beam processes")
    parser.add_argument("--rate", type=float, default=1.0, help="blocks per second per beam")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds (default: until Ctrl-C)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--json-logs", action="store_true", help="print JSON logs instead of OTLP")
    args = parser.parse_args(argv)
    if args.beams < 1 or args.rate <= 0:
        parser.error("--beams must be >= 1 and --rate > 0")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
    opts = Options(
        endpoint=args.endpoint,
        rate=args.rate,
        run=uuid.uuid4().hex[:6],
        json_logs=args.json_logs,
        seed=args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big"),
    )
    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited exporter state
    stop = ctx.Event()
    candidates = ctx.Queue()
    ops = ctx.Queue()
    procs = [
        ctx.Process(target=beam_worker, args=(b, opts, candidates, stop), name=f"beam-{b}")
        for b in range(args.beams)
    ]
    procs.append(
        ctx.Process(target=cluster_worker, args=(args.beams, opts, candidates, ops), name="cluster")
    )
    procs.append(ctx.Process(target=ops_worker, args=(opts, ops), name="ops"))
    for p in procs:
        p.start()
    print(f"telescope run {opts.run}: {args.beams} beams -> {args.endpoint}", file=sys.stderr)
    try:
        if args.duration is None:
            while all(p.is_alive() for p in procs):
                time.sleep(0.5)
        else:
            time.sleep(args.duration)
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr)
    stop.set()
    code = 0
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
            p.join()
            code = 1
        elif p.exitcode != 0:
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
