"""The resumable benchmark runner: each variant of a batch is appended to ``DIR/results.jsonl`` once it is done.

For every (task, method) and every batch of test ids not yet done, the runner measures the ground truths (per-image
operators and noise from :mod:`.protocol`) and solves the batch with :func:`reguidance.app.batch.solve_batch`, which
computes its *variants* in turn: ``candidate`` (the method's output), ``reguidance`` (the wrapper on it), and with
``ablations`` the three runs that tell where the wrapper's gains come from (:data:`ABLATIONS`): ``renoise`` (the
candidate forward-noised to the wrapper's ``t_end``, then the same DPS: SDEdit + DPS), ``fresh`` (the same DPS from
fresh noise at ``t_end``: no candidate at all) and ``more`` (the base method given the wrapper's extra network
evaluations, :func:`reguidance.app.methods.scaled_budget`). Every variant of an image shares its measurement, and the
wrapper's variants share its random stream.

As each variant finishes, its rows (one per image) are appended in one write and its pictures saved as PNGs beside
them (for grids and later metrics), so a kill or a failure loses at most the variant in flight. The candidate's
float output (``x`` and ``raw``) is also kept, per image, in ``candidates/<task>/<method>/<id>.safetensors`` (8 KB
for an MNIST image, 1.5 MB for a 256x256 RGB one). A
rerun reads the rows, ignores a torn last line and computes only the variants each image still lacks: the
candidate is read back from its file (its NFE and time from its rows) rather than recomputed, and ``more`` takes
the wrapper's NFE from the ``reguidance`` rows; where no file was kept (a folder an older version wrote) the
candidate is recomputed from the same draws. Images are solved in batches of those lacking the same variants. Every
random draw is per image (:func:`reguidance.tasks.stream_rng`), so a resumed run's rows equal an uninterrupted
one's (up to float rounding where its batches differ, see :mod:`reguidance.conventions`).

Every row carries ``run``, the identity hash of its (task, method) settings (:meth:`BenchSpec.identity`, see
:mod:`reguidance.app.runs`). A folder holds one run: starting a spec whose hash for some row in the folder differs
(another seed, prior, dtype, protocol or option) is refused with the difference named, unless ``overwrite`` clears
the folder first; a spec that only adds tasks, methods or ids resumes. One process writes a folder at a time
(:class:`reguidance.app.runs.RunFolder`, the same object as ``restore``'s). Everything is checked before the folder is
touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..app.batch import Output, solve_batch
from ..app.methods import SANITY, method_class
from ..app.runs import RunFolder, identity_hash
from ..conventions import InputError, check_positive_int
from ..diffusion import CHAIN_LENGTH, check_levels
from ..evaluation.classifier import RealismScorer
from ..evaluation.metrics import SSIM_KIND, fit_p, fit_z, psnr, ssim, ssim_padded
from ..guidance.solve import Method
from ..io.files import atomic_path, atomic_write_json, drop_torn_tail, save_pngs
from ..operators import Operator
from ..priors.base import Prior
from ..tasks import Task, check_ids, get_task, id_span
from ..wrapper import ReGuidance, reward
from .defaults import ablation_configs, check_table, is_tuned, method_for, tuned_table, wrapper_for
from .inputs import ImageFolder, check_images_fit
from .records import (
    ABLATIONS,
    ROW_FIELDS,
    ROW_KEYS,
    VARIANTS,
    Row,
    read_all_results,
    read_results,
    results_path,
    safe_name,
    variant_of,
)

__all__ = [
    "ABLATIONS",
    "ROW_KEYS",
    "VARIANTS",
    "BenchSpec",
    "candidate_file",
    "check_folder",
    "done_keys",
    "done_variants",
    "drop_torn_tail",
    "load_candidates",
    "read_all_results",
    "read_results",
    "results_path",
    "run_bench",
    "safe_name",
    "variant_of",
]

Classifier = Callable[[Tensor], Tensor]  # images (B, C, H, W) in [-1, 1] -> logits (B, classes)
Distance = Callable[[Tensor, Tensor], Tensor]  # two image batches -> per-image distances (B,), e.g. LPIPS


@dataclass(frozen=True)
class BenchSpec:
    """What to run: task and method names, test ids, the run's seed and batch size, and per-method overrides.

    Each (task, method) resolves once to typed configs (:mod:`.defaults`): :meth:`method` (the candidate source, a
    :class:`~reguidance.guidance.solve.Method`), :meth:`wrapper` (a :class:`~reguidance.wrapper.ReGuidance`) and
    :meth:`ablations` (their own tuned configs, if any); each task string is parsed once. All memoised per spec (a
    :func:`dataclasses.replace` starts afresh)."""

    tasks: Sequence[str]
    methods: Sequence[str]
    ids: Sequence[int]
    seed: int = 0
    batch_size: int = 16
    #: per-method overrides of the (task, method) configs of :mod:`.defaults`: ``{method name: {option: value}}``
    #: (``--steps`` is ``{name: {"steps": n}}`` for every method with a step budget)
    method_options: dict[str, Row] = field(default_factory=dict)
    #: the wrapper for every (task, method); None takes :func:`.defaults.wrapper_for`
    reguidance: ReGuidance | None = None
    #: the budget and defaults table, ``"reference"`` or ``"cpu"`` (see :mod:`.defaults`)
    protocol: str = "reference"
    #: what else determines the rows and is not in the spec: the prior and its dtype (:func:`reguidance.app.runs.
    #: prior_facts`), the dataset; part of every row's identity
    context: Mapping[str, object] = field(default_factory=dict)
    #: the split the images come from (``"test"``, ``"folder"``, ...): it enters every random stream
    #: (:func:`reguidance.tasks.stream_rng`) and the identity
    split: str = "test"
    #: also run the ablations (:data:`ABLATIONS`; ``more`` only for methods with a step budget)
    ablations: bool = False
    #: flat wrapper options (e.g. ``{"inversion_steps": 10}``) set on top of :meth:`wrapper`'s config, for every
    #: (task, method); part of the identity through the config
    wrapper_overrides: dict[str, Any] = field(default_factory=dict)
    #: a tuned table file (``reguidance tune-defaults --write``) in place of the package's for this protocol and
    #: prior; it must hold every (task, method) of the spec (:func:`.defaults.check_table`)
    tuned: str | None = None
    _memo: dict[tuple[str, ...], Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _cached(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def variants(self, task: str, method: str, chain: int = CHAIN_LENGTH) -> tuple[str, ...]:
        """The variants each image of ``method`` on ``task`` gets under this spec. ``more`` (the method given the
        wrapper's extra evaluations as more steps) only for a method with a step budget below the prior's ``chain``
        levels: at the chain's length (DPS at its reference 1000 steps) it cannot take more steps."""
        if not self.ablations:
            return ("candidate", "reguidance")
        config = self.method(task, method)
        steps = config.options()[config.budget_option] if config.budget_option is not None else None
        more = isinstance(steps, int) and steps < chain
        return ("candidate", "reguidance", "renoise", "fresh", *(("more",) if more else ()))

    @property
    def prior(self) -> str:
        """The prior's name (its tuned table, if any, gives the defaults)."""
        return str(self.context.get("prior", "mnist"))

    def task(self, name: str) -> Task:
        """The parsed task ``name`` (parsed once per spec)."""
        return self._cached(("task", name), lambda: get_task(name))

    def _overrides(self, method: str) -> dict[str, object]:
        """The spec's overrides of ``method``; the sanity methods (``mean``, ``retrieval``) read the training split
        of the run's dataset (``context["dataset"]``) unless the overrides name another."""
        own = dict(self.method_options.get(method, {}))
        if method in SANITY:
            own = {"dataset": self.context.get("dataset"), **own}
        return own

    def method(self, task: str, method: str) -> Method:
        """``method``'s config on ``task`` (:func:`.defaults.method_for` with this spec's overrides; checked)."""
        return self._cached(
            ("method", task, method),
            lambda: method_for(
                self.task(task),
                method,
                self.protocol,
                prior=self.prior,
                table=self.tuned,
                overrides=self._overrides(method),
            ),
        )

    def wrapper(self, task: str, method: str) -> ReGuidance:
        """The wrapper on top of ``method`` on ``task`` (the spec's own, else :func:`.defaults.wrapper_for`), with
        :attr:`wrapper_overrides`."""

        def make() -> ReGuidance:
            if self.reguidance is not None:
                return self.reguidance.replace(**self.wrapper_overrides)
            return wrapper_for(
                self.task(task),
                method,
                self.protocol,
                prior=self.prior,
                table=self.tuned,
                overrides=self.wrapper_overrides,
            )

        return self._cached(("wrapper", task, method), make)

    def ablations_of(self, task: str, method: str) -> dict[str, Method]:
        """The ablations' own tuned configs (:func:`.defaults.ablation_configs`, the wrapper overrides applied to
        ``renoise`` / ``fresh``) when this spec runs them and no wrapper config is given; else ``{}``. When the
        spec overrides the method's budget (``--steps``) or the wrapper's (``--inversion-steps``, ``--dps-steps``),
        ``more`` keeps its tuned step size but not its tuned budget, which was scaled for the tuned budgets: it is
        scaled again from this run's (:func:`reguidance.app.batch.solve_batch`), so ``more`` still spends the
        wrapper's extra evaluations."""
        if not self.ablations or self.reguidance is not None:
            return {}
        name = method.split(":", 1)[0]
        budget = method_class(method).budget_option
        rescale = budget is not None and (bool(self.wrapper_overrides) or budget in self.method_options.get(name, {}))
        return self._cached(
            ("ablations", task, method),
            lambda: ablation_configs(
                self.task(task),
                method,
                self.protocol,
                prior=self.prior,
                table=self.tuned,
                wrapper_overrides=self.wrapper_overrides,
                rescale=rescale,
            ),
        )

    def facts(self, task: str, method: str) -> dict[str, object]:
        """Everything that determines the rows of (``task``, ``method``) (ids aside): hashed by :meth:`identity`.
        The configs enter by their serialized options (:meth:`~reguidance.guidance.solve.Method.options`)."""
        own = {v: o.options() for v, o in self.ablations_of(task, method).items()}
        return {
            **({"ablation_options": own} if own else {}),
            **self.context,
            "task": self.task(task).definition(),
            "split": self.split,
            "method": method,
            "method_options": self.method(task, method).options(),
            "reguidance": self.wrapper(task, method).options(),
            "seed": self.seed,
            "protocol": self.protocol,
        }

    def identity(self, task: str, method: str) -> str:
        """The identity hash that rows of (``task``, ``method``) carry under this spec (computed once)."""
        return self._cached(("identity", task, method), lambda: identity_hash(self.facts(task, method)))

    def check(self, n_images: int | None = None, x_shape: Sequence[int] | None = None) -> None:
        """Refuse (``InputError``) unknown or malformed tasks (and, given the images' ``x_shape``, tasks that do not
        fit it), unknown methods, an empty list, a bad batch size, ids outside ``[0, n_images)``, options a method
        does not take or values of the wrong type (by building every config once), before anything runs."""
        if not self.tasks:
            raise InputError("tasks is empty: name at least one task")
        if not self.methods:
            raise InputError("methods is empty: name at least one method")
        for t in self.tasks:
            task = self.task(t)
            if x_shape is not None:
                task.check(x_shape)
        for m in self.methods:
            method_class(m)
        if self.tuned is not None:
            check_table(
                self.tuned, self.protocol, self.prior, [(self.task(t), m) for t in self.tasks for m in self.methods]
            )
        check_positive_int("batch-size", self.batch_size)
        id_span(self.ids)  # not empty (a range is checked arithmetically, never walked)
        if n_images is not None:
            check_ids(self.ids, n_images, "ids")
        for m, opts in self.method_options.items():
            for key, value in opts.items():
                if key == "steps" or key.endswith("_steps"):
                    check_positive_int(f"{m} {key}", value)
        for t in self.tasks:
            for m in self.methods:
                config = self.method(t, m)
                if not self.task(t).linear and config.linear_only():
                    raise InputError(
                        f"method {m} needs a linear operator but task {t} is nonlinear; run it with methods that "
                        "differentiate through the forward model (dps, daps, mean, retrieval)"
                    )
                self.wrapper(t, m)
                self.ablations_of(t, m)
                self.check_levels(t, m)

    def check_levels(self, task: str, method: str, chain: int = CHAIN_LENGTH) -> None:
        """Refuse step counts beyond a ``chain``-level prior's levels (:func:`reguidance.diffusion.check_levels`):
        the method's ``steps`` and the wrapper's ``inversion_steps`` and ``dps_steps`` (up to its ``t_end``); the
        message starts with the option's name (the CLI names the flag)."""
        steps = self.method(task, method).options().get("steps")
        if isinstance(steps, int):
            check_levels("steps", steps, chain)
        cfg = self.wrapper(task, method)
        check_levels("inversion_steps", cfg.inversion_steps, chain, cfg.t_end)
        check_levels("dps_steps", cfg.dps_steps, chain, cfg.t_end)


def done_variants(rows: list[Row], spec: BenchSpec | None = None) -> dict[tuple[str, str, int], set[str]]:
    """The variants written for each (task, method, id) (with ``spec``: only rows that carry the identity ``spec``
    gives them)."""
    seen: dict[tuple[str, str, int], set[str]] = {}
    for r in rows:
        if spec is not None and r.get("run") != spec.identity(str(r["task"]), str(r["method"])):
            continue
        seen.setdefault((str(r["task"]), str(r["method"]), int(r["id"])), set()).add(variant_of(r))
    return seen


def done_keys(rows: list[Row], spec: BenchSpec | None = None) -> set[tuple[str, str, int]]:
    """(task, method, id) triples with every variant written (candidate and ReGuidance, and the ablations when
    ``spec`` asks for them)."""
    return {
        k
        for k, v in done_variants(rows, spec).items()
        if set(spec.variants(k[0], k[1]) if spec is not None else ("candidate", "reguidance")) <= v
    }


def _folder(out: Path, rank: int = 0, world_size: int = 1, kind: str = "bench") -> RunFolder:
    return RunFolder(out, "results", ROW_KEYS, rank=rank, world_size=world_size, fields=ROW_FIELDS, kind=kind)


def check_folder(spec: BenchSpec, out: Path, rows: list[Row]) -> None:
    """Refuse (``InputError``) a folder holding rows whose identity differs from what ``spec`` gives them."""

    def recorded(config: Mapping[str, Any], r: Mapping[str, Any]) -> Mapping[str, object]:
        return next(x["facts"] for x in config["runs"] if x["task"] == r["task"] and x["method"] == r["method"])

    _folder(out).refuse_other_settings(
        rows,
        identity=lambda r: spec.identity(str(r["task"]), str(r["method"])),
        facts=lambda r: spec.facts(str(r["task"]), str(r["method"])),
        recorded=recorded,
        subject=lambda r: f"results of {r['task']}/{r['method']}",
        fallback="the rows carry no matching identity",
    )


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rows_for(
    task: str,
    method: str,
    variant: str,
    ids: Sequence[int],
    x: Tensor,
    raw: Tensor,
    truth: Tensor,
    y: Tensor,
    operator: Operator,
    labels: Tensor,
    classifier: Classifier | None,
    nfe: int,
    seconds: float,
    mem: float,
    lpips: Distance | None = None,
) -> list[Row]:
    """One row per image of ``variant``: PSNR, the standard SSIM ``ssim`` (with ``ssim_kind``, see
    :mod:`.records`) and torchmetrics' padded variant ``ssim_padded``, LPIPS (if given) against the truth;
    ``consistency`` ``||A x - y|| / (sigma_y sqrt(m))`` and ``reward`` ``-||y - A x||^2`` of the clamped output ``x``,
    and ``consistency_raw`` of the output before the clamp (``raw``); the fit of the output before the clamp to the
    noise law, ``fit_z`` (:func:`reguidance.evaluation.metrics.fit_z`, about N(0, 1) when it explains ``y`` up to the
    noise) and ``fit_p``, its two-sided chi-square p-value with ``fit_dof`` (= m) degrees of freedom
    (:func:`reguidance.evaluation.metrics.fit_p`); the classifier's prediction (if given), and with a
    :class:`reguidance.evaluation.classifier.RealismScorer` the per-image realism ``confidence`` and ``knn_dist``."""
    p, s, s_padded = psnr(x, truth), ssim(x, truth), ssim_padded(x, truth)
    residual = operator.residual_norm(raw, y)
    fit = fit_z(residual, operator.sigma_y, operator.num_measurements)
    fit_pv = fit_p(residual, operator.sigma_y, operator.num_measurements)
    dof = torch.as_tensor(operator.num_measurements).expand(len(ids))
    realism = classifier.realism(x) if isinstance(classifier, RealismScorer) else {}
    perceptual = lpips(x, truth) if lpips is not None else None
    cons, cons_raw = operator.consistency(x, y), operator.consistency(raw, y)
    rew = reward(operator, x, y)
    pred = classifier(x).argmax(dim=1) if classifier is not None else None
    rows = []
    for k, i in enumerate(ids):
        row: dict[str, object] = {
            "task": task,
            "method": method,
            "variant": variant,
            "reguidance": variant == "reguidance",
            "id": int(i),
            "psnr": float(p[k]),
            "ssim": float(s[k]),
            "ssim_padded": float(s_padded[k]),
            "ssim_kind": SSIM_KIND,
            "consistency": float(cons[k]),
            "consistency_raw": float(cons_raw[k]),
            "reward": float(rew[k]),
            "label": int(labels[k]),
            "nfe": int(nfe),
            "sec_per_image": seconds,
            "peak_mem_mb": mem,
        }
        if pred is not None:
            row["pred"] = int(pred[k])
        if perceptual is not None:
            row["lpips"] = float(perceptual[k])
        row["fit_z"] = float(fit[k])
        row["fit_p"] = float(fit_pv[k])
        row["fit_dof"] = int(dof[k])
        row.update({name: float(v[k]) for name, v in realism.items()})
        rows.append(row)
    return rows


def _id_ranges(ids: set[int]) -> list[str]:
    """``{0, 1, 2, 5}`` -> ``["0:3", "5:6"]`` (half-open ranges, as ``--ids`` takes them)."""
    spans: list[list[int]] = []
    for i in sorted(ids):
        if spans and spans[-1][1] == i:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1])
    return [f"{a}:{b}" for a, b in spans]


