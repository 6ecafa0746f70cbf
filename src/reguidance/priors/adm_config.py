"""guided-diffusion's flags and checkpoint keys -> :class:`~reguidance.priors.adm.ADMUNet` keyword arguments.

The one translator of guided-diffusion's configuration (:func:`translate_flags`), used by the registry of known
models (:mod:`.zoo`, from the flags its checkpoints were published with) and by :func:`~reguidance.priors.load_prior`
(from a checkpoint's keys and shapes, completed by flags given as a dict or a ``.json`` / ``.yaml`` file such as
DPS's ``configs/model_config.yaml``). Its parts:

- :data:`DEFAULT_CHANNEL_MULT`: guided-diffusion's ``channel_mult`` per image size (the one table);
- :data:`MODEL_FLAGS`, :data:`DIFFUSION_FLAGS`: the flag names, each with its type (:func:`check_config` checks a
  whole config, naming the key, where it came from and what is expected);
- :func:`infer_structure`: what a state dict's keys and shapes determine;
- :func:`translate_flags`: flags (and, optionally, a state dict's shapes) -> :class:`CheckpointConfig`.

Two translations are the same function with and without a state dict: without one, missing flags take
guided-diffusion's ``create_model`` defaults (:func:`unet_config_from_create_model`); with one, the keys decide the
structure, a flag that contradicts them is refused, and what keys cannot fix (the heads, sometimes the image size)
must be given.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conventions import InputError
from ..diffusion import Schedule, Variance
from .adm import UNET_ARGS, UNET_DEFAULTS, state_dict_shapes, unet_kwargs

__all__ = [
    "DEFAULT_CHANNEL_MULT",
    "DIFFUSION_FLAGS",
    "MODEL_FLAGS",
    "CheckpointConfig",
    "check_config",
    "check_unet_args",
    "checkpoint_config",
    "infer_structure",
    "read_config_file",
    "translate_flags",
    "unet_config_from_create_model",
]

#: guided-diffusion's default ``channel_mult`` per image size (``create_model`` with ``channel_mult=""``)
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


# ------------------------------------------------------------------------------------------------ typed values
class _Expected(Exception):
    """A value of the wrong kind: ``args[0]`` says what is expected."""


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _Expected("true or false")


def _integer(value: Any, minimum: int = 1) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _Expected(f"an integer >= {minimum}")
    return value


def _positive(value: Any) -> int:
    return _integer(value, 1)


def _heads(value: Any) -> int:
    try:
        n = _integer(value, -1)
    except _Expected:
        n = 0
    if n == 0:
        raise _Expected("-1 (unset) or an integer >= 1")
    return n


def _as_number(x: float) -> float:
    return int(x) if float(x).is_integer() else float(x)


def _numbers(value: Any) -> list[float]:
    """A comma-separated string, a number or a list of finite numbers > 0, as a list."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            x = float(item) if not isinstance(item, bool) else math.nan
        except (TypeError, ValueError):
            x = math.nan
        if not 0 < x < math.inf:
            raise _Expected("positive numbers, e.g. '1,2,2' or [1, 2, 2]")
        out.append(_as_number(x))
    if not out:
        raise _Expected("positive numbers, e.g. '1,2,2' or [1, 2, 2]")
    return out


def _integers(value: Any) -> list[int]:
    out = _numbers(value)
    if any(not float(v).is_integer() for v in out):
        raise _Expected("positive integers, e.g. '32,16,8' or [32, 16, 8]")
    return [int(v) for v in out]


def _channel_mult_flag(value: Any) -> list[float] | None:
    """``""`` (or absent): guided-diffusion's default for the image size (None here); else the multipliers."""
    return None if isinstance(value, str) and not value.strip() else _numbers(value)


def _dropout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise _Expected("a number in [0, 1)")
    return float(value)


def _noise_schedule(value: Any) -> str:
    if value not in ("linear", "cosine"):
        raise _Expected("'linear' or 'cosine'")
    return str(value)


