"""Realistic VIN strings, VIN-like distractors and the text printed around VINs.

Labels shape what the recognizer learns beyond pixels, so VINs follow the
real structure (WMI, VDS, check digit, model year, plant, serial) while a
share is drawn with uniform characters: a model that leans too hard on
WMI priors would misread makers it never saw.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from agent.vin import ALPHABET, MODEL_YEAR_CODES, NON_VIN_LETTERS, check_digit

logger = logging.getLogger(__name__)

DIGITS = "0123456789"
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
#: Share of VINs whose position 9 is a correct check digit.
CHECKED_SHARE = 0.8
#: WMI regions that rarely use a check digit (Europe, Japan domestic habits).
_UNCHECKED_REGIONS = "JSTUVWXYZ"

# A handful of real WMIs so sampling still works if vininfo's internals move.
_FALLBACK_WMIS = (
    "1FA", "1FT", "1G1", "1GC", "1HG", "1N4", "2HG", "2T1", "3FA", "3VW", "4T1", "5YJ",
    "JHM", "JN1", "JTD", "KMH", "KNA", "LFV", "LSV", "SAL", "TMB", "VF1", "VF3", "VSS",
    "WAU", "WBA", "WDB", "WDD", "WF0", "WVW", "WP0", "YV1", "ZFA", "ZAR",
)  # fmt: skip


def _pick(rng: np.random.Generator, chars: str, n: int = 1) -> str:
    # rng.random is several times cheaper per call than rng.integers.
    return "".join(chars[i] for i in (rng.random(n) * len(chars)).astype(np.intp))


@lru_cache(maxsize=1)
def wmis() -> tuple[str, ...]:
    """Three-character WMIs from vininfo's table (two-character ones as prefixes)."""
    try:
        from vininfo.dicts.wmi import WMI

        keys = [str(k).upper() for k in WMI]
    except (ImportError, AttributeError):  # pragma: no cover - depends on vininfo version
        logger.warning("vininfo WMI table not importable; using a built-in WMI sample")
        keys = list(_FALLBACK_WMIS)
    legal = sorted(
        {k for k in keys if 2 <= len(k) <= 3 and k[0] != "0" and all(c in ALPHABET for c in k)}
    )
    return tuple(legal) or _FALLBACK_WMIS


def _wmi(rng: np.random.Generator, regions: str | None = None) -> str:
    table = wmis()
    if regions is not None:
        table = tuple(w for w in table if w[0] in regions) or table
    w = table[int(rng.random() * len(table))]
    return w if len(w) == 3 else w + _pick(rng, ALPHABET)


def _serial(rng: np.random.Generator) -> str:
    u = rng.random()
    if u < 0.75:
        return _pick(rng, DIGITS, 6)
    if u < 0.92:
        return _pick(rng, LETTERS) + _pick(rng, DIGITS, 5)
    return _pick(rng, LETTERS, 2) + _pick(rng, DIGITS, 4)


def _vds(rng: np.random.Generator) -> str:
    # Manufacturers mix letters and digits in the descriptor section freely.
    return "".join(
        _pick(rng, LETTERS) if rng.random() < 0.55 else _pick(rng, DIGITS) for _ in range(5)
    )


def sample_vin(rng: np.random.Generator) -> str:
    """A 17-character VIN; about 80 % carry a valid check digit."""
    year = _pick(rng, MODEL_YEAR_CODES)
    plant = _pick(rng, ALPHABET)
    if rng.random() < CHECKED_SHARE:
        u = rng.random()
        if u < 0.15:
            # Uniform characters put every class at every position, so the
            # model learns to read glyphs rather than lean on VIN structure.
            body = _pick(rng, ALPHABET[1:]) + _pick(rng, ALPHABET, 7) + "0" + year
            body += _pick(rng, ALPHABET, 7)
        else:
            wmi = _wmi(rng, "12345KL") if u < 0.7 else _wmi(rng)
            body = wmi + _vds(rng) + "0" + year + plant + _serial(rng)
        return body[:8] + check_digit(body) + body[9:]
    # European/Japanese habit: fillers instead of a computed check digit.
    wmi = _wmi(rng, _UNCHECKED_REGIONS)
    vds = "ZZZ" + _pick(rng, ALPHABET, 2) if rng.random() < 0.45 else _vds(rng)
    pos9 = "Z" if rng.random() < 0.4 else _pick(rng, ALPHABET)
    return wmi + vds + pos9 + year + plant + _serial(rng)


def is_vin_shaped(text: str) -> bool:
    """17 characters, all from the VIN alphabet (check digit not considered)."""
    return len(text) == 17 and all(c in ALPHABET for c in text)


