#!/usr/bin/env bash
# The GPU checks as one short run, for a session lent an NVIDIA machine (the device tool's `run`), results in $OUT:
# the GPU's name, the gpu-marked tests, and `roadseg benchmark --device cuda` on kitti-lite0 at batch 1 and 8.
#
# Here, first: `bash scripts/gpu_check.sh --stage` copies the 30 validation frames (and um_000000, which the tests
# read) with their masks and calibration into .gpu/data (git-ignored), about 7 MB. What travels is limited to 64 MiB:
# move models/kitti-fcn8s-vgg16.pt (85 MB) out of the tree for the call and back after. Then, with the device tool:
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=540)
# That machine's image holds torch, onnx and onnxruntime (no internet there); roadseg installs without its deps.
# TensorRT is not in that image, and its libraries cannot be carried (see the TensorRT notes in docs/optimization.md):
# its rows then say what is missing, and the torch CUDA rows and tests still run.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--stage" ]; then
  src=${ROADSEG_DATA:-../shared/data}/kitti_road/training
  dst=.gpu/data/kitti_road/training
  mkdir -p "$dst/image_2" "$dst/gt_image_2" "$dst/calib"
  for cat in um umm uu; do
    names=$(ls "$src/image_2" | grep "^${cat}_" | sort | tail -10)
    [ "$cat" = um ] && names="$names um_000000.jpg"
    for f in $names; do
      n=${f%.*}
      cp "$src/image_2/$f" "$dst/image_2/"
      cp "$src/gt_image_2/${cat}_road_${n#*_}.png" "$dst/gt_image_2/"
      [ -f "$src/calib/$n.txt" ] && cp "$src/calib/$n.txt" "$dst/calib/"
    done
  done
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  du -sh .gpu
  exit 0
fi
OUT=${OUT:-/tmp/roadseg-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ROADSEG_DATA=$PWD/.gpu/data ROADSEG_CACHE=/tmp/roadseg-cache
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 || { tail -5 "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/pytest-gpu.txt" | tail -15
timeout 280 python3 -m roadseg benchmark --device cuda --model kitti-lite0 --batch-sizes 1,8 \
  --data "$ROADSEG_DATA/kitti_road" --out "$OUT" 2>&1 | tee "$OUT/benchmark.txt" | tail -20