def _write_config(spec: BenchSpec, out: Path, rows: list[Row]) -> None:
    """``out/config.json``: the protocol, whether its table is tuned, the ids the folder covers, and every
    (task, method)'s options and identity (those of this spec and those already in the folder)."""
    ours = [(spec.task(t).name, m) for t in spec.tasks for m in spec.methods]
    pairs = dict.fromkeys([(str(r["task"]), str(r["method"])) for r in rows] + ours)
    config = {
        "protocol": spec.protocol,
        "tuned": is_tuned(spec.protocol, spec.prior, spec.tuned),
        **({"tuned_table": _table_record(spec, list(pairs))} if spec.tuned is not None else {}),
        "seed": spec.seed,
        "context": dict(spec.context),
        "ids": _id_ranges({int(r["id"]) for r in rows} | set(spec.ids)),
        "runs": [
            {
                "task": t,
                "method": m,
                "method_options": spec.method(t, m).options(),
                "reguidance": spec.wrapper(t, m).options(),
                "identity": spec.identity(t, m),
                "facts": spec.facts(t, m),
            }
            for t, m in pairs
        ],
    }
    _folder(out).write_config(config)


def _table_record(spec: BenchSpec, pairs: Sequence[tuple[str, str]]) -> Row:
    """What ``config.json`` keeps of a run's ``--tuned`` table (the report's tuning section reads it from there, not
    from a file that may have moved): its path and sha256, its header, and its entries for the run's ``pairs``."""
    import hashlib

    assert spec.tuned is not None
    table = tuned_table(spec.protocol, spec.prior, spec.tuned)
    wanted = {(t, m.split(":", 1)[0]) for t, m in pairs}
    return {
        **{k: v for k, v in table.items() if k != "entries"},
        "path": spec.tuned,
        "sha256": hashlib.sha256(Path(spec.tuned).read_bytes()).hexdigest(),
        "entries": [e for e in table["entries"] if (e["task"], e["method"]) in wanted],
    }