def _mutate(rng: np.random.Generator, vin: str) -> str:
    u = rng.random()
    if u < 0.35:
        i = int(rng.integers(17))
        return vin[:i] + vin[i + 1 :]
    if u < 0.7:
        i = int(rng.integers(18))
        return vin[:i] + _pick(rng, ALPHABET) + vin[i:]
    chars = list(vin)
    for i in rng.choice(17, size=int(rng.integers(1, 3)), replace=False):
        chars[i] = "IOQ"[rng.integers(3)]
    return "".join(chars)


def sample_distractor(rng: np.random.Generator) -> str:
    """Text that looks VIN-like on a label but is never a valid VIN."""
    u = rng.random()
    if u < 0.4:
        text = _mutate(rng, sample_vin(rng))
    elif u < 0.55:
        text = f"{_pick(rng, DIGITS, 5)}-{_pick(rng, ALPHABET, 5)}-{_pick(rng, ALPHABET, 2)}"
    elif u < 0.65:
        text = f"{_pick(rng, DIGITS, 1)}{_pick(rng, LETTERS, 1)}0 {_pick(rng, DIGITS, 3)} "
        text += f"{_pick(rng, DIGITS, 3)} {_pick(rng, LETTERS, 2)}"
    elif u < 0.75:
        text = f"MFD {rng.integers(1, 13):02d}/{rng.integers(0, 30):02d}"
    elif u < 0.85:
        kg = int(rng.integers(1200, 4500))
        text = f"GVWR {kg} KG ({round(kg * 2.20462)} LB)"
    else:
        text = f"P{rng.integers(185, 305, endpoint=True)}/{rng.integers(4, 8) * 10 + 5}"
        text += f"R{rng.integers(15, 22)} {rng.integers(88, 120)}{_pick(rng, 'HSTV')}"
    if is_vin_shaped(text):  # pragma: no cover - mutations already break the shape
        text = text[:16]
    return text


_MAKERS = (
    "GENERAL MOTORS LLC", "FORD MOTOR COMPANY", "TOYOTA MOTOR MANUFACTURING",
    "HONDA OF AMERICA MFG., INC.", "NISSAN NORTH AMERICA, INC.", "FCA US LLC",
    "VOLKSWAGEN AG", "BMW AG", "HYUNDAI MOTOR COMPANY", "KIA CORPORATION",
    "SUBARU OF INDIANA AUTOMOTIVE", "MERCEDES-BENZ U.S. INTERNATIONAL", "TESLA, INC.",
)  # fmt: skip
_DOOR = (
    "THIS VEHICLE CONFORMS TO ALL APPLICABLE U.S. FEDERAL MOTOR VEHICLE SAFETY,",
    "BUMPER, AND THEFT PREVENTION STANDARDS IN EFFECT ON THE DATE OF MANUFACTURE",
    "SHOWN ABOVE.", "TYPE: PASSENGER CAR", "TYPE: MULTIPURPOSE PASS. VEHICLE",
    "TYPE: TRUCK", "MADE IN U.S.A.", "MADE IN JAPAN", "ASSEMBLED IN MEXICO",
    "THIS VEHICLE CONFORMS TO ALL APPLICABLE CANADIAN MOTOR VEHICLE SAFETY STANDARDS",
)  # fmt: skip
_DOCUMENT = (
    "VEHICLE IDENTIFICATION NUMBER", "YEAR   MAKE   MODEL   BODY STYLE", "TITLE NUMBER",
    "CERTIFICATE OF TITLE FOR A VEHICLE", "REGISTERED OWNER", "ODOMETER READING",
    "Vehicle identification number (VIN)", "Date of first registration", "LIENHOLDER",
    "Make  Model  Colour", "ISSUE DATE", "PLATE NO.",
)  # fmt: skip


def _door_line(rng: np.random.Generator) -> str:
    u = rng.random()
    kg = int(rng.integers(1100, 4200))
    lb = round(kg * 2.20462)
    if u < 0.2:
        return f"MFD BY: {_MAKERS[rng.integers(len(_MAKERS))]}"
    if u < 0.35:
        return f"DATE: {rng.integers(1, 13):02d}/{rng.integers(0, 30):02d}  GVWR: {kg} KG ({lb} LB)"
    if u < 0.55:
        front = kg // 2 + int(rng.integers(-100, 100))
        tire = f"P{rng.integers(195, 285)}/{rng.integers(5, 8)}5R{rng.integers(15, 21)}"
        return f"GAWR FRT: {front} KG ({round(front * 2.20462)} LB) WITH {tire} TIRES"
    if u < 0.65:
        return f"PAINT: {_pick(rng, LETTERS + DIGITS, 3)}  TRIM: {_pick(rng, ALPHABET, 3)}"
    return _DOOR[rng.integers(len(_DOOR))]


