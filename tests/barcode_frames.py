"""Frames whose VINs are printed as Code 39 barcodes: every agent reads them whatever the
OCR models' accuracy, so delivery tests (fleet, faults, security) do not depend on it."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import zxingcpp

from agent.vin import ALPHABET, check_digit


def make_vin(rng: random.Random) -> str:
    body = rng.choice(["1HG", "1FT", "2T1", "3VW", "5YJ", "WVW", "JHM"])
    body += "".join(rng.choice(ALPHABET) for _ in range(5)) + "0"
    body += rng.choice("ABCDEFGHJKLMNPRSTVWXY123456789") + rng.choice(ALPHABET)
    body += "".join(rng.choice("0123456789") for _ in range(6))
    return body[:8] + check_digit(body) + body[9:]


def write_frames(directory: Path, vins: list[str]) -> None:
    directory.mkdir(parents=True)
    n = 0
    for vin in vins:
        code = zxingcpp.create_barcode(vin, zxingcpp.BarcodeFormat.Code39)
        bars = np.asarray(zxingcpp.write_barcode_to_image(code, scale=2))
        for _ in range(2):
            page = np.full((480, 640), 225, np.uint8)
            h, w = bars.shape
            y, x = 160, (640 - w) // 2
            page[y : y + h, x : x + w] = bars
            cv2.imwrite(str(directory / f"{n:04d}.jpg"), page)
            n += 1
