#!/usr/bin/env bash
# Builds, here (no GPU needed), everything benches/gpu_check.sh needs on a GPU machine that has
# Python 3.12, torch, Triton and CuPy but no Rust, no PyAV and no network, into .carry/:
#
#   site.tar.xz            PyNvVideoCodec 2.2.4 (cp312) and nvCOMP 6 for CUDA 13 (the device's
#                          torch is cu130), unpacked from their wheels and trimmed (no FFmpeg
#                          source tarball, samples, NVENC-12.1 module, other CPython builds)
#   tensorpress-*.whl      the abi3 wheel (maturin build --release): gpu_check.sh takes its _core
#   nvdec_streams.npz      CPU-encoded video streams + FFmpeg's decode (benches/nvdec_streams.py)
#   smollm2_layers.tpz     bf16 SmolLM2-135M layers for the model-load timing
#   BUILD                  the commit these were built from
#
# .carry/ must be git-ignored in the checkout the device tool sends (this repo's .gitignore
# lists it). Everything that travels (tracked files + .carry/) must stay under 64 MiB: the
# script adds it up and fails above 60 MiB. At the end it prints the device call to make.
#
#   PYTHON=.venv/bin/python benches/gpu_prepare.sh          # from the repo root
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
MATURIN=${MATURIN:-maturin}
LAYERS=${LAYERS:-4}
CARRY=.carry
CACHE=${GPU_PREPARE_CACHE:-${TMPDIR:-/tmp}/tensorpress-gpu-prepare}
export HF_HUB_OFFLINE=1 PYTHONPATH=$PWD/python

git check-ignore -q "$CARRY/" || { echo "$CARRY/ is not git-ignored here: it would travel twice" >&2; exit 1; }
mkdir -p "$CARRY" "$CACHE"

echo "== tensorpress abi3 wheel"
rm -f "$CARRY"/tensorpress-*.whl
nice -n 5 "$MATURIN" build --release --quiet -o "$CARRY"

echo "== PyNvVideoCodec and nvCOMP wheels (CPython 3.12, manylinux x86-64)"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CACHE" \
    PyNvVideoCodec==2.2.4 nvidia-nvcomp-cu13==6.0.0.12 nvidia-libnvcomp-cu13==6.0.0.12

echo "== site.tar.xz"
"$PYTHON" - "$CACHE" "$CARRY/site.tar.xz" <<'EOF'
import fnmatch, io, sys, tarfile, zipfile
from pathlib import Path
cache, out = Path(sys.argv[1]), sys.argv[2]
wheels = {
    "pynvvideocodec-2.2.4-cp312-*.whl": ["*.data/*", "samples/*", "benchmarks/*", "*PyNvVideoCodec_121.*"],
    "nvidia_nvcomp_cu13-6.0.0.12-*.whl": ["*nvcomp_impl.cpython-3[!1]*", "*nvcomp_impl.cpython-31[!2]*"],
    "nvidia_libnvcomp_cu13-6.0.0.12-*.whl": ["*/bin/*", "*/include/*"],
}
with tarfile.open(out, "w:xz", preset=6) as tar:
    for pattern, drop in wheels.items():
        (whl,) = cache.glob(pattern)
        with zipfile.ZipFile(whl) as z:
            for info in z.infolist():
                if info.is_dir() or any(fnmatch.fnmatch(info.filename, d) for d in drop):
                    continue
                data = z.read(info)
                ti = tarfile.TarInfo(info.filename)
                ti.size, ti.mode = len(data), (info.external_attr >> 16) & 0o777 or 0o644
                tar.addfile(ti, io.BytesIO(data))
print(f"{out}: {Path(out).stat().st_size / 2**20:.1f} MiB")
EOF

echo "== nvdec_streams.npz (PyAV encode, FFmpeg reference)"
nice -n 5 "$PYTHON" benches/nvdec_streams.py "$CARRY/nvdec_streams.npz" | tail -1

echo "== smollm2_layers.tpz ($LAYERS layers)"
nice -n 5 "$PYTHON" benches/gpu_decode.py --make-model "$CARRY/smollm2_layers.tpz" --layers "$LAYERS"

git rev-parse HEAD > "$CARRY/BUILD"
git log -1 --format='rust %H' -- rust >> "$CARRY/BUILD"

echo "== what travels"
tracked=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}')
carried=$(du -sb "$CARRY" | cut -f1)
ls -l "$CARRY"
total=$((tracked + carried))
awk -v a="$tracked" -v b="$carried" \
    'BEGIN {m = 1048576; printf "checkout %.1f MiB + .carry %.1f MiB = %.1f MiB (limit 64 MiB)\n", a/m, b/m, (a+b)/m}'
if (( total > 60 * 1048576 )); then
    echo "too large for the device tool: carry less (LAYERS=$LAYERS)" >&2
    exit 1
fi

cat <<EOF

Ready. On a session whose device status says a GPU is lent, make ONE call:
  run(command="bash benches/gpu_check.sh", carry=[".carry"], timeout_s=540)
Results come back under \$OUT (gpu_check.log, pytest.log, nvdec.json, gpu_decode.json).
EOF