def candidate_file(out: Path, task: str, method: str, i: int) -> Path:
    """Where image ``i``'s candidate is kept as computed: ``out/candidates/<task>/<method>/<i:05d>.safetensors``."""
    return out / "candidates" / safe_name(task) / safe_name(method) / f"{i:05d}.safetensors"


def _save_candidates(out: Path, task: str, method: str, ids: Sequence[int], candidate: Output, run: str) -> None:
    """Each image's candidate, ``x`` and ``raw`` (float, bit for bit), in its :func:`candidate_file` (written
    atomically, recorded in the folder's manifest), its metadata ``run`` the identity of its rows."""
    from safetensors.torch import save_file

    for k, i in enumerate(ids):
        tensors = {"x": candidate.x[k].detach().cpu().clone(), "raw": candidate.raw[k].detach().cpu().clone()}
        with atomic_path(candidate_file(out, task, method, i)) as tmp:
            save_file(tensors, str(tmp), metadata={"run": run})


def load_candidates(
    out: Path, task: str, method: str, ids: Sequence[int], run: str, device: torch.device
) -> tuple[Tensor, Tensor] | None:
    """The candidates ``x`` and ``raw`` (B, C, H, W) that :func:`_save_candidates` kept for ``ids``, on ``device``;
    None when one is missing, unreadable or of another run (an older folder: the caller recomputes them)."""
    from safetensors import SafetensorError, safe_open

    xs, raws = [], []
    for i in ids:
        path = candidate_file(out, task, method, i)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("run") != run:
                    return None
                xs.append(f.get_tensor("x"))
                raws.append(f.get_tensor("raw"))
        except (OSError, SafetensorError):
            return None
    return torch.stack(xs).to(device), torch.stack(raws).to(device)


