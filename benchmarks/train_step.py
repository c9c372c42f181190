"""Where a full-resolution training step goes on this CPU: VGG16 FCN-8s (or any config's model) at batch 1,
forward and backward per encoder block and for the decoder, the loss, and one augmented sample from the data
pipeline, for a few variants (fp32 / bf16 autocast, frozen blocks, channels_last).

    python benchmarks/train_step.py [--config configs/kitti-fcn8s-vgg16-stage4.yaml] [--reps 2]

Prints a table (median seconds of --reps repetitions after a warm-up) and writes benchmarks/results/train_step.json.
Run it on an otherwise idle machine; it takes a few minutes for VGG16 at 384x1248.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from roadseg.benchmark import timed
    from roadseg.config import load_config
    from roadseg.data import TrainTransform, build_dataset
    from roadseg.device import cpu_name, cpu_supports_bf16, key_flags
    from roadseg.engine.train import dice_loss, loss_fn
    from roadseg.models import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "kitti-fcn8s-vgg16-stage4.yaml"))
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_step.json"))
    a = p.parse_args(argv)

    cfg = load_config(a.config, ["train.init=null", "model.weights=none"])
    dc = cfg.data
    h, w = dc.crop or (384, 1248)
    tf = TrainTransform(dc.scale, dc.crop, tuple(dc.scale_jitter), dc.hflip, dc.color_jitter, 0)
    ds = build_dataset(dc, "train", transform=tf, preload=True)
    data_s = float(np.median(timed(lambda: ds[0], 10)))

    torch.manual_seed(0)
    model = build_model(cfg, pretrained=False).train()
    enc = model.encoder
    x0 = torch.rand(1, 3, h, w) * 255
    y = (torch.rand(1, h, w) > 0.5).long()
    variants = [("fp32", None, 0, False)]
    if cpu_supports_bf16():
        variants += [("bf16", torch.bfloat16, 0, False), ("bf16", torch.bfloat16, 3, False),
                     ("bf16", torch.bfloat16, 3, True)]

    def measure(prec, dtype, freeze, cl) -> dict:
        for prm in model.parameters():
            prm.requires_grad_(True)
        model.freeze_blocks(freeze)
        fmt = torch.channels_last if cl else torch.contiguous_format
        model.to(memory_format=fmt)
        ctx = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype else (lambda: torch.autocast("cpu", enabled=False))

        def step():
            with ctx():
                out = model(x0.contiguous(memory_format=fmt))
            loss = loss_fn(out, y) + (dice_loss(out, y) if cfg.train.loss == "ce_dice" else 0)
            loss.backward()
            model.zero_grad(set_to_none=True)

        step()  # warm-up
        total = float(np.median(timed(step, a.reps)))
        # per part: each encoder block (its convolutions and pool) and the decoder, forward and backward apart
        parts = {}
        x = model.normalize(x0).contiguous(memory_format=fmt)
        inputs = [x]
        with torch.no_grad(), ctx():
            for i in range(5):
                inputs.append(enc.block(i, inputs[-1]))
        for i in range(5):
            xi = inputs[i].detach().requires_grad_(i > freeze)  # an input gradient only where a block below trains

            def fwd(i=i, xi=xi):
                with ctx():
                    return enc.block(i, xi)

            f = float(np.median(timed(fwd, a.reps)))
            out = fwd()
            g = torch.ones_like(out)
            frozen = i < freeze
            b = 0.0 if frozen else float(np.median(timed(lambda out=out, g=g: out.backward(g, retain_graph=True), a.reps)))
            parts[f"block{i + 1}"] = {"forward_s": f, "backward_s": b, "frozen": frozen}
        feats = {8: inputs[3].detach(), 16: inputs[4].detach(), 32: inputs[5].detach()}

        def dec():
            with ctx():
                f = feats[32]
                if model.fc:
                    f = torch.relu(model.fc7(torch.relu(model.fc6(f))))
                s = model.upscore2(model.score_fr(f))
                for k, st in enumerate(model.skips):
                    s = s + getattr(model, f"score_{model.names[st]}")(feats[st])
                    last = k == len(model.skips) - 1
                    s = getattr(model, f"upscore{st}" if last else f"upscore_{model.names[st]}")(s)
                return s

        f = float(np.median(timed(dec, a.reps)))
        out = dec()
        b = float(np.median(timed(lambda: loss_fn(out, y).backward(retain_graph=True), a.reps)))
        parts["decoder + loss"] = {"forward_s": f, "backward_s": b, "frozen": False}
        name = f"{prec}, freeze {freeze}" + (", channels_last" if cl else "")
        print(f"{name}: {total:.2f} s per {h}x{w} image", flush=True)
        return {"variant": name, "step_s": total, "parts": parts}

    rows = [measure(*v) for v in variants]
    meta = {"cpu": cpu_name(), "cpu_flags": key_flags(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "config": a.config, "input": [h, w], "data_sample_s": data_s, "date": time.strftime("%Y-%m-%dT%H:%M")}
    Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    names = list(rows[0]["parts"])
    print(f"\n{meta['date']}, {meta['cpu']} ({meta['cpu_flags']}), {meta['threads']} threads, torch {meta['torch']}; "
          f"one {h}x{w} image, batch 1; seconds (forward / backward); data: {data_s * 1000:.0f} ms per augmented sample\n")
    print("| variant | step | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for r in rows:
        cells = [f"{r['parts'][n]['forward_s']:.2f} / " + ("frozen" if r["parts"][n]["frozen"] else
                                                          f"{r['parts'][n]['backward_s']:.2f}") for n in names]
        print(f"| {r['variant']} | {r['step_s']:.2f} | " + " | ".join(cells) + " |")
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
