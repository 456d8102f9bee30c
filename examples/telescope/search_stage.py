"""The search stage of the simulated telescope, in Python, after the Rust beamformer.

Reads data-block IDs (one per line, as `beamformer` prints them) from stdin and searches each
block for candidates: every candidate is a helixobs entity whose parent is the block the Rust
stage created — provenance across languages and processes, resolved by the herald.

    beamformer --endpoint localhost:4317 | python search_stage.py --endpoint localhost:4317
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import zlib

from helixobs import setup

log = logging.getLogger("telescope.search")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoint", default="localhost:4317", help="OTLP/gRPC endpoint")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    args = parser.parse_args(argv)
    tel = setup(
        "telescope.search",
        instrument_id="TELESCOPE",
        endpoint=args.endpoint,
        process_name="TELESCOPE/realtime/search",
        otlp=True,
    )
    rng = random.Random(args.seed)
    try:
        for line in sys.stdin:
            block_id = line.strip()
            if not block_id:
                continue
            # One or two candidates per block; IDs derived from the block, stable across runs.
            for n in range(1 + zlib.crc32(block_id.encode()) % 2):
                cand_id = f"cand-{block_id.removeprefix('blk-')}-{n}"
                with tel.create("search", id=cand_id, parents=[block_id]) as cand:
                    snr = round(rng.lognormvariate(2.1, 0.4), 2)
                    cand.set_attribute("snr", snr)
                    cand.set_attribute("dm", round(rng.uniform(5, 2000), 2))
                    log.info("candidate %s from %s snr=%.1f", cand_id, block_id, snr)
    finally:
        tel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
