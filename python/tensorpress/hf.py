"""From a Hugging Face model (or folder) to a compressed folder and back to a ready model.

:func:`save_pretrained` writes ``model.tpz`` (or shards ``model-0000i-of-0000N.tpz`` plus
``model.tpz.index.json`` for large models), ``config.json`` and the tokenizer/generation files;
:func:`from_pretrained` returns a ready ``transformers`` model, built empty (parameters on the
``meta`` device, no initialisation) and then given the decoded weights, so they are allocated once.

Each ``.tpz`` carries in its metadata the per-tensor plans, the tied-weight aliases, the constraint
and the *recipe* of a model transformed by LLM-ROM, Tender or BCT (:mod:`tensorpress.recipes`),
which :func:`from_pretrained` replays to rebuild the same modules.

Folders are untrusted: file names come from :mod:`tensorpress.hf_folder` checks, ``config.json`` is
parsed as data, and no code shipped in a folder runs unless ``trust_remote_code=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorpress import container, hf_folder, recipes, tensors
from tensorpress.errors import BackendUnavailableError, FormatError, InvalidArgumentError
from tensorpress.models import (
    ALIASES_KEY,
    CONSTRAINT_KEY,
    PLANS_KEY,
    compress_state,
    find_aliases,
    state_dict_of,
)

#: Metadata key holding the recipe of a transformed model (JSON, see :mod:`tensorpress.recipes`).
RECIPE_KEY = "tensorpress.recipe"
#: Default largest shard (compressed bytes) before the weights are split over several files.
DEFAULT_MAX_SHARD_BYTES = 2 << 30
#: Header bytes a stored tensor costs in a ``.tpz`` (JSON entry), counted against a bits budget.
HEADER_BYTES_PER_TENSOR = 768
_SHARD_NAME = re.compile(r"model-\d{5}-of-\d{5}\.tpz")


@dataclass(frozen=True)
class SavedFolder:
    """What :func:`save_pretrained` wrote: the folder, its weight files and their sizes."""

    path: Path
    files: tuple[str, ...]
    tensors: int
    values: int
    raw_nbytes: int
    nbytes: int
    constraint: str

    @property
    def bits_per_value(self) -> float:
        """Stored weight bits (every ``.tpz`` byte, headers included) per model value."""
        return 8 * self.nbytes / self.values if self.values else 0.0

    def __repr__(self) -> str:
        return (
            f"SavedFolder({str(self.path)!r}, {self.tensors} tensors, {self.raw_nbytes / 1e6:.2f} MB -> "
            f"{self.nbytes / 1e6:.2f} MB ({100 * self.nbytes / max(self.raw_nbytes, 1):.1f} %), "
            f"{self.bits_per_value:.3f} bits/value, {self.constraint})"
        )


def _transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise BackendUnavailableError("loading a model folder needs transformers", extra="eval") from None
    return transformers


# --- saving ----------------------------------------------------------------------------------


def _source(
    source: Any, config: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None, Path | None, Any]:
    """``(tensors, recipe, config dict, source folder, model)`` of what save_pretrained was given."""
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        if not folder.is_dir():
            raise InvalidArgumentError(f"{folder}: not a model folder (a directory with config.json)")
        config_path = folder / hf_folder.CONFIG
        cfg = hf_folder.read_json(config_path) if config_path.is_file() else None
        if hf_folder.is_compressed_folder(folder):  # recompressing keeps a transformed model's recipe
            state, metadata = read_folder(folder)
            first = hf_folder.tpz_shards(folder)[0][0]
            recipe = _json_object(metadata.get(RECIPE_KEY, "{}"), RECIPE_KEY, first)
            return state, recipe, cfg, folder, None
        return hf_folder.read_source_state(folder), {}, cfg, folder, None
    if isinstance(source, Mapping):
        return state_dict_of(source), {}, _config_dict(config), None, None
    if callable(getattr(source, "state_dict", None)):
        recipe, state = recipes.capture(source)
        cfg = _config_dict(config if config is not None else getattr(source, "config", None))
        if cfg is not None and not cfg.get("architectures"):
            cfg["architectures"] = [type(source).__name__]
        return state, recipe, cfg, None, source
    raise InvalidArgumentError(
        f"save_pretrained takes a model, a model folder or a state dict, not {type(source).__name__}"
    )


def _config_dict(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if isinstance(config, Mapping):
        return dict(config)
    to_dict = getattr(config, "to_diff_dict", None) or getattr(config, "to_dict", None)
    if not callable(to_dict):
        raise InvalidArgumentError(
            f"config must be a mapping or a transformers config, not {type(config).__name__}"
        )
    doc = dict(to_dict())
    if getattr(config, "model_type", None):
        doc["model_type"] = config.model_type
    # Run-time choices (attention kernels, BCT's registered attention) are not part of the model.
    return {k: v for k, v in doc.items() if not k.startswith("_attn_implementation")}


def save_pretrained(
    source: Any,
    out_dir: str | os.PathLike[str],
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    bits_per_value: float | None = None,
    method: str | None = None,
    keep: Iterable[str] = (),
    lossy_vectors: bool = False,
    strict: bool = False,
    config: Any = None,
    tokenizer: Any = None,
    max_shard_size: int = DEFAULT_MAX_SHARD_BYTES,
    progress: Callable[[str], None] | None = None,
    streaming: bool = False,
    workers: int = 1,
    calibration: Any = None,
    tune_norms: int = 0,
    tune_scales: bool = False,
) -> SavedFolder:
    """Compress a model into a folder :func:`from_pretrained` (and ``tensorpress decompress``) read.

    Args:
        source: a transformers model (possibly transformed by LLM-ROM, Tender or BCT: saved as it
            is), a local HF folder (``model.safetensors`` or sharded with an index) or a state dict.
        out_dir: the folder to write (created; earlier weight files in it are replaced).
        lossless, max_rel_error, bits_per_value: one constraint (lossless by default).
            ``bits_per_value`` is the *model average* over every value, allocated across tensors by
            rate–distortion; ``max_rel_error`` bounds each lossy tensor's relative MSE.
        method: restrict the lossy method (``"blockwise"``, ``"tender-group"``, ``"video"``).
        keep: name patterns (glob or substring) of tensors to keep lossless. 1-D and tiny tensors
            are always lossless unless ``lossy_vectors=True``.
        strict: raise instead of warning when ``bits_per_value`` cannot be met.
        config: the model config (dict or transformers config) when ``source`` is a state dict.
        tokenizer: a tokenizer to save beside the weights (a folder's own files are copied).
        max_shard_size: compressed bytes per ``.tpz`` before the weights are split.
        progress: called with short status lines.
        streaming, workers: read a safetensors folder tensor by tensor and write shards as they
            are done (bounded memory, resumable, ``workers`` threads, the ranks of ``torchrun``);
            ``workers > 1`` implies it. See :func:`tensorpress.streaming.save_pretrained_streaming`.
        calibration: token ids ``(n, seq_len)`` of calibration text (never evaluation text), for
            ``method="video"`` with ``bits_per_value`` on a causal LM ``source``: the measured
            recipe of benches/RESULTS.md §4.2 in one call — each ``nn.Linear`` weight is coded with
            the seeded rotation, AWQ-style column scales ``E[x²]^0.25`` and a rate allocation
            weighted by the diagonal Fisher ``E[g²]·E[x²]`` from one backward pass per batch; every
            other tensor (embeddings, tied weights, norms) stays lossless.
        tune_norms: with ``calibration``, then train the normalization weights this many Adam
            steps so that the coded model's next-token distributions match the original's on the
            calibration ids (:func:`tensorpress.video.tune.tune_coded`); the tuned norms are
            stored (losslessly, as the norms always are), at no cost in bits.
        tune_scales: with ``tune_norms``, also learn a gain per row and per column of every
            video-coded matrix, folded into its stored scales
            (:meth:`tensorpress.video.VideoTensor.with_gains`), again at no cost in bits. SmolLM2
            at 3.0 bits/value: +40.4 % perplexity untuned, +14.8 % after 300 steps with the gains
            on 128 calibration windows (RESULTS.md §10.10).
    """
    if not isinstance(tune_norms, int) or isinstance(tune_norms, bool) or tune_norms < 0:
        raise InvalidArgumentError(f"tune_norms takes a number of steps >= 0, got {tune_norms!r}")
    if tune_norms and calibration is None:
        raise InvalidArgumentError("tune_norms needs calibration ids (method='video' with bits_per_value)")
    if not isinstance(tune_scales, bool):
        raise InvalidArgumentError(f"tune_scales must be a bool, got {tune_scales!r}")
    if tune_scales and not tune_norms:
        raise InvalidArgumentError("tune_scales needs tune_norms, the number of tuning steps")
    if streaming or workers != 1:
        if calibration is not None:
            raise InvalidArgumentError("calibration needs the model in memory: not with streaming or workers")
        from tensorpress.streaming import save_pretrained_streaming

        return save_pretrained_streaming(
            source, out_dir, lossless=lossless, max_rel_error=max_rel_error,
            bits_per_value=bits_per_value, method=method, keep=keep, lossy_vectors=lossy_vectors,
            strict=strict, max_shard_size=max_shard_size, workers=workers, progress=progress,
            bars=progress is not None,
        )  # fmt: skip
    say = progress or (lambda _m: None)
    lossy = max_rel_error is not None or bits_per_value is not None
    if not isinstance(max_shard_size, int) or max_shard_size < 1:
        raise InvalidArgumentError(f"max_shard_size must be a positive int, got {max_shard_size!r}")
    state, recipe, cfg, folder, _model = _source(source, config)
    out = Path(out_dir)
    if folder is not None and out.resolve() == folder.resolve():
        raise InvalidArgumentError(f"{out}: the output folder must differ from the source folder")
    if recipe and lossy:
        raise InvalidArgumentError(
            f"a model transformed by {', '.join(recipe)} is saved as it is: lossless only"
        )
    aliases = find_aliases(state)
    stored = {k: v for k, v in state.items() if k not in aliases}
    video_options = None
    if calibration is not None:
        if method != "video" or bits_per_value is None:
            raise InvalidArgumentError("calibration is for method='video' with bits_per_value")
        if _model is None:
            raise InvalidArgumentError("calibration needs a model to run, not a folder or a state dict")
        tied = set(aliases) | set(aliases.values())
        coded = [k for k in stored if k not in tied]
        from tensorpress.video import calibrated_options

        video_options = calibrated_options(_model, calibration, coded, say)
    packed, plans, constraint = compress_state(
        stored,
        lossless=lossless,
        max_rel_error=max_rel_error,
        bits_per_value=bits_per_value,
        method=method,
        keep=keep,
        lossy_vectors=lossy_vectors,
        strict=strict,
        progress=say,
        header_bytes=HEADER_BYTES_PER_TENSOR,
        video_options=video_options,
    )
    if tune_norms:
        _store_tuned(_model, calibration, packed, plans, tune_norms, tune_scales, say)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        ALIASES_KEY: json.dumps(aliases, separators=(",", ":")),
        CONSTRAINT_KEY: constraint,
        RECIPE_KEY: json.dumps(recipe, separators=(",", ":")),
    }
    files = _write_shards(out, packed, plans, meta, max_shard_size)
    if cfg is not None:
        hf_folder.write_json(out / hf_folder.CONFIG, cfg)
    if folder is not None:
        for name in hf_folder.copy_side_files(folder, out):
            say(f"copied {name}")
        if cfg is not None:  # the copy above replaced it verbatim; keep ours (same content)
            hf_folder.write_json(out / hf_folder.CONFIG, cfg)
    if _model is not None:
        generation = getattr(_model, "generation_config", None)
        if generation is not None and callable(getattr(generation, "save_pretrained", None)):
            generation.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    values = sum(_numel(v) for v in state.values() if hasattr(v, "shape"))
    values -= sum(_numel(state[a]) for a in aliases)
    return SavedFolder(
        path=out,
        files=tuple(files),
        tensors=len(stored),
        values=values,
        raw_nbytes=sum(int(getattr(v, "raw_nbytes", 0)) for v in packed.values()),
        nbytes=sum((out / f).stat().st_size for f in files),
        constraint=constraint,
    )


def _store_tuned(
    model: Any,
    calibration: Any,
    packed: dict[str, Any],
    plans: dict[str, Any],
    steps: int,
    scales: bool,
    say: Any,
) -> None:
    """Replace the stored norm weights in ``packed`` by ones tuned for the decoded lossy tensors
    and, with ``scales``, fold tuned row and column gains into the video-coded tensors."""
    from tensorpress.planner import plan
    from tensorpress.video import VideoTensor
    from tensorpress.video.tune import linear_weights, tune_coded

    decoded = {
        name: tensors.decompress(stored, as_kind="torch")
        for name, stored in packed.items()
        if getattr(stored, "method", "lossless") != "lossless"
    }
    linears = linear_weights(model)
    video = {n: v for n, v in packed.items() if isinstance(v, VideoTensor) and n in linears}
    rows = list(video) if scales else []
    cols = [n for n in rows if video[n].col_scale is not None]
    tuned = tune_coded(model, calibration, decoded, steps, row_gains=rows, col_gains=cols, say=say)
    for name, weight in tuned.norms.items():
        if name in packed:
            p = plan(weight, lossless=True)
            packed[name], plans[name] = p.apply(weight), p
    for name in rows:
        packed[name] = video[name].with_gains(tuned.row_gains.get(name), tuned.col_gains.get(name))


def _numel(value: Any) -> int:
    n = 1
    for d in value.shape:
        n *= int(d)
    return n


def _write_shards(
    out: Path, packed: Mapping[str, Any], plans: Mapping[str, Any], meta: Mapping[str, str], limit: int
) -> list[str]:
    groups: list[list[str]] = [[]]
    size = 0
    for name, obj in packed.items():
        n = int(getattr(obj, "nbytes", 0))
        if groups[-1] and size + n > limit:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += n
    names = (
        [hf_folder.TPZ_WEIGHTS]
        if len(groups) == 1
        else [f"model-{i + 1:05d}-of-{len(groups):05d}.tpz" for i in range(len(groups))]
    )
    for file_name, group in zip(names, groups, strict=True):
        shard_meta = dict(meta)
        shard_meta[PLANS_KEY] = json.dumps(
            {k: plans[k].to_dict() for k in group if k in plans}, separators=(",", ":")
        )
        container.save({k: packed[k] for k in group}, out / file_name, metadata=shard_meta)
    index = out / hf_folder.TPZ_INDEX
    if len(groups) > 1:
        weight_map = {k: f for f, g in zip(names, groups, strict=True) for k in g}
        hf_folder.write_json(index, {"metadata": {"format": "tensorpress"}, "weight_map": weight_map})
    else:
        index.unlink(missing_ok=True)
    for stale in out.iterdir():  # weight files of an earlier save into the same folder
        ours = stale.name == hf_folder.TPZ_WEIGHTS or _SHARD_NAME.fullmatch(stale.name)
        if ours and stale.name not in names:
            stale.unlink()
    return names + ([hf_folder.TPZ_INDEX] if len(groups) > 1 else [])


def decompress_folder(folder: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Write a compressed folder back as a plain HF folder: ``model.safetensors`` (tied weights
    once, as transformers writes them) plus the config and tokenizer files."""
    from safetensors.torch import save_file

    src, out = Path(folder), Path(out_dir)
    if out.exists() and out.resolve() == src.resolve():
        raise InvalidArgumentError(f"{out}: the output folder must differ from the input folder")
    state, metadata = read_folder(src)
    first = hf_folder.tpz_shards(src)[0][0]
    recipe = _json_object(metadata.get(RECIPE_KEY, "{}"), RECIPE_KEY, first)
    if recipe:
        raise InvalidArgumentError(
            f"{src}: a model transformed by {', '.join(recipe)} has no plain safetensors form; "
            "load it with tensorpress.from_pretrained"
        )
    aliases = _json_object(metadata.get(ALIASES_KEY, "{}"), ALIASES_KEY, first)
    plain = {k: v.contiguous() for k, v in state.items() if k not in aliases}
    out.mkdir(parents=True, exist_ok=True)
    hf_folder.copy_side_files(src, out)
    tmp = out / f".{hf_folder.SAFETENSORS_WEIGHTS}.tmp"
    save_file(plain, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / hf_folder.SAFETENSORS_WEIGHTS)
    return out


# --- loading ---------------------------------------------------------------------------------


def _as_torch(value: Any) -> Any:
    if not tensors.is_torch_tensor(value):  # other methods decode to their own kind
        arr, _, _ = tensors.to_numpy(value)
        value = tensors.from_numpy(arr, "torch", None)
    return value


def read_folder(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``(state dict of torch tensors, metadata of the first shard)`` of a compressed folder;
    aliases (tied weights) share one tensor."""
    folder = Path(folder)
    shards, mapping = hf_folder.tpz_shards(folder)
    state: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for shard in shards:
        with container.open(shard) as f:
            if not metadata:
                metadata = dict(f.metadata)
            for name in f:
                if mapping is not None and mapping.get(name) != shard:
                    index = folder / hf_folder.TPZ_INDEX
                    raise FormatError(f"{index}: {shard.name} holds unlisted tensor {name!r}")
                if name in state:
                    raise FormatError(f"{shard}: tensor {name!r} is stored twice")
            # One batched decode per shard: every chunk of every tensor on the pool, the
            # lossless ones into one allocation that the returned tensors share.
            for name, value in f.read_all(as_kind="torch").items():
                state[name] = _as_torch(value)
    if mapping is not None:
        missing = [n for n in mapping if n not in state]
        if missing:
            raise FormatError(f"{folder / hf_folder.TPZ_INDEX}: tensor {missing[0]!r} is not in its shard")
    aliases = _json_object(metadata.get(ALIASES_KEY, "{}"), ALIASES_KEY, shards[0])
    for alias, target in aliases.items():
        if target not in state:
            raise FormatError(f"{shards[0]}: alias {alias!r} points at missing tensor {target!r}")
        state[alias] = state[target]
    return state, metadata


def load_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The decoded tensors of a compressed folder (a plain state dict, BCT codes included)."""
    return read_folder(folder)[0]


def _json_object(text: str, key: str, where: Path) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise FormatError(f"{where}: malformed {key} metadata: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: {key} metadata must be a JSON object")
    return doc


#: Largest size-like config value accepted (a hostile config must not make the empty model
#: allocate buffers such as ``position_ids`` of arbitrary length before the weights are checked).
MAX_CONFIG_SIZE = 1 << 24
_SIZE_KEYS = ("_size", "_embeddings", "_layers", "_heads", "_dim", "_length")


def _check_sizes(doc: Mapping[str, Any], where: Path, depth: int = 0) -> None:
    for key, value in doc.items():
        if isinstance(value, dict) and depth < 2:  # nested text/vision configs
            _check_sizes(value, where, depth + 1)
        elif isinstance(value, int) and not isinstance(value, bool) and key.endswith(_SIZE_KEYS):
            _check_size(key, value, where)


def _check_size(key: str, value: int, where: Path) -> None:
    if not 0 <= value <= MAX_CONFIG_SIZE:
        raise FormatError(f"{where}: {key}={value} is out of range (0..{MAX_CONFIG_SIZE})")


def _model_class(config: Any, config_path: Path, trust_remote_code: bool) -> Any:
    transformers = _transformers()
    archs = getattr(config, "architectures", None) or []
    if archs:
        if not isinstance(archs, list) or not isinstance(archs[0], str):
            raise FormatError(f"{config_path}: 'architectures' must be a list of class names")
        cls = getattr(transformers, archs[0], None) if archs[0].isidentifier() else None
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
        if not trust_remote_code:
            raise FormatError(
                f"{config_path}: architecture {archs[0]!r} is not a transformers class "
                "(code shipped in a folder runs only with trust_remote_code=True)"
            )
    return None


@contextlib.contextmanager
def _params_on_meta() -> Iterator[None]:
    """Parameters are created on the meta device (buffers stay real), and transformers skips
    weight initialisation: the weights are allocated once, when the stored ones are assigned."""
    from accelerate import init_empty_weights
    from transformers.initialization import no_init_weights

    with init_empty_weights(include_buffers=False), no_init_weights():
        yield


def from_pretrained(
    folder: str | os.PathLike[str],
    *,
    device: Any = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
) -> Any:
    """A ready transformers model (eval mode) from a folder written by :func:`save_pretrained`.

    Strict about parameters (every parameter must be stored, nothing unknown may be) and tolerant
    of buffers (stored non-persistent buffers such as ``embeddings.position_ids`` are ignored).
    ``dtype`` casts floating weights; by default they keep their stored dtype. Code shipped in
    the folder (``auto_map``) runs only with ``trust_remote_code=True``.
    """
    import torch

    transformers = _transformers()
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidArgumentError(f"{folder}: not a folder")
    config_path = folder / hf_folder.CONFIG
    cfg_doc = hf_folder.read_json(config_path)
    if not isinstance(cfg_doc.get("model_type"), str):
        raise FormatError(f"{config_path}: no 'model_type'")
    _check_sizes(cfg_doc, config_path)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InvalidArgumentError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    state, metadata = read_folder(folder)
    first = hf_folder.tpz_shards(folder)[0][0]
    recipe = _json_object(metadata.get(RECIPE_KEY, "{}"), RECIPE_KEY, first)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise FormatError(f"{config_path}: not a usable transformers config: {exc}") from None
    cls = _model_class(config, config_path, trust_remote_code)
    with _params_on_meta():
        if cls is not None:
            model = cls._from_config(config)
        else:
            model = transformers.AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    recipes.prepare(model, recipe, state, str(first))
    _load_weights(model, state, recipe, dtype, first)
    recipes.finish(model, recipe, state, str(first))
    leftover = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if leftover:
        raise FormatError(f"{first}: parameter {leftover[0]!r} is not stored ({len(leftover)} missing)")
    if dtype is not None:
        model.to(dtype)
    if device is not None:
        model.to(device)
    model.eval()
    return model


def _load_weights(
    model: Any, state: dict[str, Any], recipe: Mapping[str, Any], dtype: Any, where: Path
) -> None:
    expected = dict(model.state_dict(keep_vars=True))
    buffers = {n for n, _ in model.named_buffers(remove_duplicate=False)}
    rebuilt = recipes.bct_parameter_names(recipe)
    consumed = recipes.bct_state_names(recipe)
    load = {}
    for name, value in state.items():
        if name in consumed:
            continue
        if name in expected:
            if tuple(expected[name].shape) != tuple(value.shape):
                raise FormatError(
                    f"{where}: tensor {name!r} has shape {tuple(value.shape)}, the model expects "
                    f"{tuple(expected[name].shape)}"
                )
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            load[name] = value
        elif name not in buffers:  # a stored non-persistent buffer (position_ids) is ignored
            raise FormatError(f"{where}: tensor {name!r} is not part of this model")
    missing = [n for n, p in expected.items() if n not in load and n not in rebuilt and n not in buffers]
    tied = _tied_names(model)
    missing = [n for n in missing if n not in tied]
    if missing:
        raise FormatError(f"{where}: parameter {missing[0]!r} is not stored ({len(missing)} missing)")
    model.load_state_dict(load, strict=False, assign=True)
    if callable(getattr(model, "tie_weights", None)):
        model.tie_weights()


def _tied_names(model: Any) -> set[str]:
    """Parameters transformers ties to another one (e.g. ``lm_head.weight``) when the config says so."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    config = getattr(model, "config", None)
    if config is not None and not getattr(config, "tie_word_embeddings", True):
        return set()
    return set(tied)


__all__ = [
    "DEFAULT_MAX_SHARD_BYTES",
    "RECIPE_KEY",
    "SavedFolder",
    "decompress_folder",
    "from_pretrained",
    "load_state",
    "read_folder",
    "save_pretrained",
]
