"""Compare vin-agent results from two platforms (used by scripts/arm64-check).

    python scripts/compare_reads.py --names arm64 x86-64 \\
        --read scenes A.jsonl B.jsonl --read frames A.jsonl B.jsonl \\
        --eval A.json B.json --run A.jsonl B.jsonl

``--read LABEL A B``: ``vin-agent read`` output, one JSON object per input,
matched by ``input``, printed side by side. Every field must be equal
(``timing_ms`` aside), with two allowances, both printed: a ``confidence``
may differ by up to ``--tolerance`` (default 0.01), and runner-up candidates
(after the first) may differ: the int8 kernels are not bit-exact between
the two platforms (below). ``--strict`` turns all allowances off.

A third allowance, for decisions on the edge: the int8 kernels of the same
ai-edge-litert release do not compute bit-identical results on x86-64 and
arm64 (measured with TFLite's built-in kernels: the first convolution of
the recognizer already differs by 1 LSB in 40 of 40,960 values, the
requantisation rounding of the two builds; a few LSB at the output). So a
read whose confidence lies near a threshold can be published on one
platform and not on the other. An input whose results differ is allowed,
and listed as such, when no VIN published at ``--firm`` (default 0.9) or
above on one side is missing from the other (a firm best read may move its
box by 2 px or a tenth of its height); the eval report may then differ
by as many inputs as were allowed. A firm read that differs is a problem.

``--eval A B``: the ``vin-agent eval`` reports, equal except latencies and
the dataset path (``ece`` within the tolerance). ``--run A B``: ``vin-agent
run`` stdout (stdout sink): the same events (topic, type, VIN, success) in
the same order; their boxes, confidences and frame counts are shown but may
differ, because OpenCV's bundled FFmpeg decodes the video to slightly
different pixels on the two platforms.

Exit status: 0 same, 1 a difference (each printed), 2 an unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: read fields that depend on the clock, not on the computation
READ_IGNORED = {"timing_ms"}
#: run event fields that depend on the clock, the host or chance (uuid4)
RUN_IGNORED = {"event_id", "timestamp", "start_time", "end_time", "time", "device_id"}
#: numeric fields compared within the tolerance
TOLERANT_KEYS = {"confidence", "ece"}
#: run event fields that must be equal
RUN_STRICT = ("topic", "type", "vin", "success")


@dataclass
class Comparison:
    names: tuple[str, str]
    tolerance: float = 0.01
    strict: bool = False
    firm: float = 0.9
    marginal: int = 0  # inputs allowed to differ because their decisions were on the edge
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def diff(self, a: Any, b: Any, path: str = "") -> tuple[list[str], list[str]]:
        """(differences, allowed differences) between two JSON values, as paths."""
        if isinstance(a, dict) and isinstance(b, dict):
            bad: list[str] = []
            ok: list[str] = []
            for key in sorted(set(a) | set(b), key=str):
                where = f"{path}.{key}" if path else str(key)
                if key not in a or key not in b:
                    bad.append(where)
                    continue
                x, y = a[key], b[key]
                if key == "candidates" and not self.strict and isinstance(x, list):
                    d_bad, d_ok = self.diff(x[:1], y[:1] if isinstance(y, list) else y, where)
                    bad += d_bad
                    ok += d_ok
                    if isinstance(y, list):
                        if len(x) != len(y):
                            bad.append(f"{where} (length {len(x)} vs {len(y)})")
                        else:
                            for i in range(1, len(x)):
                                r_bad, r_ok = self.diff(x[i], y[i], f"{where}[{i}]")
                                ok += r_bad + r_ok
                    continue
                if (
                    key in TOLERANT_KEYS
                    and not self.strict
                    and isinstance(x, int | float)
                    and isinstance(y, int | float)
                    and x != y
                ):
                    (ok if abs(x - y) <= self.tolerance else bad).append(where)
                    continue
                d_bad, d_ok = self.diff(x, y, where)
                bad += d_bad
                ok += d_ok
            return bad, ok
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return [f"{path} (length {len(a)} vs {len(b)})"], []
            bad, ok = [], []
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                d_bad, d_ok = self.diff(x, y, f"{path}[{i}]")
                bad += d_bad
                ok += d_ok
            return bad, ok
        return ([] if a == b and type(a) is type(b) else [path]), []

    def line(self, what: str, where: str, a: Any, b: Any) -> str:
        return (
            f"{what}: {where}: {self.names[0]}={short(pick(a, where))} "
            f"{self.names[1]}={short(pick(b, where))}"
        )

    def check(self, what: str, a: Any, b: Any) -> bool:
        """Record the differences between a and b; True when none is a problem."""
        bad, ok = self.diff(a, b)
        self.problems += [self.line(what, w, a, b) for w in bad]
        self.allowed += [self.line(what, w, a, b) for w in ok]
        return not bad


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def short(value: Any, width: int = 70) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def pick(value: Any, path: str) -> Any:
    """The value at a path from :meth:`Comparison.diff` (for printing)."""
    path = path.split(" (")[0]
    for part in path.replace("]", "").replace("[", ".").split("."):
        if not part:
            continue
        if isinstance(value, list):
            value = value[int(part)] if int(part) < len(value) else "(absent)"
        elif isinstance(value, dict):
            value = value.get(part, "(absent)")
    return value


def box_text(box: dict[str, int] | None) -> str:
    if not box:
        return "-"
    return f"{box['xmin']},{box['ymin']}-{box['xmax']},{box['ymax']}"


def cell(read: dict[str, Any] | None) -> str:
    """vin/success, confidence, box (or, with no VIN, the first missed line's box), misses."""
    if read is None:
        return f"{'(missing)':<24} {'':>6} {'':<24} {'':>6}"
    vin = f"{read.get('vin') or '-'}/{str(read.get('success')).lower()}"
    conf = read.get("confidence")
    conf_text = f"{conf:.4f}" if isinstance(conf, int | float) else "-"
    misses = read.get("misses") or []
    box = box_text(read.get("box"))
    if box == "-" and misses:
        box = "miss " + box_text(misses[0].get("box"))
    return f"{vin:<24} {conf_text:>6} {box:<24} {len(misses):>6}"


def firm_reads(read: dict[str, Any], firm: float) -> set[str]:
    """The VINs a result publishes at ``firm`` confidence or above."""
    out = set()
    if read.get("success") and float(read.get("confidence") or 0) >= firm:
        out.add(str(read.get("vin")))
    for cand in read.get("candidates") or []:
        if float(cand.get("confidence") or 0) >= firm:
            out.add(str(cand.get("vin")))
    return out


def on_the_edge(a: dict[str, Any], b: dict[str, Any], cmp: Comparison) -> bool:
    """Whether two differing results agree on everything published firmly: the same firm
    VINs, and a firm best read with nearly the same box and a confidence within the
    tolerance."""
    if firm_reads(a, cmp.firm) != firm_reads(b, cmp.firm):
        return False
    if a.get("success") and float(a.get("confidence") or 0) >= cmp.firm:
        return (
            a.get("vin") == b.get("vin")
            and near_box(a.get("box"), b.get("box"))
            and abs(float(a.get("confidence") or 0) - float(b.get("confidence") or 0))
            <= cmp.tolerance
        )
    return True


def near_box(a: Any, b: Any) -> bool:
    """Boxes of one line: each edge within 2 px or a tenth of the line's height (a map
    pixel more or less at the end of a detection moves the quad that much)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return a == b
    slack = max(2.0, 0.1 * (a.get("ymax", 0) - a.get("ymin", 0)))
    return all(abs(a.get(k, 0) - b.get(k, 0)) <= slack for k in ("xmin", "xmax", "ymin", "ymax"))


def compare_reads(label: str, a_path: Path, b_path: Path, cmp: Comparison) -> None:
    a = {r.get("input"): r for r in load_jsonl(a_path)}
    b = {r.get("input"): r for r in load_jsonl(b_path)}
    names = cmp.names
    print(f"\nvin-agent read, {label}: {len(a)} results on {names[0]}, {len(b)} on {names[1]}")
    head = f"{'vin/success':<24} {'conf':>6} {'box':<24} {'misses':>6}"
    print(f"{'':<16} | {names[0]:<63} | {names[1]:<63} |")
    print(f"{'input':<16} | {head} | {head} | same")
    for name in dict.fromkeys([*a, *b]):
        ra, rb = a.get(name), b.get(name)
        if ra is None or rb is None:
            cmp.problems.append(f"read {name}: missing on {names[0] if ra is None else names[1]}")
            same = "NO"
        else:
            before, problems = len(cmp.allowed), len(cmp.problems)
            same = (
                "yes"
                if cmp.check(
                    f"read {name}",
                    {k: v for k, v in ra.items() if k not in READ_IGNORED},
                    {k: v for k, v in rb.items() if k not in READ_IGNORED},
                )
                else "NO"
            )
            if same == "NO" and not cmp.strict and on_the_edge(ra, rb, cmp):
                edge = cmp.problems[problems:]
                del cmp.problems[problems:]
                cmp.allowed += [f"{line} (on the edge)" for line in edge]
                cmp.marginal += 1
                same = "edge"
            elif same == "yes" and len(cmp.allowed) > before:
                same = "~"
        print(f"{Path(str(name)).name:<16} | {cell(ra)} | {cell(rb)} | {same}")


def strip_eval(report: Any) -> Any:
    if isinstance(report, dict):
        return {
            k: strip_eval(v)
            for k, v in report.items()
            if not k.startswith("latency") and k != "dataset"
        }
    return report


def compare_eval(a_path: Path, b_path: Path, cmp: Comparison) -> None:
    a = json.loads(a_path.read_text(encoding="utf-8"))
    b = json.loads(b_path.read_text(encoding="utf-8"))
    print("\nvin-agent eval (latencies ignored):")
    keys = ["n", "exact", "wrong", "no_read", "char_accuracy", "ece", "errors"]
    print(f"{'':<10} " + " ".join(f"{k:>13}" for k in keys))
    for name, rep in zip(cmp.names, (a, b), strict=True):
        print(f"{name:<10} " + " ".join(f"{short(rep.get(k), 13):>13}" for k in keys))
    problems = len(cmp.problems)
    same = cmp.check("eval", strip_eval(a), strip_eval(b))
    n = a.get("n") or 0
    bound = cmp.marginal / n if n else 0.0
    if not same and not cmp.strict and cmp.marginal:
        # Reads on the edge (above) move the rates by at most one input each.
        rates = ("exact", "wrong", "no_read", "char_accuracy")
        within = all(abs(float(a.get(k, 0)) - float(b.get(k, 0))) <= bound + 1e-9 for k in rates)
        top = {k: v for k, v in strip_eval(a).items() if k not in (*rates, "ece", "by_kind")}
        top_b = {k: v for k, v in strip_eval(b).items() if k not in (*rates, "ece", "by_kind")}
        if within and top == top_b:
            edge = cmp.problems[problems:]
            del cmp.problems[problems:]
            cmp.allowed += [f"{line} (within {cmp.marginal} input(s) on the edge)" for line in edge]
            same = True
    print("same" if same else "DIFFERENT")


def events(path: Path) -> list[dict[str, Any]]:
    out = []
    for msg in load_jsonl(path):
        topic = str(msg.get("topic", ""))
        if not topic.endswith("/events"):
            continue  # status and stats lines carry clock times and host data
        payload = {k: v for k, v in msg.get("payload", {}).items() if k not in RUN_IGNORED}
        out.append({"topic": "/".join(topic.split("/")[2:]), **payload})
    return out


def event_cell(event: dict[str, Any]) -> str:
    conf = event.get("confidence")
    conf_text = f"{conf:.4f}" if isinstance(conf, int | float) else "-"
    box = box_text(event.get("box"))
    return f"{event.get('type', '-'):<6} {event.get('vin') or '-':<17} {conf_text:>6} {box:<19}"


def compare_run(a_path: Path, b_path: Path, cmp: Comparison) -> None:
    a, b = events(a_path), events(b_path)
    names = cmp.names
    print(f"\nvin-agent run on the clip: {len(a)} events on {names[0]}, {len(b)} on {names[1]}")
    for i in range(max(len(a), len(b))):
        ea = a[i] if i < len(a) else {}
        eb = b[i] if i < len(b) else {}
        print(f"  {names[0]}: {event_cell(ea)}  {names[1]}: {event_cell(eb)}")
    # The published visits (success true) must agree exactly, in order. Miss visits
    # (success false: a VIN-like line never read) may differ: they are made of weak
    # reads and misses, which the platforms' int8 rounding moves across thresholds
    # (see the module docstring); the fusion trace diff in arm64-check shows where.
    pub_a = [e for e in a if e.get("success")]
    pub_b = [e for e in b if e.get("success")]
    cmp.check(
        "run published events",
        [[e.get(k) for k in RUN_STRICT] for e in pub_a],
        [[e.get(k) for k in RUN_STRICT] for e in pub_b],
    )
    miss_a = [e.get("box") for e in a if not e.get("success")]
    miss_b = [e.get("box") for e in b if not e.get("success")]
    if cmp.strict:
        cmp.check("run miss visits", miss_a, miss_b)
    elif miss_a != miss_b:
        cmp.allowed.append(
            f"  run miss visits (weak reads, on the edge): {names[0]}={miss_a} {names[1]}={miss_b}"
        )
    if len(a) == len(b):
        bad, ok = cmp.diff(a, b)
        cmp.allowed += [
            cmp.line("run events", w, a, b)
            for w in bad + ok
            if w.split(" (")[0].rsplit(".", 1)[-1] not in RUN_STRICT
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs=2, default=["a", "b"], metavar=("A", "B"))
    parser.add_argument("--read", nargs=3, action="append", default=[], metavar=("LABEL", "A", "B"))
    parser.add_argument("--eval", nargs=2, type=Path, metavar=("A", "B"))
    parser.add_argument("--run", nargs=2, type=Path, metavar=("A", "B"))
    parser.add_argument("--tolerance", type=float, default=0.01, help="for confidences")
    parser.add_argument(
        "--firm", type=float, default=0.9, help="published reads at or above must agree"
    )
    parser.add_argument("--strict", action="store_true", help="every field exactly equal")
    args = parser.parse_args(argv)
    cmp = Comparison((args.names[0], args.names[1]), args.tolerance, args.strict, args.firm)
    try:
        for label, a, b in args.read:
            compare_reads(label, Path(a), Path(b), cmp)
        if args.eval:
            compare_eval(*args.eval, cmp)
        if args.run:
            compare_run(*args.run, cmp)
    except (OSError, ValueError) as exc:
        print(f"compare_reads: {exc}", file=sys.stderr)
        return 2
    if cmp.allowed:
        print(
            f"\n{len(cmp.allowed)} allowed difference(s) (confidences within {cmp.tolerance}, "
            "runner-up candidates, reads below firm confidence, the run's boxes and "
            "confidences): the int8 kernels round differently on the two architectures"
        )
        for line in cmp.allowed[:15]:
            print(f"  {line}")
        if len(cmp.allowed) > 15:
            print(f"  ... and {len(cmp.allowed) - 15} more")
    if cmp.problems:
        print(f"\n{len(cmp.problems)} difference(s) between {args.names[0]} and {args.names[1]}:")
        for line in cmp.problems:
            print(f"  {line}")
        return 1
    print(f"\nno differences between {args.names[0]} and {args.names[1]} beyond those allowed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