def _anything(value: Any) -> Any:
    return value


def _num_classes(value: Any) -> int | None:
    return None if value is None else _positive(value)


def _dims(value: Any) -> int:
    if value != 2 or isinstance(value, bool):
        raise _Expected("2 (images)")
    return 2


#: guided-diffusion's model flags (``create_model``'s arguments; ``in_channels`` of its later forks) and their types
MODEL_FLAG_TYPES: dict[str, Callable[[Any], Any]] = {
    "image_size": _positive,
    "num_channels": _positive,
    "num_res_blocks": _positive,
    "channel_mult": _channel_mult_flag,
    "learn_sigma": _bool,
    "class_cond": _bool,
    "use_checkpoint": _bool,
    "attention_resolutions": _integers,
    "num_heads": _heads,
    "num_head_channels": _heads,
    "num_heads_upsample": _heads,
    "use_scale_shift_norm": _bool,
    "dropout": _dropout,
    "resblock_updown": _bool,
    "use_fp16": _bool,
    "use_new_attention_order": _bool,
    "in_channels": _positive,
}
#: guided-diffusion's diffusion flags (``create_gaussian_diffusion``), and ``model_path`` of DPS's yaml files
DIFFUSION_FLAG_TYPES: dict[str, Callable[[Any], Any]] = {
    "diffusion_steps": _positive,
    "noise_schedule": _noise_schedule,
    "sigma_small": _bool,
    "predict_xstart": _bool,
    "rescale_timesteps": _bool,
    "timestep_respacing": _anything,
    "use_kl": _bool,
    "rescale_learned_sigmas": _bool,
    "model_path": _anything,
}
MODEL_FLAGS = tuple(MODEL_FLAG_TYPES)
DIFFUSION_FLAGS = tuple(DIFFUSION_FLAG_TYPES)
#: the types of :class:`ADMUNet`'s own keyword arguments (a config that has ``model_channels`` gives these)
UNET_ARG_TYPES: dict[str, Callable[[Any], Any]] = {
    "image_size": _positive,
    "in_channels": _positive,
    "model_channels": _positive,
    "out_channels": _positive,
    "num_res_blocks": _positive,
    "attention_resolutions": _integers,
    "dropout": _dropout,
    "channel_mult": _numbers,
    "conv_resample": _bool,
    "dims": _dims,
    "num_classes": _num_classes,
    "use_checkpoint": _bool,
    "use_fp16": _bool,
    "num_heads": _heads,
    "num_head_channels": _heads,
    "num_heads_upsample": _heads,
    "use_scale_shift_norm": _bool,
    "resblock_updown": _bool,
    "use_new_attention_order": _bool,
}
assert tuple(UNET_ARG_TYPES) == UNET_ARGS, "UNET_ARG_TYPES must list ADMUNet's arguments"


def _where(source: str | None) -> str:
    return f" (in {source})" if source else ""


