#!/usr/bin/env bash
# The one device check for GPU decode and NVDEC, run from the repo root on a bare GPU machine
# (Python 3.12 with torch, Triton, CuPy, pytest, hypothesis; no Rust, no PyAV, no network) with
# .carry/ from benches/gpu_prepare.sh carried along. Under 8 minutes on an H200: every step has
# its own time limit (75 + 150 + 45 + 180 s), so one hang costs only that step. Writes under $OUT:
#
#   gpu_check.log   all output      pytest.log     the gpu-marked tests and the Triton tests on CUDA
#   nvdec.json      NVDEC caps, bit-exact checks, throughput (benches/nvdec_check.py)
#   gpu_decode.json entropy decode GB/s per codec, copy ceilings, nvCOMP ANS, bf16 model load
#
# Without a GPU (or without .carry/) it runs what it can and says what it skipped: the CPU-side
# tests of the NVDEC glue and the benchmark under Triton's interpreter on a few KiB.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check_out}
SITE=${GPU_CHECK_SITE:-/tmp/site}
CARRY=.carry
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%T)"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
"$PYTHON" -c 'import sys, torch, triton; print(sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__, "cuda", torch.cuda.is_available())'
[ -f "$CARRY/BUILD" ] && echo "carried files built from: $(tr '\n' ' ' < "$CARRY/BUILD")"

step "install the carried packages into $SITE and tensorpress._core into python/tensorpress"
if [ -f "$CARRY/site.tar.xz" ]; then
    "$PYTHON" - "$CARRY" "$SITE" <<'EOF'
import glob, sys, tarfile, zipfile
from pathlib import Path
carry, site = Path(sys.argv[1]), Path(sys.argv[2])
site.mkdir(parents=True, exist_ok=True)
with tarfile.open(carry / "site.tar.xz") as tar:
    tar.extractall(site, filter="tar")
(whl,) = glob.glob(str(carry / "tensorpress-*.whl"))
with zipfile.ZipFile(whl) as z:  # the checkout's Python sources, the wheel's compiled core
    (core,) = [n for n in z.namelist() if n.startswith("tensorpress/_core") and n.endswith(".so")]
    Path("python/tensorpress", Path(core).name).write_bytes(z.read(core))
print("installed:", sorted(p.name for p in site.iterdir()), "+", Path(core).name)
EOF
else
    echo "no $CARRY/site.tar.xz: run benches/gpu_prepare.sh first and carry .carry (PyNvVideoCodec, nvCOMP skipped)"
fi
export PYTHONPATH=$PWD/python:$SITE
if [ -d "$SITE/nvidia" ] && ! "$PYTHON" -c \
    'import importlib.util as u, sys; sys.exit(u.find_spec("nvidia.nvcomp") is None)' 2>/dev/null; then
    # the image's own nvidia/ is a regular package that hides ours: make ours extend it
    echo '__path__ = __import__("pkgutil").extend_path(__path__, __name__)' > "$SITE/nvidia/__init__.py"
fi
"$PYTHON" -c 'from nvidia import nvcomp; print("nvCOMP", nvcomp.__version__)' 2>&1 | tail -1
echo "NVDEC/NVENC driver libraries (PyNvVideoCodec dlopens them):"
ldconfig -p 2>/dev/null | grep -E "libnvcuvid|libnvidia-encode" || echo "  none in the loader cache"
"$PYTHON" -c 'import tensorpress, tensorpress._core as c; print("tensorpress", tensorpress.__version__, "core", c.__file__)' || exit 1
CUDA=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))')
STREAMS=$CARRY/nvdec_streams.npz
[ -f "$STREAMS" ] && export TENSORPRESS_NVDEC_STREAMS=$PWD/$STREAMS

step "NVDEC: driver caps, bit-exact decode of CPU-made streams, throughput"
if [ -f "$STREAMS" ]; then
    timeout 75 "$PYTHON" benches/nvdec_check.py "$STREAMS" --json "$OUT/nvdec.json"
    echo "nvdec_check exit $?"
else
    echo "skipped: no $STREAMS"
fi

step "pytest: gpu-marked tests, the NVDEC glue, and the Triton kernels (on CUDA when there is one)"
timeout 150 "$PYTHON" -m pytest -q -p no:cacheprovider -rs --timeout 120 \
    tests/test_gpu_decode.py tests/test_nvcodec_backend.py 2>&1 | tee "$OUT/pytest.log" | tail -25
# every other file with gpu-marked tests (those that need PyAV or a model package skip cleanly)
others=$(grep -l "mark.gpu" tests/test_*.py | grep -v -e test_gpu_decode.py -e test_nvcodec_backend.py)
timeout 45 "$PYTHON" -m pytest -q -p no:cacheprovider -rs --timeout 40 -m gpu \
    --continue-on-collection-errors $others 2>&1 | tee -a "$OUT/pytest.log" | tail -15

step "decode throughput and model load"
if [ "$CUDA" = 1 ]; then
    model=()
    [ -f "$CARRY/smollm2_layers.tpz" ] && model=(--model "$CARRY/smollm2_layers.tpz")
    timeout 180 "$PYTHON" benches/gpu_decode.py --mib 256 ${model[@]+"${model[@]}"} --json "$OUT/gpu_decode.json"
    echo "gpu_decode exit $?"
else
    echo "no CUDA device: the benchmark's code path only, interpreted on the CPU, on 32 KiB"
    TRITON_INTERPRET=1 timeout 120 "$PYTHON" benches/gpu_decode.py --device cpu --mib 0.03125 \
        --codecs huffman --lane-groups 32 --repeat 1 --json "$OUT/gpu_decode.json"
    echo "gpu_decode exit $?"
fi
step "done in ${SECONDS} s"