def sample_context_line(rng: np.random.Generator, kind: str) -> str:
    """A line of text that sits above or below the VIN on a carrier of ``kind``."""
    if kind == "door_label":
        return _door_line(rng)
    if kind == "document":
        return _DOCUMENT[rng.integers(len(_DOCUMENT))]
    if kind == "metal_plate":
        options = (
            f"e{rng.integers(1, 14)}*2007/46*{rng.integers(0, 9999):04d}*{rng.integers(0, 30):02d}",
            f"{rng.integers(1200, 3500)} kg",
            f"{rng.integers(1, 3)}- {rng.integers(600, 1800)} kg",
            _MAKERS[rng.integers(len(_MAKERS))],
        )
        return options[rng.integers(len(options))]
    if kind == "windshield_label":
        options = (
            f"LANE {rng.integers(1, 40)}  RUN {rng.integers(1, 900)}",
            f"STOCK# {_pick(rng, DIGITS, 6)}",
            f"MILES {rng.integers(1, 250)},{rng.integers(0, 1000):03d}",
            f"{rng.integers(2000, 2026)} {_MAKERS[rng.integers(len(_MAKERS))].split()[0]}",
        )
        return options[rng.integers(len(options))]
    if kind == "screen":
        screen = ("Vehicle details", "VIN", "Make  Model  Year", "Odometer", "Copy VIN")
        return screen[rng.integers(len(screen))]
    return sample_distractor(rng)


#: Longest target a negative line may have: the recognizer's 80 output columns
#: must hold it with the blanks that repeated characters need between them.
MAX_TARGET_CHARS = 32
_CONTEXT_KINDS = ("door_label", "document", "metal_plate", "windshield_label", "screen")


#: What the recognizer is trained to output: the VIN characters, then I, O and Q
#: (``agent.vision.recognizer.MODEL_ALPHABETS``), so a line's I, O and Q are read
#: as themselves instead of as 1 and 0.
TARGET_ALPHABET = ALPHABET + NON_VIN_LETTERS


def readable_chars(text: str) -> str:
    """What the recognizer should output for a printed line: its characters in
    ``TARGET_ALPHABET``, in order. Lower case and punctuation read as nothing."""
    return "".join(c for c in text if c in TARGET_ALPHABET)


def reads_as_vin(target: str) -> bool:
    """Whether a line's reading would pass the length rule: 17 VIN characters."""
    return len(target) == 17 and all(c in ALPHABET for c in target)


#: The VIN characters an I, O or Q is most easily mistaken for.
_LOOKALIKES = {"1": "I", "0": "OQ", "D": "O", "G": "Q", "L": "I", "J": "I"}


def sample_lookalike(rng: np.random.Generator) -> str:
    """A VIN with one to three characters turned into the I, O or Q they resemble.

    Read by a model that never learnt the difference, 1P4G... with an I for the 1
    is a VIN; only many such pairs teach the stroke that tells them apart.
    """
    chars = list(sample_vin(rng))
    near = [i for i, c in enumerate(chars) if c in _LOOKALIKES]
    spots = near if near and rng.random() < 0.8 else list(range(17))
    k = min(len(spots), int(rng.integers(1, 4)))
    for i in rng.choice(spots, size=k, replace=False):
        pool = _LOOKALIKES.get(chars[i], NON_VIN_LETTERS)
        chars[i] = pool[rng.integers(len(pool))]
    return "".join(chars)


def sample_negative_text(rng: np.random.Generator) -> str:
    """A line that is not a VIN, never read as 17 VIN characters.

    Trained on VIN lines only, the recognizer learns that every line holds 17
    characters and invents them from label lines and part numbers; read as what
    they are, such lines fail the length rule instead of passing as VINs.
    """
    for _ in range(100):
        u = rng.random()
        if u < 0.25:
            text = sample_lookalike(rng)
        elif u < 0.55:
            text = sample_distractor(rng)
        elif u < 0.85:
            text = sample_context_line(rng, _CONTEXT_KINDS[rng.integers(len(_CONTEXT_KINDS))])
        else:  # part and serial numbers of VIN characters, any length but 17
            n = int(rng.choice([*range(5, 17), *range(18, 25)]))
            text = _pick(rng, ALPHABET, n)
            if rng.random() < 0.4:
                cut = int(rng.integers(2, n - 1))
                text = f"{text[:cut]}-{text[cut:]}"
        target = readable_chars(text)
        if 0 < len(target) <= MAX_TARGET_CHARS and not reads_as_vin(target):
            return text
    return "GVWR 2200 KG"