#: a row written earlier, by (task, method, id, variant)
Written = dict[tuple[str, str, int, str], Row]


def _written(rows: list[Row], spec: BenchSpec) -> Written:
    """The rows that carry the identity ``spec`` gives them, by (task, method, id, variant)."""
    return {
        (str(r["task"]), str(r["method"]), int(r["id"]), variant_of(r)): r
        for r in rows
        if r.get("run") == spec.identity(str(r["task"]), str(r["method"]))
    }


def _run_batch(
    prior: Prior,
    images: Tensor | ImageFolder,
    labels: Tensor,
    spec: BenchSpec,
    task: Task,
    name: str,
    chunk: list[int],
    out: Path,
    classifier: Classifier | None,
    lpips: Distance | None,
    variants: Sequence[str],
    written: Written,
    append: Callable[[list[Row]], None],
    progress: bool = False,
) -> None:
    """The missing ``variants`` of the images ``chunk`` (:func:`reguidance.app.batch.solve_batch`, with its per-step
    bars when ``progress``): each variant's rows given to ``append`` and its pictures saved as soon as it is computed.

    The candidate's float output is saved too (:func:`_save_candidates`); when its rows are ``written`` already it
    is read back instead of recomputed (its NFE and time from its rows), or recomputed (same draws, same output)
    where it was not saved. ``more`` without ``reguidance`` takes the wrapper's NFE from its written row. Every
    image of ``chunk`` has the same variants written, with the same NFE (:func:`run_bench` groups them so)."""
    device = prior.device
    run = spec.identity(task.name, name)
    truth = images[list(chunk)].to(device)
    operator, y = task.measure(truth, chunk, spec.seed, split=spec.split)
    folder = out / "images" / safe_name(task.name) / safe_name(name)
    with torch.no_grad():
        shown = operator.picture(y).clamp(-1, 1)  # y itself, the size of an image
    for kind, xs in {"truth": truth, "measurement": shown}.items():
        save_pngs(xs, [folder / f"{i:05d}_{kind}.png" for i in chunk])

    def earlier(variant: str) -> Row | None:
        return written.get((task.name, name, chunk[0], variant))

    candidate: Output | None = None
    cand_row = earlier("candidate")
    saved = load_candidates(out, task.name, name, chunk, run, device) if cand_row is not None else None
    if cand_row is not None and saved is not None:
        seconds = [float(written[(task.name, name, i, "candidate")]["sec_per_image"]) for i in chunk]
        candidate = Output(*saved, int(cand_row["nfe"]), sum(seconds) / len(seconds))
    wrapper_row = earlier("reguidance")
    lab = labels[list(chunk)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def on_output(variant: str, o: Output) -> None:
        if variant == "candidate":
            _save_candidates(out, task.name, name, chunk, o, run)
        if variant not in variants:  # a candidate recomputed for the variants built on it: its rows are written
            return
        mem = _peak_mem_mb(device)  # the batch's peak so far
        rows = _rows_for(
            task.name,
            name,
            variant,
            chunk,
            o.x,
            o.raw,
            truth,
            y,
            operator,
            lab,
            classifier,
            o.nfe,
            o.seconds,
            mem,
            lpips,
        )
        save_pngs(o.x, [folder / f"{i:05d}_{variant}.png" for i in chunk])
        append(rows)

    solve_batch(
        prior,
        operator,
        y,
        chunk,
        seed=spec.seed,
        task=task.name,
        split=spec.split,
        name=name,
        method=spec.method(task.name, name),
        config=spec.wrapper(task.name, name),
        variants=variants,
        candidate=candidate,
        variant_options=spec.ablations_of(task.name, name),
        wrapper_nfe=int(wrapper_row["nfe"]) if wrapper_row is not None else None,
        on_output=on_output,
        progress=progress,
    )


def run_bench(
    prior: Prior,
    images: Tensor | ImageFolder,
    labels: Tensor,
    spec: BenchSpec,
    out: Path,
    *,
    manifest: list[Row] | None = None,
    classifier: Classifier | None = None,
    lpips: Distance | None = None,
    progress: bool = True,
    stop_after_batches: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    overwrite: bool = False,
    kind: str = "bench",
) -> Path:
    """Run ``spec`` on test images ``images[i]`` (indexed by id) into ``out``; returns the results file written.

    Sharded runs (``world_size > 1``, e.g. under ``torchrun``): rank ``r`` takes the ids at positions
    ``r, r + world_size, ...`` of ``spec.ids`` and writes ``results.rank<r>.jsonl``; what any file in ``out``
    already holds is skipped, so a rerun with another number of processes resumes too.
    ``stop_after_batches`` stops early (used by the resume test to simulate a kill between batches).
    ``overwrite`` (rank 0) first deletes the files an earlier run recorded in ``out``'s manifest
    (:func:`reguidance.app.runs.clear_outputs`); otherwise a folder holding another run's rows is refused. ``out``
    must be new, empty or a folder a ``kind`` run made (:func:`reguidance.app.runs.own_folder`).
    ``images`` is a tensor ``(N, C, H, W)`` indexed by id or an :class:`.inputs.ImageFolder`; ``(C, H, W)`` must
    be the prior's ``signal_shape``. ``manifest`` (a folder's files, see :meth:`.inputs.ImageFolder.manifest`) is
    written to ``out/manifest.json``.
    """
    shape = images.shape if isinstance(images, ImageFolder) else tuple(images.shape[1:])
    check_images_fit(shape, prior.signal_shape, "the dataset", str(spec.context.get("prior", "given")))
    spec.check(len(images), shape)
    for t in spec.tasks:  # a checkpoint's own chain length is known only now
        for m in spec.methods:
            spec.check_levels(spec.task(t).name, m, len(prior.schedule))
    tasks = [spec.task(t) for t in spec.tasks]
    methods = list(spec.methods)
    folder = _folder(out, rank, world_size, kind)
    with folder.open(overwrite) as rows:
        check_folder(spec, out, rows)
        if rank == 0:
            _write_config(spec, out, rows)
            if manifest is not None:
                atomic_write_json(out / "manifest.json", manifest)
        written = _written(rows, spec)
        mine = list(spec.ids)[rank::world_size]
        chain = len(prior.schedule)

        def state(t: str, m: str, i: int) -> tuple[tuple[str, ...], object, object]:
            """The variants image ``i`` still needs, and the NFE of its candidate and wrapper rows (if written)."""
            missing = tuple(v for v in spec.variants(t, m, chain) if (t, m, i, v) not in written)
            cand, wrapper = (written.get((t, m, i, v), {}).get("nfe") for v in ("candidate", "reguidance"))
            return missing, cand, wrapper

        # images are solved in batches of those that need the same variants (and the same NFE behind them)
        todo: list[tuple[Task, str, tuple[str, ...], list[int]]] = []
        for task in tasks:
            for name in methods:
                groups: dict[tuple[tuple[str, ...], object, object], list[int]] = {}
                for i in mine:
                    key = state(task.name, name, i)
                    if key[0]:
                        groups.setdefault(key, []).append(i)
                todo += [(task, name, key[0], ids) for key, ids in groups.items()]
        total = sum(len(ids) for *_, ids in todo)
        batches = 0
        with folder.log.open("a") as log, tqdm(total=total, disable=not progress, desc="bench", unit="img") as bar:
            for task, name, variants, ids in todo:
                run = spec.identity(task.name, name)

                def append(new: list[Row], run: str = run) -> None:
                    folder.append(log, [{**r, "run": run} for r in new])  # one variant of the batch at once

                for start in range(0, len(ids), spec.batch_size):
                    if stop_after_batches is not None and batches >= stop_after_batches:
                        return folder.log
                    chunk = ids[start : start + spec.batch_size]
                    _run_batch(
                        prior,
                        images,
                        labels,
                        spec,
                        task,
                        name,
                        chunk,
                        out,
                        classifier,
                        lpips,
                        variants,
                        written,
                        append,
                        progress,
                    )
                    bar.update(len(chunk))
                    batches += 1
            return folder.log
