"""Where the time of one end-to-end frame goes (ONNX Runtime backend): input preparation, padding, the session,
post-processing (probabilities at full resolution), the overlay and the PNG writes of `roadseg predict`.

    python benchmarks/predict_breakdown.py [--model kitti-lite0] [--precision int8] [--frame PATH] [--profile]

Prints a table (median ms of 20 repetitions, batch 1) and writes benchmarks/results/predict_breakdown.json.
Run it on an otherwise idle machine.
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def med(fn, reps=20):
    from roadseg.benchmark import timed

    fn()  # warm-up
    return 1000 * float(np.median(timed(fn, reps)))


def profile_ops(onnx_path, input_name, feed, runs: int = 20) -> tuple[dict, dict]:
    """Milliseconds per ONNX op type and per layer group (the encoder's stem and blocks, the decoder's layers) in
    one run of the session (ONNX Runtime's profiler, 2 threads; medians over `runs` runs)."""
    import collections
    import os
    import re

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.enable_profiling, so.intra_op_num_threads = True, 2
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    for _ in range(runs + 3):
        sess.run(None, {input_name: feed})
    trace = sess.end_profiling()
    per_op = collections.defaultdict(lambda: collections.defaultdict(float))  # run index -> op -> us
    per_layer = collections.defaultdict(lambda: collections.defaultdict(float))
    runs_seen = -1
    for e in json.load(open(trace)):
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs_seen += 1
        elif e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[runs_seen + 1][e["args"]["op_name"]] += e["dur"]
            m = re.search(r"/(?:encoder/)?(_blocks\.\d+|_conv_stem|_conv_head|[a-z_0-9]+)/", e["name"])
            per_layer[runs_seen + 1][m.group(1) if m else "(layout and glue)"] += e["dur"]
    os.remove(trace)

    def medians(table):
        kept = [table[i] for i in sorted(table)][3:]  # drop the warm-up runs
        keys = {k for r in kept for k in r}
        med = {k: float(np.median([r.get(k, 0.0) for r in kept])) / 1000 for k in keys}
        return dict(sorted(med.items(), key=lambda kv: -kv[1]))

    return medians(per_op), medians(per_layer)


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from PIL import Image

    from roadseg.data import read_image
    from roadseg.data.io import atomic_write
    from roadseg.device import cpu_name, key_flags
    from roadseg.inference.predictor import load
    from roadseg.inference.processing import postprocess, preprocess
    from roadseg.inference.result import Result

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="kitti-lite0")
    p.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    p.add_argument("--frame", default=str(ROOT.parent / "shared/data/kitti_road/training/image_2/um_000000.jpg"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--profile", action="store_true", help="also ONNX Runtime's own profile: network time per op type")
    a = p.parse_args(argv)
    pred = load(a.model, backend="onnxruntime", precision=a.precision)
    rt, prec, onnx = pred.runtime, pred.precision, pred.runtime.graph.path
    frame = read_image(a.frame)[:375, :1242]
    h, w = frame.shape[:2]
    x = preprocess([frame], pred.settings, rt.input_kind)
    feed = rt.feed(x)
    out = rt(x)
    res = pred.predict(frame)
    stages = {
        "decode JPEG/PNG (read_image)": med(lambda: read_image(a.frame)),
        f"preprocess (to the network's {rt.input_kind} input)": med(lambda: preprocess([frame], pred.settings, rt.input_kind)),
        "pad to a multiple of 32": med(lambda: rt.feed(x)),
        "network (session.run)": med(lambda: rt.session.run(None, feed)),
        f"probabilities (from the graph's {rt.output_kind}, full size)": med(lambda: postprocess(out, (h, w), False, rt.output_kind)),
        "probabilities() end to end": med(lambda: pred.probabilities([frame])),
        "overlay": med(lambda: res.overlay(frame)),
        "mask + 8-bit probability arrays": med(lambda: Result(res.prob, pred.threshold).mask),
        "PNG encode of overlay (level 1, as predict writes it)": med(
            lambda: Image.fromarray(res.overlay(frame)).save(io.BytesIO(), format="PNG", compress_level=1)),
    }
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "flags": key_flags(), "model": a.model,
            "precision": prec, "frame": f"{h}x{w}", "network_input": list(feed[rt.input].shape[1:3] if rt.input_kind == "uint8" else feed[rt.input].shape[-2:]),
            "graph": {"input": rt.input_kind, "output": rt.output_kind}}
    print(f"{meta['date']}, {meta['cpu']} ({meta['flags']}), {a.model} ONNX Runtime {prec}, frame {h}x{w}")
    print("| stage | ms |\n|---|---|")
    for k, v in stages.items():
        print(f"| {k} | {v:.2f} |")
    ops, layers = profile_ops(onnx, rt.input, feed[rt.input]) if a.profile else ({}, {})
    if ops:
        print(f"\nONNX Runtime profile of the network ({sum(ops.values()):.1f} ms a run; per op type, median of 20 runs "
              "summed over the nodes)\n| op | ms |\n|---|---|")
        for k, v in ops.items():
            print(f"| {k} | {v:.2f} |")
        print("\nper layer group\n| layer | ms |\n|---|---|")
        for k, v in layers.items():
            print(f"| {k} | {v:.2f} |")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    text = json.dumps({"meta": meta, "ms": stages, "ops_ms": ops, "layers_ms": layers}, indent=1)
    atomic_write(Path(a.out) / "predict_breakdown.json", lambda f: f.write(text), text=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
