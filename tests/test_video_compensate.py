"""GPTQ-style error compensation around the video codec: the block update is the OBS update, and
compensation lowers the calibrated output error of a real AV1-coded layer."""

from __future__ import annotations

import numpy as np
import pytest

from tensorpress.errors import InvalidArgumentError
from tensorpress.video import compensate


def _hessian(d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4 * d, d)) @ (rng.standard_normal((d, d)) * 0.3 + np.eye(d))) * np.logspace(
        -1, 0.5, d
    )
    return 2 * x.T @ x / x.shape[0]


def test_block_update_is_the_obs_update_for_a_fixed_block():
    h = _hessian(24, 0)
    u = compensate.hessian_inverse_factor(h, damp=0.0)
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(h), rtol=1e-8, atol=1e-10)
    for a, b in ((0, 5), (5, 11), (11, 24)):
        # Optimal move of the free columns R = [b, 24) when S = [a, b) is fixed, with columns
        # before a already fixed: -(Hinv_SS)^-1 Hinv_SR, Hinv = inverse of H restricted to [a, 24).
        hinv = np.linalg.inv(h[a:, a:])
        s = b - a
        expected = np.linalg.solve(hinv[:s, :s], hinv[:s, s:])
        np.testing.assert_allclose(compensate.block_update(u, a, b), expected, rtol=1e-7, atol=1e-9)
    # One column: GPTQ's (w - q) / U_jj * U_j,R.
    np.testing.assert_allclose(compensate.block_update(u, 3, 4), u[3:4, 4:] / u[3, 3])


def test_compensation_lowers_output_error_of_a_coded_layer():
    pytest.importorskip("av")
    h = _hessian(256, 1)
    w = np.random.default_rng(2).standard_normal((192, 256)).astype(np.float32)

    def out_err(cm: compensate.CompensatedMatrix) -> float:
        e = (cm.decode() - w).astype(np.float64)
        return float(np.einsum("ri,ij,rj->", e, h, e))

    kw = {"codec": "av1", "qp": 34, "rotate": True}
    split = compensate.encode_compensated(w, h, column_blocks=4, compensate=False, **kw)
    comp = compensate.encode_compensated(w, h, column_blocks=4, **kw)
    assert comp.decode().shape == w.shape and len(comp.parts) == 4
    assert out_err(comp) < 0.7 * out_err(split)
    # Storage: every part plus the act-order permutation (8 bits per column for 256 columns).
    assert comp.nbytes == sum(p.nbytes for p in comp.parts) + 256
    plain = compensate.encode_compensated(w, h, column_blocks=1, act_order=False, compensate=False, **kw)
    assert plain.perm is None and plain.nbytes == plain.parts[0].nbytes


def test_typed_errors():
    h = _hessian(8, 3)
    w = np.ones((4, 8), dtype=np.float32)
    with pytest.raises(InvalidArgumentError):
        compensate.encode_compensated(w, h[:7, :7], qp=30)
    with pytest.raises(InvalidArgumentError):
        compensate.encode_compensated(w, h, column_blocks=9, qp=30)
    with pytest.raises(InvalidArgumentError):
        compensate.encode_compensated(np.full((4, 8), np.nan), h, qp=30)
    with pytest.raises(InvalidArgumentError):
        compensate.hessian_inverse_factor(-np.eye(4), damp=0.0)
    with pytest.raises(InvalidArgumentError):
        compensate.encode_compensated(w, h, col_scale=np.ones(3), qp=30)
