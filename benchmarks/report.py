"""The printed summary of a benchmark run (the JSON file holds everything)."""

from __future__ import annotations

from typing import Any


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(header: list[str], rows: list[list[Any]], digits: int = 1) -> str:
    cells = [header] + [[_fmt(c, digits) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: list[str]) -> str:
        first = r[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _lat(s: dict[str, Any] | None) -> list[Any]:
    s = s or {}
    return [s.get("median_ms"), s.get("p95_ms"), s.get("n")]


def render(res: dict[str, Any]) -> str:
    out: list[str] = []
    env = res.get("environment", {})
    pk = env.get("packages", {})
    out.append("== vin-agent benchmark " + ("(quick) " if res["meta"]["quick"] else "") + "==")
    out.append(
        f"CPU {env.get('cpu_model')} | {env.get('cpu_count')} cores | Python {env.get('python')}"
        f" | numpy {pk.get('numpy')} | opencv {pk.get('cv2')} | ai-edge-litert "
        f"{pk.get('ai-edge-litert')} | onnxruntime {pk.get('onnxruntime')}"
    )
    out.append(f"{env.get('tesseract')} | commit {env.get('git_commit')}")
    meta = res["meta"]
    if env.get("training_running_at_start") or meta.get("training_running_at_end"):
        out.append("WARNING: training jobs were running during the run; timings are skewed")
    out.append(
        f"load average at start {env.get('loadavg_at_start')}, at end {meta.get('loadavg_at_end')}"
    )
    models = res.get("models") or {}
    sizes = [
        f"{k} {v['bytes'] / 1024:.0f} KiB (v{v['version']})"
        for k, v in models.items()
        if isinstance(v, dict) and v.get("bytes")
    ]
    if sizes:
        out.append("models: " + ", ".join(sizes))

    st = res.get("stages")
    if st and "stages" in st:
        if not st.get("detector", True):
            out.append("\nNO DETECTOR: detector stages skipped, crops cut at the true quads")
        out.append(
            f"\n-- 1. stages: {st['frames']} frames {st['frame_size']}, 1 VIN, "
            f"{st['interpreter_threads']} thread, {st['timed_passes']} warm passes "
            f"(detections/frame {st['mean_detections_per_frame']}, "
            f"crops from truth {st['crops_from_truth']})"
        )
        rows = [[v["label"], *_lat(v)] for v in st["stages"].values()]
        for key in ("publish_paho", "publish_agent"):
            pub = res.get(key)
            if pub and "median_ms" in pub:
                client = "paho" if key == "publish_paho" else "MqttPublisher"
                rows.append([f"publish QoS1 -> PUBACK ({client})", *_lat(pub)])
            elif pub and "error" in pub:
                rows.append([f"publish ({key}): {pub['error'][:60]}", None, None, None])
        out.append(table(["stage", "median ms", "p95 ms", "n"], rows, 2))

    e2e = res.get("end_to_end")
    if e2e:
        out.append("\n-- 2. end to end (decode_image + Reader.read_frame), 1 VIN per frame")
        rows = []
        for key, r in e2e.items():
            if "median_ms" in r:
                size, threads, *turn = key.split("@")
                rows.append(
                    [size + "".join(f", {t}" for t in turn), threads, r["fps"], r["median_ms"],
                     r["p95_ms"], r["true_vins_read_fraction"]]
                )  # fmt: skip
        out.append(table(["frame", "threads", "fps", "median ms", "p95 ms", "VIN read"], rows))

    vs = res.get("scaling_vins")
    if vs:
        out.append("\n-- 3a. cost vs VINs per 1280x720 frame (1 thread)")
        rows = [
            [k, r["median_ms"], r["p95_ms"], r["fps"], r["mean_reads_per_frame"]]
            for k, r in vs.items()
            if "median_ms" in r
        ]
        out.append(table(["VINs", "median ms", "p95 ms", "fps", "reads/frame"], rows))
    cm = res.get("clip_memory")
    if cm and cm.get("runs"):
        out.append(f"\n-- 3b. vin-agent run on replay clips ({cm['method']})")
        rows = [
            [r["vehicles"], r["frames"], r["peak_rss_mb"], r["wall_s"], r["new_events"],
             r["vins_published_correctly"], r["exit_status"]]
            for r in cm["runs"]
        ]  # fmt: skip
        out.append(
            table(["vehicles", "frames", "peak RSS MB", "wall s", "new", "correct", "exit"], rows)
        )
        out.append(f"RSS growth {cm['rss_growth_mb']} MB")

    su = res.get("startup")
    if su and "python_baseline" in su:
        out.append(f"\n-- 4. start-up (fresh processes, median of {su['runs']})")
        rows = [
            ["python -c pass", *_lat(su["python_baseline"])],
            ["python -c 'import agent'", *_lat(su["import_agent_process"])],
            ["import agent.reader + load process", *_lat(su["reader_process"])],
            ["  in-process imports", *_lat(su["reader_imports_in_process"])],
            [f"  in-process {su.get('loaded')}", *_lat(su["reader_model_load_in_process"])],
        ]
        cs = res.get("cold_start")
        if cs:
            label = "vin-agent run -> first event line"
            if cs.get("no_event"):
                label += f" ({cs['no_event']} run(s) without an event)"
            rows.append([label, *_lat(cs)])
        out.append(table(["", "median ms", "p95 ms", "n"], rows))

    pe = res.get("peers")
    if pe and "readers" in pe:
        out.append(
            f"\n-- 5. peers: {pe['images']} images (seed {pe['seed']}), JPEG q90, 1 thread each"
        )
        rows = []
        for name, r in pe["readers"].items():
            lat = r["latency"]
            rows.append(
                [name, r["exact"], r["wrong"], r["no_read"], r["exact_rate"],
                 r["exact_rate_small_lines"], r["truth_among_candidates"],
                 lat.get("median_ms"), lat.get("p95_ms")]
            )  # fmt: skip
        hdr = ["reader", "exact", "wrong", "no read", "exact %", "small %", "truth seen"]
        out.append(table([*hdr, "median ms", "p95 ms"], rows, 3))
        for name, r in pe.get("ratios", {}).items():
            out.append(
                f"{name} / ours: time x{r['median_time_ratio']} (median), "
                f"x{r['p95_time_ratio']} (p95), x{r['mean_time_ratio']} (mean); exact "
                f"{r['exact_rate'][name]} vs {r['exact_rate']['ours']}"
            )
        for name, cfg in pe.get("config", {}).items():
            if name == "ours":
                models = cfg.get("models") or {}
                cfg = {k: f"v{v['version']} {v['sha256'][:12]}" for k, v in models.items()}
            out.append(f"  {name}: {cfg}")
        tune = pe.get("psm_tuning")
        if tune:
            out.append(f"  tesseract psm tuning ({tune['tuning_images']} images): {tune['scores']}")
        if pe.get("tesseract_process_overhead"):
            ovh = pe["tesseract_process_overhead"]
            out.append(f"  tesseract process start on a blank image: {ovh.get('median_ms')} ms")
    errors = res.get("errors")
    if errors:
        out.append("\nsections that failed:")
        out.extend(f"  {k}: {v}" for k, v in errors.items())
    out.append(f"\ntotal {res['meta'].get('duration_s')} s")
    return "\n".join(out)
