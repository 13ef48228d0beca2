"""Issue 2 acceptance: entropy vs every codec's mean code length on real MiniLM bytes.

    .venv/bin/python benches/entropy_ratios.py

Prints markdown: for e4m3 bytes (fp32 → float8_e4m3fn after per-tensor abs-max scaling, every
matrix), the bf16 exponent plane and the int8 bytes (per-tensor symmetric), the Shannon bound and
each codec's bits/byte, saving, gap to entropy and parameters, plus the actual stream sizes.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from tensorpress import entropy, samples, tensors


def planes() -> dict[str, np.ndarray]:
    weights = samples.minilm_weights()
    mats = [w for w in weights.values() if w.ndim == 2]
    e4m3 = np.concatenate([samples.to_e4m3(w).view(np.uint8).reshape(-1) for w in mats])
    bf16_exp = np.concatenate(
        [tensors.split_planes(w.astype(ml_dtypes.bfloat16).reshape(-1), "bf16-exponent")[0] for w in mats]
    )
    int8 = np.concatenate(
        [np.round(w / (np.abs(w).max() / 127)).astype(np.int8).view(np.uint8).reshape(-1) for w in mats]
    )
    return {"e4m3 bytes": e4m3, "bf16 exponent plane": bf16_exp, "int8 bytes": int8}


def main() -> None:
    print("| data | codec | bits/byte | saving | vs entropy | stream / raw | params |")
    print("|---|---|---|---|---|---|---|")
    for label, data in planes().items():
        s = entropy.stats(data)
        print(
            f"| {label} ({data.size / 1e6:.1f} MB) | **entropy** | {s.entropy_bits:.4f} | "
            f"{100 * s.entropy_saving:.2f} % | — | — | — |"
        )
        for name, c in s.codecs.items():
            size = len(entropy.encode(data, name))
            print(
                f"| | {name} | {c.mean_code_len:.4f} | {100 * c.saving:.2f} % | "
                f"{100 * (c.mean_code_len / s.entropy_bits - 1):+.2f} % | "
                f"{100 * size / data.size:.2f} % | {c.params} |"
            )


if __name__ == "__main__":
    main()
