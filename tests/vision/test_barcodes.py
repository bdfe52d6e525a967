"""Barcode VINs: real barcodes made and read by zxing-cpp, normalised by the VIN rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

zxingcpp = pytest.importorskip("zxingcpp")

from agent.vision.barcodes import read_barcodes  # noqa: E402

VIN = "1HGCM82633A004352"


def barcode_frame(text: str, fmt: str, scale: int = 3, angle: float = 0.0) -> np.ndarray:
    """A barcode on a larger gray page, optionally rotated, as a camera frame."""
    code = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt))
    img = np.asarray(zxingcpp.write_barcode_to_image(code, scale=scale))
    page = np.full((img.shape[0] + 200, img.shape[1] + 200), 235, np.uint8)
    page[100 : 100 + img.shape[0], 100 : 100 + img.shape[1]] = img
    if angle:
        h, w = page.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        page = cv2.warpAffine(page, m, (w, h), borderValue=235)
    return cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize("fmt", ["Code39", "Code128", "DataMatrix", "QRCode", "PDF417"])
def test_each_vin_format_is_read(fmt: str) -> None:
    """Door labels and windshield stickers use all five; each must yield the VIN."""
    reads = read_barcodes(barcode_frame(VIN, fmt))
    assert [r.vin for r in reads] == [VIN]
    assert reads[0].checksum_valid
    assert reads[0].quad.shape == (4, 2)


def test_code39_import_marker_is_stripped() -> None:
    """Imported vehicles' Code 39 VINs carry a leading 'I' that is not part of the VIN."""
    (read,) = read_barcodes(barcode_frame("I" + VIN, "Code39", angle=180))
    assert read.vin == VIN
    assert any("import marker" in c for c in read.changes)


def test_vin_inside_a_document_qr_payload() -> None:
    """Registration QR codes carry several fields; the VIN is one token among them."""
    (read,) = read_barcodes(barcode_frame(f"PLATE:AB123CD;VIN:{VIN};OWNER:X", "QRCode"))
    assert read.vin == VIN


def test_non_vin_barcodes_and_bad_check_digits_are_dropped() -> None:
    """A parts barcode, or a North American VIN with a wrong check digit, is not a VIN read."""
    assert read_barcodes(barcode_frame("PART-0042-XYZ", "Code128")) == []
    bad = VIN[:8] + "7" + VIN[9:]
    assert read_barcodes(barcode_frame(bad, "Code39")) == []
    assert [r.vin for r in read_barcodes(barcode_frame(bad, "Code39"), "off")] == [bad]


def test_blank_frame_reads_nothing() -> None:
    assert read_barcodes(np.zeros((480, 640, 3), np.uint8)) == []


def test_vertical_codes_need_the_rotated_scan() -> None:
    """The rotated scan triples the pass's cost, so it is optional: without it a code turned
    a quarter is not read, while an upside-down one still is (1D codes read both ways)."""
    vertical = np.ascontiguousarray(np.rot90(barcode_frame(VIN, "Code39")))
    assert [r.vin for r in read_barcodes(vertical)] == [VIN]
    assert read_barcodes(vertical, rotate=False) == []
    upside_down = barcode_frame(VIN, "Code39", angle=180)
    assert [r.vin for r in read_barcodes(upside_down, rotate=False)] == [VIN]
