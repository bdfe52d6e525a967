"""Run every benchmark, print a table and write the results as JSON.

    python -m benchmarks.run [--out runs/bench.json] [--quick] [--n-peer 100] [--skip-peers]

The JSON file is rewritten after every section, so an interrupted run keeps
what it measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import common, peers, process, report, stages

logger = logging.getLogger(__name__)

SECTIONS = ("stages", "e2e", "scaling", "clip", "startup", "peers")
SIZES = ((640, 480), (1280, 720), (1920, 1080))
THREADS = (1, 2)
VIN_COUNTS = (0, 1, 2, 4)
PSM_CANDIDATES = (11, 6, 3)


@dataclass(frozen=True)
class Plan:
    """How many images and passes each section uses."""

    stage_frames: int = 20
    warmup: int = 1
    repeat: int = 3
    e2e_frames: int = 15
    e2e_repeat: int = 2
    publish_repeat: int = 200
    startup_repeat: int = 5
    cold_repeat: int = 3
    clip_vehicles: tuple[int, ...] = (4, 16)
    n_peer: int = 100
    tune_psm: int = 10


QUICK = Plan(
    stage_frames=3,
    repeat=1,
    e2e_frames=3,
    e2e_repeat=1,
    publish_repeat=30,
    startup_repeat=2,
    cold_repeat=1,
    clip_vehicles=(1, 2),
    n_peer=6,
    tune_psm=0,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench.json"), help="JSON results file")
    p.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    p.add_argument("--n-peer", type=int, help="images for the peer comparison (default 100)")
    p.add_argument("--skip-peers", action="store_true", help="no RapidOCR / Tesseract")
    p.add_argument("--models-dir", type=Path, help="models to load (default: the shipped ones)")
    p.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}"
    )
    p.add_argument("--psm", type=int, help="Tesseract page segmentation mode (skips tuning)")
    p.add_argument(
        "--tune-psm",
        type=int,
        help=f"pick the Tesseract psm among {PSM_CANDIDATES} on this many images "
        "of a separate seed (default 10; 0 with --quick: psm 11)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


class Runner:
    """Runs sections, records failures instead of stopping, saves after each section."""

    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args, self.plan = args, plan
        self.models_dir: Path | None = args.models_dir
        self.t0 = time.perf_counter()
        self.res: dict[str, Any] = {
            "meta": {
                "command": "python -m benchmarks.run " + shlex.join(sys.argv[1:]),
                "quick": args.quick,
                "plan": plan.__dict__,
                "jpeg_quality": common.JPEG_QUALITY,
                "seeds": {
                    "peers": common.SEED_PEERS,
                    "stages": common.SEED_STAGES,
                    "sizes": common.SEED_SIZES,
                    "vin_counts": common.SEED_VIN_COUNTS,
                    "clip": common.SEED_CLIP,
                    "psm_tuning": common.SEED_TUNE,
                    "warmup": common.SEED_WARMUP,
                },
            },
            "errors": {},
        }
        self.reader: Any = None
        self.parts: Any = None

    def save(self) -> None:
        self.res["meta"]["duration_s"] = round(time.perf_counter() - self.t0, 1)
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        self.args.out.write_text(json.dumps(self.res, indent=2, default=str) + "\n")

    def section(self, name: str, fn: Callable[[], None]) -> None:
        logger.info("== %s", name)
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # one failing section must not lose the others
            logger.error("section %s failed: %s", name, exc)
            logger.debug("%s", traceback.format_exc())
            self.res["errors"][name] = f"{type(exc).__name__}: {exc}"
        logger.info("   %s took %.1f s", name, time.perf_counter() - t0)
        self.save()

    def need_parts(self) -> stages.Parts:
        if self.parts is None:
            self.parts = stages.load_parts(self.models_dir, 1)
            self.reader = self.parts.reader
            if self.parts.missing:
                self.res["errors"]["reader"] = self.parts.missing
        return self.parts

    def need_reader(self) -> Any:
        parts = self.need_parts()
        if parts.reader is None:
            raise RuntimeError(f"no Reader: {parts.missing}")
        return parts.reader

    # -- sections -----------------------------------------------------------
    def environment(self) -> None:
        self.res["environment"] = common.environment()
        if self.res["environment"]["training_running_at_start"]:
            logger.warning("training is running: every timing will be skewed by its load")
        self.res["models"] = process.model_files(self.models_dir)

    def stages(self) -> None:
        p = self.plan
        frames = common.generate(common.SEED_STAGES, p.stage_frames, 1280, 720)
        out, message = stages.stage_breakdown(self.need_parts(), frames, p.warmup, p.repeat)
        self.res["stages"] = out
        with common.mosquitto_broker() as port:
            self.res["broker"] = {"server": self.res["environment"].get("mosquitto")}
            self.res["publish_paho"] = stages.publish_paho(port, message, 20, p.publish_repeat)
            try:
                self.res["publish_agent"] = stages.publish_agent(
                    port, message, 20, p.publish_repeat
                )
            except Exception as exc:  # the daemon's publisher may not exist in this tree yet
                logger.warning("MqttPublisher not measured: %s", exc)
                self.res["publish_agent"] = {"error": f"{type(exc).__name__}: {exc}"}

    def e2e(self) -> None:
        p = self.plan
        frames = {
            (w, h): common.generate(common.SEED_SIZES + w, p.e2e_frames, w, h) for w, h in SIZES
        }
        out: dict[str, Any] = {}
        for threads in THREADS:
            reader = stages.load_reader(self.models_dir, threads)
            for (w, h), fr in frames.items():
                logger.info("end to end %dx%d, %d thread(s)", w, h, threads)
                out[f"{w}x{h}@{threads}"] = stages.end_to_end(reader, fr, p.warmup, p.e2e_repeat)
            if threads == 1:
                # `vin-agent read` also searches photos turned a quarter (the daemon does not).
                reader.quarter_turn = True
                logger.info("end to end 1280x720, 1 thread, quarter turn")
                out["1280x720@1@quarter turn"] = stages.end_to_end(
                    reader, frames[(1280, 720)], p.warmup, p.e2e_repeat
                )
        self.res["end_to_end"] = out

    def scaling(self) -> None:
        p = self.plan
        reader = self.need_reader()
        out: dict[str, Any] = {}
        for k in VIN_COUNTS:
            fr = common.generate(common.SEED_VIN_COUNTS + k, p.e2e_frames, 1280, 720, n_vins=k)
            out[str(k)] = stages.end_to_end(reader, fr, p.warmup, p.e2e_repeat)
        self.res["scaling_vins"] = out

    def clip(self) -> None:
        with tempfile.TemporaryDirectory(prefix="vin-bench-clips-") as tmp:
            clips = {}
            for v in self.plan.clip_vehicles:
                path = Path(tmp) / f"clip_{v}.avi"
                logger.info("generating a %d-vehicle clip", v)
                vins, n_frames = process.make_clip(path, common.SEED_CLIP, v)
                clips[v] = (path, vins, n_frames)
            self.res["clip_memory"] = process.clip_memory(clips, self.models_dir)
            bad = [r for r in self.res["clip_memory"]["runs"] if r["exit_status"] != 0]
            if bad:
                self.res["errors"]["clip"] = f"vin-agent run exited {bad[0]['exit_status']}"
            # The bundled clip: its vehicles are ones today's models read, so a first
            # event exists to time (its first read vehicle enters at frame 9 of 32).
            bundled = Path(__file__).resolve().parent.parent / "samples" / "clip.avi"
            first = bundled if bundled.exists() else clips[min(clips)][0]
            self.res["cold_start"] = process.cold_start(
                first, self.models_dir, self.plan.cold_repeat
            )
            self.res["cold_start"]["clip"] = first.name

    def startup(self) -> None:
        self.res["startup"] = process.startup(self.models_dir, self.plan.startup_repeat)

    def peers(self) -> None:
        p, args = self.plan, self.args
        n = args.n_peer if args.n_peer is not None else p.n_peer
        out: dict[str, Any] = {"seed": common.SEED_PEERS, "config": {}}
        self.res["peers"] = out
        frames = common.generate(common.SEED_PEERS, n)
        warm = common.generate(common.SEED_WARMUP, 2)
        tune_n = args.tune_psm if args.tune_psm is not None else p.tune_psm
        psm = args.psm or 11
        if args.psm is None and tune_n > 0:
            logger.info("choosing the Tesseract psm on %d images", tune_n)
            tuning = peers.choose_psm(common.generate(common.SEED_TUNE, tune_n), PSM_CANDIDATES)
            out["psm_tuning"] = {"seed": common.SEED_TUNE, **tuning}
            psm = tuning["chosen_psm"]
        readers: dict[str, peers.ReadFn] = {}
        try:
            readers["ours"] = peers.ours(self.need_reader())
            out["config"]["ours"] = {"interpreter_threads": 1, "models": self.reader.models}
        except Exception as exc:  # still compare the peers with each other
            self.res["errors"]["peers_ours"] = f"{type(exc).__name__}: {exc}"
        readers["rapidocr"], out["config"]["rapidocr"] = peers.rapidocr(1)
        try:
            readers["tesseract"], out["config"]["tesseract"] = peers.tesseract(psm)
            out["tesseract_process_overhead"] = peers.tesseract_spawn_ms()
        except RuntimeError as exc:
            self.res["errors"]["peers_tesseract"] = str(exc)
        out["extraction_rule"] = peers.__doc__
        out.update(peers.compare(readers, frames, warm))
        if "ours" in readers:
            out["ratios"] = peers.ratios(out["readers"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    plan = QUICK if args.quick else Plan()
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        logger.error("unknown sections: %s (choose from %s)", unknown, ", ".join(SECTIONS))
        return 2
    if args.skip_peers and "peers" in wanted:
        wanted.remove("peers")
    runner = Runner(args, plan)
    runner.section("environment", runner.environment)
    for name in SECTIONS:
        if name in wanted:
            runner.section(name, getattr(runner, name))
    runner.res["meta"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    runner.res["meta"]["training_running_at_end"] = common.training_running()
    runner.save()
    print(report.render(runner.res))
    logger.info("wrote %s", args.out)
    return 1 if runner.res["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