def _parse(types: Mapping[str, Callable[[Any], Any]], config: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        try:
            out[key] = types[key](value)
        except _Expected as exc:
            raise InputError(f"config {key}={value!r}{_where(source)} must be {exc.args[0]}") from None
    return out


def _unknown(config: Mapping[str, Any], known: tuple[str, ...], what: str, source: str | None) -> None:
    unknown = sorted(str(k) for k in config if k not in known)
    if unknown:
        raise InputError(
            f"config{_where(source)} has keys {unknown} that are not {what}; expected some of {', '.join(known)}"
        )


def check_unet_args(config: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """:class:`ADMUNet` keyword arguments from a config that gives them by their own names (it has
    ``model_channels``): every key known, every value of its type, the required ones present; completed by
    :func:`~reguidance.priors.adm.unet_kwargs`. Raises :class:`InputError` naming the key, ``source`` (a file) and
    what is expected."""
    _unknown(config, UNET_ARGS, "ADMUNet arguments", source)
    parsed = _parse(UNET_ARG_TYPES, config, source)
    missing = [k for k in UNET_ARGS if k not in parsed and k not in UNET_DEFAULTS]
    if missing:
        raise InputError(f"config{_where(source)} lacks the required ADMUNet arguments {missing}")
    return unet_kwargs(**parsed)


def _check_flags(flags: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    _unknown(flags, MODEL_FLAGS + DIFFUSION_FLAGS, "guided-diffusion flags", source)
    return _parse({**MODEL_FLAG_TYPES, **DIFFUSION_FLAG_TYPES}, flags, source)


def check_config(config: Mapping[str, Any], source: str | None = None) -> None:
    """Check a config's keys and value types: :class:`ADMUNet` arguments if it has ``model_channels``, else
    guided-diffusion flags. Raises :class:`InputError` naming the key, ``source`` (a file) and what is expected."""
    if "model_channels" in config:
        check_unet_args(config, source)
    else:
        _check_flags(config, source)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a ``.json``, ``.yaml`` or ``.yml`` file (guided-diffusion flag names, as DPS's
    ``configs/model_config.yaml``, or :class:`ADMUNet` arguments), its keys and value types checked
    (:func:`check_config`). YAML is read with PyYAML's ``safe_load`` (no code runs)."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise InputError(f"config file {p} has suffix {p.suffix!r}; expected .json, .yaml or .yml")
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # the parsers' own errors name the line
        raise InputError(f"could not parse config file {p}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise InputError(f"config file {p} holds {type(data).__name__}, expected a mapping of flag names to values")
    check_config(data, str(p))
    return dict(data)


@dataclass(frozen=True)
class CheckpointConfig:
    """How to rebuild a checkpoint: :class:`ADMUNet` keyword arguments, the training chain and the variance.

    ``schedule`` / ``num_timesteps`` name the chain (:meth:`Schedule.named`); ``variance`` is None where the
    config does not say (then :class:`ADMPrior`'s default applies).
    """

    unet: dict[str, Any]
    schedule: str = "linear"
    num_timesteps: int = 1000
    variance: Variance | None = None

    def make_schedule(self) -> Schedule:
        return Schedule.named(self.schedule, self.num_timesteps)


# --------------------------------------------------------------------------------------- keys and shapes
def _sub_keys(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> set[str]:
    """The key suffixes under ``prefix`` (which ends with a dot)."""
    return {k[len(prefix) :] for k in shapes if k.startswith(prefix)}


def _indices(shapes: Mapping[str, tuple[int, ...]], torso: str) -> set[int]:
    return {int(k.split(".")[1]) for k in shapes if k.startswith(torso + ".") and k.split(".")[1].isdigit()}


def infer_structure(shapes: Mapping[str, tuple[int, ...]], source: str = "the state dict") -> dict[str, Any]:
    """The :class:`ADMUNet` arguments that a guided-diffusion state dict's keys and shapes determine.

    ``shapes`` maps every key to its shape. Read from the keys (``C`` = ``model_channels``):

    - ``time_embed.0.weight`` (4C, C): ``model_channels``; ``input_blocks.0.0.weight`` (c0, in, 3, 3):
      ``in_channels``; ``out.2.weight`` (out, c0, 3, 3): ``out_channels`` (``2 in`` = learned sigma);
      ``label_emb.weight`` (classes, 4C): ``num_classes``;
    - ``num_res_blocks`` from where the first resampler sits: an upsampler in an output block (``conv`` of an
      ``Upsample``, or a second ResBlock), else a downsampler among the input blocks (``op`` of a strided conv,
      or a block without parameters: average pooling); ``L = len(output_blocks) / (num_res_blocks + 1)`` levels;
    - ``channel_mult`` from the first ResBlock of each level (output channels / C);
    - attention downsample rates ``2^level`` where the level's input ResBlocks have an attention block (``qkv``);
    - ``use_scale_shift_norm`` when a ResBlock's embedding projection is twice its width;
      ``resblock_updown`` when the downsampler is a ResBlock, else ``conv_resample`` when it has a conv.

    Not stored in a state dict, so not returned: ``image_size``, the heads (``num_heads``, ``num_head_channels``,
    ``num_heads_upsample``), ``use_new_attention_order``, ``dropout``, ``use_fp16``, ``use_checkpoint``.
    Raises :class:`InputError` when the keys do not form a guided-diffusion UNet; the result is verified by
    rebuilding every key and shape.
    """

    def need(key: str) -> tuple[int, ...]:
        if key not in shapes:
            first = ", ".join(list(shapes)[:4])
            raise InputError(
                f"{source} is not a guided-diffusion UNet state dict: it has no key {key!r} (its keys begin "
                f"{first}, ...)"
            )
        return tuple(shapes[key])

    emb_dim, model_channels = need("time_embed.0.weight")
    in_channels = need("input_blocks.0.0.weight")[1]
    out_channels = need("out.2.weight")[0]
    num_classes = shapes["label_emb.weight"][0] if "label_emb.weight" in shapes else None
    n_in = max(_indices(shapes, "input_blocks")) + 1
    n_out = max(_indices(shapes, "output_blocks"), default=-1) + 1

    def is_resblock(prefix: str) -> bool:
        return "in_layers.0.weight" in _sub_keys(shapes, prefix)

    def has_upsampler(j: int) -> bool:
        return any(
            "conv.weight" in _sub_keys(shapes, f"output_blocks.{j}.{k}.") or is_resblock(f"output_blocks.{j}.{k}.")
            for k in (1, 2)
        )

    def down_kind(i: int) -> str:
        keys = _sub_keys(shapes, f"input_blocks.{i}.")
        if not keys:
            return "pool"
        if "0.op.weight" in keys:
            return "conv"
        return "res" if is_resblock(f"input_blocks.{i}.0.") else "other"

    ups = [j for j in range(n_out) if has_upsampler(j)]
    downs = [i for i in range(1, n_in) if down_kind(i) in ("pool", "conv")]
    num_res_blocks = ups[0] if ups else downs[0] - 1 if downs else n_out - 1
    levels = n_out // (num_res_blocks + 1) if num_res_blocks >= 1 else 0
    if num_res_blocks < 1 or levels * (num_res_blocks + 1) != n_out or n_in != n_out:
        raise InputError(
            f"{source} is not a guided-diffusion UNet state dict: its {n_in} input and {n_out} output blocks fit "
            f"no number of levels with {num_res_blocks} ResBlocks each"
        )
    first_res = [1 + level * (num_res_blocks + 1) for level in range(levels)]
    channel_mult = [_as_number(need(f"input_blocks.{i}.0.out_layers.3.weight")[0] / model_channels) for i in first_res]
    attention = [2**level for level, i in enumerate(first_res) if f"input_blocks.{i}.1.qkv.weight" in shapes]
    width = need("input_blocks.1.0.out_layers.3.weight")[0]
    use_scale_shift_norm = need("input_blocks.1.0.emb_layers.1.weight")[0] == 2 * width
    down = down_kind(1 + num_res_blocks) if levels > 1 else "none"
    structure: dict[str, Any] = {
        "in_channels": in_channels,
        "model_channels": model_channels,
        "out_channels": out_channels,
        "num_res_blocks": num_res_blocks,
        "attention_resolutions": attention,
        "channel_mult": channel_mult,
        "conv_resample": down != "pool",
        "num_classes": num_classes,
        "use_scale_shift_norm": use_scale_shift_norm,
        "resblock_updown": down == "res",
    }
    if emb_dim != 4 * model_channels:
        raise InputError(
            f"{source} is not a guided-diffusion UNet state dict: time_embed.0.weight has shape "
            f"{(emb_dim, model_channels)}, expected (4 C, C)"
        )
    want = state_dict_shapes({**structure, "image_size": 2 ** (levels - 1)})
    if want != {k: tuple(v) for k, v in shapes.items()}:
        missing = [k for k in want if k not in shapes][:3]
        unexpected = [k for k in shapes if k not in want][:3]
        wrong = [
            f"{k}: {tuple(shapes[k])} (expected {want[k]})" for k in want if k in shapes and tuple(shapes[k]) != want[k]
        ][:3]
        raise InputError(
            f"{source} does not form a guided-diffusion UNet: the structure read from its keys ({structure}) "
            f"rebuilds other keys; missing {missing}, unexpected {unexpected}, wrong shapes {wrong}"
        )
    return structure


# ------------------------------------------------------------------------------------------------ the translator
def translate_flags(
    flags: Mapping[str, Any] | None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    source: str = "the state dict",
    config_source: str | None = None,
) -> CheckpointConfig:
    """The full configuration of a guided-diffusion network from its flags and, if given, a state dict's shapes.

    ``flags`` uses guided-diffusion's flag names (:data:`MODEL_FLAGS`, :data:`DIFFUSION_FLAGS`; DPS's
    ``model_config.yaml`` files are such flags); every value is checked for its type (:func:`check_config`,
    naming ``config_source``, the file the flags came from, if any).

    Without ``shapes`` this is guided-diffusion's ``create_model``: ``image_size``, ``num_channels`` and
    ``num_res_blocks`` are required; the rest take its defaults (``channel_mult`` "" -> :data:`DEFAULT_CHANNEL_MULT`
    of ``image_size``, ``attention_resolutions`` "16" (feature-map sizes, turned into downsample rates
    ``image_size // size`` in the order given), one head, ``learn_sigma`` False (``out_channels = 2 in_channels``
    when True), ``class_cond`` False (1000 classes when True), ``in_channels`` 3).

    With ``shapes`` (every key of a state dict with its shape, read from ``source``), what the keys determine
    (:func:`infer_structure`) is taken from them, and a flag that contradicts them (``num_channels``,
    ``num_res_blocks``, ``channel_mult``, ``learn_sigma``, ``class_cond``, ``attention_resolutions``,
    ``use_scale_shift_norm``, ``resblock_updown``, ``in_channels``) is an :class:`InputError` naming both. The rest:

    - heads: ``num_head_channels`` (channels per head) or ``num_heads`` must be given (a state dict does not
      store them, and guided-diffusion's own defaults disagree: 1 head in ``create_model``, 4 in its scripts);
      ``num_heads_upsample`` defaults to ``num_heads``;
    - ``image_size``: the flag, else the size whose :data:`DEFAULT_CHANNEL_MULT` is the inferred one, else an error
      asking for it. ``attention_resolutions`` are read as rates ``image_size // size`` (rates beyond the deepest
      level are ignored, as there).

    Either way: ``use_new_attention_order`` (False), ``dropout`` (0), ``use_fp16`` (False), ``use_checkpoint``
    (False) are guided-diffusion's defaults; the chain is ``noise_schedule`` (linear or cosine) over
    ``diffusion_steps`` (1000); ``sigma_small`` picks ``fixed_small`` over ``fixed_large`` for models without
    learned sigma (unset: the prior's default); ``predict_xstart`` and ``rescale_timesteps`` with other than 1000
    steps are refused (the prior feeds the network eps-model inputs at integer timesteps); ``timestep_respacing``,
    ``use_kl``, ``rescale_learned_sigmas`` (sampling and training choices) and ``model_path`` are ignored.
    ``flags=None`` means no config was given (the error messages say so). Raises :class:`InputError` naming every
    value still ambiguous with the flag that resolves it.
    """
    given = dict(flags or {})
    v = _check_flags(given, config_source)
    where = _where(config_source)

    def contradiction(key: str, has: str) -> InputError:
        return InputError(f"config {key}={given[key]!r}{where} contradicts {source}, which has {has}")

    ambiguous: list[str] = []
    image_size: int | None = v.get("image_size")
    if shapes is None:  # create_model
        missing = [k for k in ("image_size", "num_channels", "num_res_blocks") if k not in v]
        if missing:
            raise InputError(f"config{where} lacks {missing}, which guided-diffusion's create_model needs")
        assert image_size is not None
        mult = v.get("channel_mult")
        if mult is None:
            if image_size not in DEFAULT_CHANNEL_MULT:
                raise InputError(
                    f"no default channel_mult for image_size={image_size}; expected one of "
                    f"{sorted(DEFAULT_CHANNEL_MULT)} or an explicit channel_mult such as '1,2,2'"
                )
            mult = list(DEFAULT_CHANNEL_MULT[image_size])
        in_ch = v.get("in_channels", 3)
        learned = v.get("learn_sigma", False)
        s: dict[str, Any] = {
            "in_channels": in_ch,
            "model_channels": v["num_channels"],
            "out_channels": 2 * in_ch if learned else in_ch,
            "num_res_blocks": v["num_res_blocks"],
            "attention_resolutions": [image_size // r for r in v.get("attention_resolutions", [16])],
            "channel_mult": mult,
            "conv_resample": True,
            "num_classes": 1000 if v.get("class_cond", False) else None,
            "use_scale_shift_norm": v.get("use_scale_shift_norm", False),
            "resblock_updown": v.get("resblock_updown", False),
        }
        heads = {k: v[k] for k in ("num_heads", "num_head_channels") if k in v} or {"num_heads": 1}
    else:
        s = infer_structure(shapes, source)
        levels = len(s["channel_mult"])
        in_ch, out_ch = s["in_channels"], s["out_channels"]
        learned = out_ch == 2 * in_ch
        # (flag, what the flag says in the structure's terms, what the state dict has, how to say it)
        checks: list[tuple[str, Any, Any, str]] = []
        for flag, key in (
            ("num_channels", "model_channels"),
            ("num_res_blocks", "num_res_blocks"),
            ("in_channels", "in_channels"),
        ):
            if flag in v:
                checks.append((flag, v[flag], s[key], f"{key}={s[key]}"))
        for flag in ("use_scale_shift_norm", "resblock_updown"):
            if flag in v and (flag == "use_scale_shift_norm" or levels > 1):  # one level: no resampling at all
                checks.append((flag, v[flag], s[flag], f"{flag}={s[flag]}"))
        if "learn_sigma" in v:
            has = f"{out_ch} output channels for {in_ch} input channels"
            checks.append(("learn_sigma", v["learn_sigma"], learned, has))
        if "class_cond" in v:
            checks.append(
                ("class_cond", v["class_cond"], s["num_classes"] is not None, f"num_classes={s['num_classes']}")
            )
        for flag, says, got, has in checks:
            if says != got:
                raise contradiction(flag, has)
        if image_size is None:
            fits = [size for size, mult in DEFAULT_CHANNEL_MULT.items() if list(mult) == s["channel_mult"]]
            if fits:
                image_size = fits[0]
            else:
                ambiguous.append(
                    f"the image size (pass image_size; channel_mult {s['channel_mult']} is none of "
                    "guided-diffusion's defaults, which would fix it)"
                )
        if "channel_mult" in v:
            mult = v["channel_mult"]
            if mult is None and image_size is not None and image_size in DEFAULT_CHANNEL_MULT:
                mult = [_as_number(m) for m in DEFAULT_CHANNEL_MULT[image_size]]
            if mult is not None and mult != s["channel_mult"]:
                raise contradiction("channel_mult", f"channel_mult={s['channel_mult']}")
        if "attention_resolutions" in v and image_size is not None:
            rates = sorted({image_size // r for r in v["attention_resolutions"]} & {2**lv for lv in range(levels)})
            if rates != sorted(s["attention_resolutions"]):
                have = [image_size // d for d in s["attention_resolutions"]]
                raise contradiction(
                    "attention_resolutions",
                    f"attention at feature-map sizes {have} of image_size {image_size} (downsample rates "
                    f"{s['attention_resolutions']})",
                )
        heads = {k: v[k] for k in ("num_heads", "num_head_channels") if k in v}
        if not heads:
            ambiguous.append(
                "the attention heads (pass num_head_channels, e.g. 64, or num_heads: a checkpoint does not store them)"
            )
    if ambiguous:
        how = "no config was given" if flags is None else "the config does not say"
        raise InputError(
            f"cannot infer the UNet configuration of {source} completely ({how}): "
            + "; ".join(ambiguous)
            + "; pass config= (a dict or a .json/.yaml file in guided-diffusion's flag names)"
        )
    assert image_size is not None
    levels = len(s["channel_mult"])
    if image_size % 2 ** (levels - 1):
        raise InputError(f"config image_size={image_size}{where} is not divisible by 2^{levels - 1} ({levels} levels)")
    num_heads = heads.get("num_heads", 1)
    num_head_channels = heads.get("num_head_channels", -1)
    num_heads_upsample = v.get("num_heads_upsample", -1)
    if num_head_channels == -1 and num_heads < 1:
        raise InputError(f"config num_heads={num_heads}{where} must be >= 1 when num_head_channels is -1")
    attn_widths = {
        int(s["channel_mult"][level] * s["model_channels"])
        for level in range(levels)
        if 2**level in s["attention_resolutions"]
    } | {int(s["channel_mult"][-1] * s["model_channels"])}
    for key, n, per_head in (
        ("num_head_channels", num_head_channels, True),
        ("num_heads", num_heads, False),
        ("num_heads_upsample", num_heads_upsample, False),
    ):
        if n == -1 or (not per_head and num_head_channels != -1):
            continue
        bad = sorted(w for w in attn_widths if w % n)
        if bad:
            what = "channels per head" if per_head else "heads"
            raise InputError(
                f"config {key}={n}{where} does not divide the attention widths {sorted(attn_widths)} of {source} "
                f"(not {bad}); {what} must divide every attention block's channel count"
            )
    steps = v.get("diffusion_steps", 1000)
    schedule = v.get("noise_schedule", "linear")
    if v.get("predict_xstart", False):
        raise InputError("config predict_xstart=True: the network predicts x0, but ADM priors here predict eps")
    if v.get("rescale_timesteps", False) and steps != 1000:
        raise InputError(
            f"config rescale_timesteps=True with diffusion_steps={steps}: the network was trained on timesteps "
            f"scaled by 1000/{steps}, and the prior feeds it integer timesteps"
        )
    variance: Variance | None = "learned_range" if learned else None
    if not learned and "sigma_small" in v:
        variance = "fixed_small" if v["sigma_small"] else "fixed_large"
    unet = unet_kwargs(
        image_size=image_size,
        dropout=v.get("dropout", 0.0),
        use_checkpoint=v.get("use_checkpoint", False),
        use_fp16=v.get("use_fp16", False),
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_new_attention_order=v.get("use_new_attention_order", False),
        dims=2,
        **s,
    )
    return CheckpointConfig(unet, schedule, steps, variance)


def checkpoint_config(
    shapes: Mapping[str, tuple[int, ...]],
    flags: Mapping[str, Any] | None = None,
    source: str = "the state dict",
    config_source: str | None = None,
) -> CheckpointConfig:
    """The full configuration of a guided-diffusion checkpoint: its keys and shapes, completed by ``flags``
    (:func:`translate_flags` with ``shapes``)."""
    return translate_flags(flags, shapes, source, config_source)


def unet_config_from_create_model(**flags: Any) -> dict[str, Any]:
    """:class:`ADMUNet` keyword arguments from guided-diffusion's ``create_model`` arguments, converted as it does
    (:func:`translate_flags` without a state dict)."""
    return translate_flags(flags).unet
