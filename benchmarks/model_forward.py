"""Parameter count and forward time of the default FCN-8s (fc width 4096) and the shipped recipe's (fc width 1024)
at KITTI's 375x1242, batch 1, fp32 eager, on this machine.

    python benchmarks/model_forward.py        -> benchmarks/results/model_forward.json
"""

import datetime
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from roadseg.config import Config  # noqa: E402
from roadseg.device import cpu_cores  # noqa: E402
from roadseg.models import build_model  # noqa: E402


def main() -> int:
    rows = []
    for width in (4096, 1024):
        cfg = Config()
        cfg.model.fc_width = width
        m = build_model(cfg, pretrained=False).eval()
        x = torch.rand(1, 3, 375, 1242) * 255
        with torch.no_grad():
            m(x)
            ts = []
            for _ in range(3):
                t = time.perf_counter()
                m(x)
                ts.append(time.perf_counter() - t)
        rows.append({"fc_width": width, "params": sum(p.numel() for p in m.parameters()),
                     "forward_s_375x1242": min(ts), "threads": torch.get_num_threads()})
        print(f"fc width {width}: {rows[-1]['params'] / 1e6:.2f} M parameters, forward {min(ts):.2f} s at 375x1242 "
              f"(fp32, batch 1, {torch.get_num_threads()} threads)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_forward.json").write_text(json.dumps({"date": str(datetime.date.today()), "cpus": cpu_cores(),
                                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
