"""The ``vin-agent`` command line: one sub-command per job, JSON on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agent import __version__
from agent.logs import setup_logging

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


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
