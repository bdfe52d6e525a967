"""The word pass: level words of about 17 characters found from the frame's own ink."""

from __future__ import annotations

import cv2
import numpy as np

from agent.vision.words import find_words

VIN = "1HGCM82633A004352"


def _sheet(
    lines: list[str],
    size: tuple[int, int] = (1280, 720),
    scale: float = 1.0,
    ink: int = 20,
    paper: int = 225,
    font: int = cv2.FONT_HERSHEY_SIMPLEX,
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Lines of text typed with OpenCV's Hershey fonts (a face the models never trained
    on), and each line's box."""
    w, h = size
    image = np.full((h, w), paper, np.uint8)
    boxes = []
    y = 80
    for text in lines:
        (tw, th), base = cv2.getTextSize(text, font, scale, 2)
        cv2.putText(image, text, (60, y), font, scale, ink, 2, cv2.LINE_AA)
        boxes.append((60, y - th, 60 + tw, y + base))
        y += int(th * 3)
    return image, boxes


def _xrange(quad: np.ndarray) -> tuple[float, float]:
    return float(quad[:, 0].min()), float(quad[:, 0].max())


def test_a_vin_after_its_prefix_is_proposed_without_the_prefix() -> None:
    """A crop that starts with ``VIN:`` reads as more than 17 characters: the word gap
    must split the prefix off, so the proposal starts at the VIN's first character."""
    image, boxes = _sheet(["VIN: " + VIN, "MFD BY GENERAL MOTORS 06/18"])
    (prefix_w, _), _ = cv2.getTextSize("VIN: ", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
    (vin_w, _), _ = cv2.getTextSize(VIN, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
    # Parts of the label line may be proposed too (the reader's rules judge them);
    # on the VIN's own row there is one word.
    row = boxes[0][1], boxes[0][3]
    quads = [q for q in find_words(image) if row[0] <= q[:, 1].mean() <= row[1]]
    assert len(quads) == 1, quads
    x0, x1 = _xrange(quads[0])
    # Hershey glyphs sit a few pixels inside their advance box.
    assert abs(x0 - (60 + prefix_w)) < 12 and abs(x1 - (60 + prefix_w + vin_w)) < 12


def test_light_text_on_dark_is_found_too() -> None:
    """Etched plates and screens print light on dark: both polarities are searched, each
    against its own side of the local mean (with sensor noise, a threshold on the wrong
    side turns the whole background into ink, and only halos are left)."""
    image, boxes = _sheet([VIN], ink=230, paper=30)
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.5)
    noise = np.random.default_rng(1).normal(0, 6, image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    quads = find_words(image)
    assert len(quads) == 1
    x0, x1 = _xrange(quads[0])
    assert abs(x0 - boxes[0][0]) < 12 and abs(x1 - boxes[0][2]) < 12


def test_words_far_from_17_characters_are_not_proposed() -> None:
    """Short words, and runs of 25 characters, are no VIN: proposing them would only
    cost reads."""
    image, _ = _sheet(["GVWR 2812 KG", "ABCDEFGHJKLMNPRSTUVWXYZ12", "TIRES P265"])
    assert find_words(image) == []


def test_a_distant_vin_in_a_large_frame_maps_back_to_frame_pixels() -> None:
    """Frames wider than the working width are searched shrunk; the quads come back in
    the frame's own pixels."""
    image, boxes = _sheet([VIN], size=(2560, 1440), scale=2.0)
    quads = find_words(image)
    assert len(quads) == 1
    x0, x1 = _xrange(quads[0])
    assert abs(x0 - boxes[0][0]) < 20 and abs(x1 - boxes[0][2]) < 20


def test_an_empty_or_textured_frame_gives_no_words() -> None:
    """Noise makes thousands of specks; none chain into a word."""
    rng = np.random.default_rng(3)
    assert find_words(np.full((480, 640), 128, np.uint8)) == []
    noise = rng.integers(0, 256, (720, 1280)).astype(np.uint8)
    assert find_words(noise) == []


def _spaced(parts: list[tuple[str, int, int]], scale: float = 1.0) -> tuple[np.ndarray, list[int]]:
    """Parts typed character by character: (text, pixels after each character, more
    pixels after the part); the x where each part starts."""
    image = np.full((300, 1280), 225, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    x, starts = 60, []
    for text, gap, after in parts:
        starts.append(x)
        for ch in text:
            (cw, _), _ = cv2.getTextSize(ch, font, scale, 2)
            cv2.putText(image, ch, (x, 150), font, scale, 20, 2, cv2.LINE_AA)
            x += cw + gap
        x += after
    return image, starts


def test_a_prefix_set_tight_against_the_vin_is_cut_at_the_widest_gap() -> None:
    """Tightly spaced print leaves a word gap too small for the word-gap rule; a part
    too long for a VIN is then cut at its widest gap, which leaves the 17 characters."""
    # Ink gaps of about 5 px between letters and 9 px before the VIN: below the word
    # gap (2.5 letter gaps), above the widest-gap cut's floor (1.6).
    image, starts = _spaced([("VIN", 2, 4), (VIN, 2, 0)])
    quads = find_words(image)
    assert len(quads) == 1, quads
    x0, _ = _xrange(quads[0])
    assert abs(x0 - starts[1]) < 10


def test_glyphs_run_together_count_by_the_length_they_take() -> None:
    """Bold or blurred print can run most glyphs together, so the count falls short:
    ten components still make a VIN-sized word when they are as long as 17 characters
    (about 13 line heights here), and not when they are as long as ten."""
    from agent.vision.words import _vin_sized

    def row(n: int, width: float, h: float = 20.0) -> np.ndarray:
        """n components (x, y, w, h) of one width, 2 px apart."""
        x = np.arange(n) * (width + 2.0)
        return np.stack([x, np.zeros(n), np.full(n, width), np.full(n, h)], axis=1)

    assert _vin_sized(row(17, 12.0))  # 17 separate glyphs
    assert _vin_sized(row(10, 24.0))  # ten pairs run together: 13 heights long
    assert not _vin_sized(row(10, 12.0))  # ten glyphs: 7 heights long
    assert not _vin_sized(row(5, 52.0))  # five blobs: too few parts to be characters
