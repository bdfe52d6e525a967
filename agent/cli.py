"""The ``vin-agent`` command line: one sub-command per job, JSON on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.logs import setup_logging
from agent.vision.calibration import DEFAULT_MIN_CONFIDENCE

if TYPE_CHECKING:
    from agent.reader import Reader

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


#: Photos (``read``, ``eval``, ``serve``) are also searched turned a quarter for vertical
#: VIN lines by default: their orientation is unknown. A mounted camera's is not, so the
#: daemon's ``[reader] quarter_turn`` defaults to off.
PHOTO_QUARTER_TURN = True
#: Photos are also searched in tiles by default (the distance to the VIN is unknown);
#: the daemon's ``[reader] tiles`` defaults to off (a mounted camera is framed on it).
PHOTO_TILES = True


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def cmd_vin_check(args: argparse.Namespace) -> int:
    from agent import vin

    logger.debug("checking %d VIN(s) under policy %s", len(args.vins), args.policy)
    all_valid = True
    for raw in args.vins:
        text = vin.normalize(raw).text if args.normalize else raw.strip().upper()
        result = vin.validate(text, args.policy)
        out = result.as_dict()
        if args.normalize:
            out["input"] = raw
            out["normalized"] = list(vin.normalize(raw).changes)
        all_valid &= result.valid
        _emit(out)
    return EXIT_OK if all_valid else EXIT_FAIL


def cmd_models_verify(args: argparse.Namespace) -> int:
    from agent.vision.manifest import ModelError, load_manifest, verify_all

    try:
        manifest = load_manifest(args.models_dir)
        results = verify_all(manifest)
    except ModelError as exc:
        _emit({"ok": False, "message": str(exc)})
        return EXIT_FAIL
    for item in results:
        _emit(item)
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_FAIL


def _make_reader(args: argparse.Namespace) -> Reader:
    from agent.reader import Reader
    from agent.vision.runtime import RuntimeConfig

    return Reader(
        args.models_dir,
        RuntimeConfig(num_threads=args.threads),
        policy=args.policy,
        min_confidence=args.min_confidence,
        barcodes=not args.no_barcodes,
        tiles=args.tiles,
        words=args.words,
        second_look=args.second_look,
        quarter_turn=args.quarter_turn,
        turned_barcodes=args.turned_barcodes,
    )


def cmd_read(args: argparse.Namespace) -> int:
    import time

    import cv2

    from agent import imageio
    from agent.annotate import annotate
    from agent.reader import FrameResult
    from agent.response import response
    from agent.vision.manifest import ModelError

    try:
        reader = _make_reader(args)
    except ModelError as exc:
        logger.error("%s", exc)
        return EXIT_FAIL
    # At most one byte over the limit: decode_image then refuses it by size.
    stdin = sys.stdin.buffer.read(imageio.MAX_BYTES + 1) if "-" in args.inputs else None
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)
    for index, spec in enumerate(args.inputs):
        label = spec if len(spec) <= 200 else spec[:40] + f"...({len(spec)} chars)"
        t0 = time.perf_counter()
        try:
            loaded = imageio.load(spec, stdin)
        except imageio.ImageInputError as exc:
            out = response(FrameResult(), reader, message=str(exc))
            out["input"] = label
            _emit(out)
            continue
        t1 = time.perf_counter()
        result = reader.read_frame(loaded.image)
        out = response(result, reader)
        out["timing_ms"] = {"decode": round(1000 * (t1 - t0), 2), **out["timing_ms"]}
        out["timing_ms"]["total"] = round(1000 * (time.perf_counter() - t0), 2)
        out["input"] = label
        out["width"], out["height"] = result.width, result.height
        if args.annotate:
            stem = Path(spec).stem if len(spec) < 256 and Path(spec).suffix else "input"
            target = args.annotate / f"{index:04d}_{stem}.jpg"
            if not cv2.imwrite(str(target), annotate(loaded.image, result)):
                logger.error("could not write annotated image %s", target)
        _emit(out)
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from agent.evaluate import DatasetError, evaluate, format_table, load_labels
    from agent.vision.manifest import ModelError

    try:
        samples = load_labels(args.dataset)
        reader = _make_reader(args)
    except (DatasetError, ModelError) as exc:
        logger.error("%s", exc)
        return EXIT_FAIL
    report = evaluate(reader, samples, progress=not args.no_progress)
    report["dataset"] = str(args.dataset)
    report["models"] = reader.models
    sys.stderr.write(format_table(report) + "\n")
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    else:
        _emit(report)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from agent.serve import ServeConfig, ServeError, Server, create_app
    from agent.vision.manifest import ModelError

    try:
        config = ServeConfig(
            enabled=True,
            host=args.host,
            port=args.port,
            keys_file=args.keys_file,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            max_concurrent=args.max_concurrent,
            allow_private_urls=not args.deny_private_urls,
        )
        server = Server(create_app(_make_reader(args), config), config)
        server.start()
    except ImportError as exc:
        logger.error("serve needs the serve extra (pip install 'vin-agent[serve]'): %s", exc)
        return EXIT_FAIL
    except (ModelError, ServeError, ValueError) as exc:
        logger.error("%s", exc)
        return EXIT_FAIL
    logger.info("serving POST http://%s:%d/v1/vinocr", args.host, server.port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return EXIT_OK


def source_from_spec(spec: str) -> dict[str, object]:
    """``--source`` shorthand -> a source config table.

    ``picamera2`` or ``picamera2:N``; a directory or glob -> images; anything
    else (device number, /dev/video*, rtsp://, http://, video file) -> opencv.
    """
    import glob
    import os

    if spec == "picamera2" or spec.startswith("picamera2:"):
        num = spec.partition(":")[2]
        return {"type": "picamera2", "camera_num": int(num) if num.isdigit() else 0}
    if os.path.isdir(spec) or glob.has_magic(spec):
        return {"type": "images", "path": spec}
    return {"type": "opencv", "url": spec}


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from agent.config import DEFAULT_CONFIG, ConfigError, load_config
    from agent.vision.manifest import ModelError

    path = args.config
    if path is None and os.environ.get("VIN_AGENT_CONFIG"):
        path = Path(os.environ["VIN_AGENT_CONFIG"])
    if path is None and args.source is None:
        path = DEFAULT_CONFIG
    overrides: dict[str, object] = {}
    if args.source is not None:
        src = source_from_spec(args.source)
        if args.no_realtime and src["type"] == "opencv":
            src["realtime"] = False
        overrides["cameras"] = [{"name": args.camera, "source": src}]
    if args.mqtt_url:
        overrides["mqtt"] = {"url": args.mqtt_url}
    for key in ("device_id", "state_dir", "models_dir"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)

    def load() -> object:
        return load_config(path, overrides)

    from agent.service import EXIT_CONFIG, Service

    try:
        config = load_config(path, overrides)
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG

    service = Service(config, reload=load)
    service.install_signals()
    try:
        return service.run()
    except (ModelError, ConfigError) as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG


def _add_reader_options(p: argparse.ArgumentParser) -> None:
    _add_models_dir(p)
    p.add_argument(
        "--policy",
        choices=["required", "auto", "off"],
        default="auto",
        help="check digit policy (default auto: required for North America and China)",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        metavar="C",
        help="publish a VIN only at or above this calibrated confidence (default %(default)s)",
    )
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--no-barcodes", action="store_true", help="skip the barcode pass")
    p.add_argument(
        "--tiles",
        action=argparse.BooleanOptionalAction,
        default=PHOTO_TILES,
        help="also search images in 2x2 overlapping tiles for small, distant VIN lines: "
        "four more detector passes (default: on)",
    )
    p.add_argument(
        "--words",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also read level words of about 17 characters found from the image's own "
        "character shapes, for plainly printed VINs the detector misses (default: on)",
    )
    p.add_argument(
        "--second-look",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read a refused line again from its crop framed three other ways, fused; "
        "kept only when its check digit verifies it (default: on)",
    )
    p.add_argument(
        "--quarter-turn",
        action=argparse.BooleanOptionalAction,
        default=PHOTO_QUARTER_TURN,
        help="also search images turned 90 degrees for vertical VIN lines (photos without "
        "EXIF orientation): one more detector pass (default: on)",
    )
    p.add_argument(
        "--turned-barcodes",
        action="store_true",
        help="also scan images turned 90 degrees for vertical barcodes (about 3x the barcode pass)",
    )


def _add_models_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory holding manifest.json and the .tflite models "
        "(default: the models shipped with the package)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vin-agent",
        description="Read vehicle VINs from camera frames on the edge and publish them over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"vin-agent {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="log verbosity (default: INFO); logs go to stderr",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text for people, json for one JSON object per line (journald, log shippers)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p_vin = sub.add_parser("vin", help="VIN rules: check digits, validation and decoding")
    vin_sub = p_vin.add_subparsers(dest="vin_command", metavar="ACTION", required=True)
    p_check = vin_sub.add_parser(
        "check",
        help="validate VINs; one JSON object per VIN; exit 1 if any is invalid",
        description="Validate each VIN against ISO 3779 / 49 CFR 565 and print one JSON "
        "object per VIN. Exit status 0 when every VIN is valid under the policy, 1 otherwise.",
    )
    p_check.add_argument("vins", nargs="+", metavar="VIN", help="17-character VINs")
    p_check.add_argument(
        "--policy",
        choices=["required", "auto", "off"],
        default="auto",
        help="check digit policy: required everywhere, auto (required for North America "
        "1-5 and China L, the default) or off",
    )
    p_check.add_argument(
        "--normalize",
        action="store_true",
        help="clean OCR/barcode text first (spaces, dashes, '*', leading I, O->0, I->1, Q->0)",
    )
    p_check.set_defaults(handler=cmd_vin_check)

    p_read = sub.add_parser(
        "read",
        help="read VINs in images; one CarsXE-style JSON object per input",
        description="INPUT is an image path, an http(s) URL, a base64 string, a "
        "data:image/...;base64, URI, or - for image bytes on stdin. One JSON object per "
        "input on stdout, in input order. Exit 0 when every input was processed (bad inputs "
        "give success: false with a message), 1 when the models cannot be loaded, 2 on "
        "usage errors.",
    )
    p_read.add_argument("inputs", nargs="+", metavar="INPUT")
    _add_reader_options(p_read)
    p_read.add_argument("--annotate", type=Path, metavar="DIR", help="write annotated images here")
    p_read.set_defaults(handler=cmd_read)

    p_eval = sub.add_parser(
        "eval",
        help="evaluate on a labelled dataset (labels.csv with file,vin[,kind])",
        description="DATASET_DIR holds labels.csv (columns file and vin, optional kind) and "
        "the images. Prints a table to stderr and the JSON report to stdout or --report.",
    )
    p_eval.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    p_eval.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    p_eval.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_reader_options(p_eval)
    p_eval.set_defaults(handler=cmd_eval)

    p_run = sub.add_parser(
        "run",
        help="the daemon: watch cameras, publish one message per vehicle",
        description="Read VINs from cameras and publish visit events over MQTT (or as JSON "
        "lines on stdout when no broker is configured). Flags override the config file "
        "(default /etc/vin-agent/config.toml) and VIN_AGENT_* environment variables.",
    )
    p_run.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    p_run.add_argument(
        "--source",
        metavar="S",
        help="one camera instead of the config's: picamera2, a device (0, /dev/video0), "
        "an rtsp:// or http:// URL, a video file, or a directory or glob of images",
    )
    p_run.add_argument("--camera", default="cam0", metavar="NAME", help="name for --source")
    p_run.add_argument(
        "--no-realtime",
        action="store_true",
        help="with --source VIDEO_FILE: process every frame as fast as possible",
    )
    p_run.add_argument("--mqtt-url", metavar="URL", help="mqtt://[user@]host[:port] or mqtts://")
    p_run.add_argument("--device-id", metavar="ID", help="device id in topics (default hostname)")
    p_run.add_argument("--state-dir", type=Path, metavar="DIR", help="outbox and counters")
    _add_models_dir(p_run)
    p_run.set_defaults(handler=cmd_run)

    p_serve = sub.add_parser(
        "serve",
        help="serve a local CarsXE-compatible POST /v1/vinocr endpoint",
        description='POST /v1/vinocr?key=KEY with a JSON body {"image_url": URL, base64 or '
        "data URI} returns the CarsXE VIN OCR response. OpenAPI at /openapi.json. Needs the "
        "serve extra. Without --keys-file it listens on loopback only.",
    )
    p_serve.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    p_serve.add_argument("--port", type=int, default=8080, help="TCP port (default %(default)s)")
    p_serve.add_argument(
        "--keys-file", type=Path, metavar="FILE", help="API keys, one per line; ?key= must match"
    )
    p_serve.add_argument(
        "--max-body-mb", type=float, default=20.0, help="largest request body (default 20 MB)"
    )
    p_serve.add_argument(
        "--max-concurrent", type=int, default=4, help="requests in flight before HTTP 429"
    )
    p_serve.add_argument(
        "--deny-private-urls",
        action="store_true",
        help="refuse image URLs on private, loopback and link-local addresses (SSRF guard)",
    )
    _add_reader_options(p_serve)
    p_serve.set_defaults(handler=cmd_serve)

    p_models = sub.add_parser("models", help="shipped models: integrity checks")
    models_sub = p_models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    p_verify = models_sub.add_parser(
        "verify",
        help="check every model file against the SHA-256 in manifest.json",
        description="Exit status 0 when every model in the manifest is present and matches "
        "its SHA-256, 1 otherwise.",
    )
    _add_models_dir(p_verify)
    p_verify.set_defaults(handler=cmd_models_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed by a pager or `head`: not an error of ours.
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
