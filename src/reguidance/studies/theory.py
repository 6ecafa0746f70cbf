r"""The paper's theorem, measured on an exact-score Gaussian mixture (``reguidance theory``).

Setting: a K-component mixture in dimension d whose components are concentrated near low-dimensional affine
subspaces (the "data manifold"), a linear operator ``A`` (m x d, m < d, entries N(0, 1/d)) and measurement noise
``sigma_y``; ground truths ``x ~ p``, measurements ``y = A x + sigma_y n``. Because the score is exact, every
error below is the algorithm's, not the network's.

- *candidate*: a baseline that drifts off the manifold — DPS with too few steps (``--candidate dps``) or the
  pseudo-inverse ``A^+ y`` (``--candidate pinv``);
- *reguidance*: the wrapper on each candidate (DPS from the candidate's probability-flow inversion at ``t_end``);
- *renoise* and *fresh*: the wrapper's two ablations, the same DPS from the same level ``t_end`` but started from the
  candidate forward-noised to that level (SDEdit + DPS) or from fresh noise there; they show the mechanism — what
  the inverted latent carries that re-noising loses;
- *dps*: DPS from fresh noise with the same number of network evaluations as ReGuidance;
- *posterior*: exact samples of p(x | y), the target every sampler aims at.

Reported per method: mean reward ``-||y - A x||^2``, mean manifold distance (Mahalanobis distance to the nearest
component), mean negative log-density under the prior, mode accuracy (fraction of samples whose nearest component
is the exact posterior's most likely component) and network evaluations; paired differences (per problem, 95%
intervals) of reguidance minus candidate, minus renoise and minus fresh; and the inversion round-trip error on prior
samples and on candidates. ReGuidance and its two ablations draw from the same per-problem generators (stream 3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..conventions import BatchRNG, InputError, check_nonnegative, check_positive_int, check_seed, derive_seed
from ..diffusion import Schedule, check_levels
from ..evaluation.metrics import mean_ci95, proportion_ci95
from ..evaluation.stats import paired_comparison
from ..guidance.dps import dps
from ..inversion import roundtrip_error
from ..operators import MatrixOperator
from ..priors.gmm import GaussianMixture, GaussianMixturePosterior, GMMPrior
from ..wrapper import ReGuidance, Start, reguide, reward

if TYPE_CHECKING:
    from ..io.files import Record

__all__ = [
    "ABLATIONS",
    "SWEEP_GRID",
    "Testbed",
    "TheoryConfig",
    "choose_defaults",
    "format_markdown",
    "format_sweep",
    "format_table",
    "make_testbed",
    "problem_stream",
    "run_theory",
    "save_projection_plot",
    "sweep_theory",
    "write_json",
]


@dataclass(frozen=True)
class TheoryConfig:
    """Options of the experiment; the defaults run in well under a minute on 2 CPU cores."""

    dim: int = 16
    modes: int = 4
    rank: int = 2
    measurements: int = 2
    noise: float = 0.5
    candidates: int = 256
    #: seeds the problems (truths, noise, every sampler's draws); the reported table uses 1, the sweep 0
    seed: int = 1
    #: seeds the testbed itself (the mixture and the measurement matrix), shared by the sweep and the report
    testbed_seed: int = 0
    candidate: str = "dps"
    candidate_steps: int = 10
    candidate_step_size: float = 1.0
    #: the wrapper under test (its defaults are the library's)
    reguidance: ReGuidance = field(default_factory=ReGuidance)

    def __post_init__(self) -> None:
        for name in ("dim", "modes", "rank", "measurements", "candidates", "candidate_steps"):
            check_positive_int(name, getattr(self, name))
        check_nonnegative("noise", self.noise)
        if self.measurements > self.dim:
            raise InputError(f"measurements must be at most dim={self.dim}, got {self.measurements}")
        if self.rank > self.dim:
            raise InputError(f"rank must be at most dim={self.dim}, got {self.rank}")
        if self.candidate not in ("dps", "pinv"):
            raise InputError(f"candidate must be 'dps' or 'pinv', got {self.candidate!r}")
        check_seed("seed", self.seed)
        check_seed("testbed_seed", self.testbed_seed)
        if not isinstance(self.reguidance, ReGuidance):
            raise InputError(f"reguidance must be a ReGuidance config, got {type(self.reguidance).__name__}")
        cfg = self.reguidance
        check_levels("inversion_steps", cfg.inversion_steps, t_end=cfg.t_end)  # the testbed's 1000-level chain
        check_levels("dps_steps", cfg.dps_steps, t_end=cfg.t_end)
        check_levels("candidate_steps", self.candidate_steps)

    def with_options(self, **options: Any) -> TheoryConfig:
        """This config with some fields changed: the experiment's own, or the wrapper's flat options
        (:meth:`reguidance.wrapper.ReGuidance.options`: ``t_end``, ``step_size``, ...)."""
        own = {k: v for k, v in options.items() if k in {f.name for f in fields(self)}}
        wrapper = {k: v for k, v in options.items() if k not in own}
        return replace(self, **own, reguidance=self.reguidance.replace(**wrapper))

    def facts(self) -> dict[str, Any]:
        """The config as a flat JSON-able dict: the experiment's fields and the wrapper's flat options."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "reguidance"}
        return {**own, **self.reguidance.options()}


def _measurement_matrix(cfg: TheoryConfig) -> Tensor:
    g = torch.Generator().manual_seed(cfg.testbed_seed + 7919)
    return torch.randn(cfg.measurements, cfg.dim, generator=g, dtype=torch.float64) / cfg.dim**0.5


def problem_stream(cfg: TheoryConfig, k: int, ids: range) -> BatchRNG:
    """Per-problem generators of stream ``k`` (0 truths, 1 noise, 2 candidates, 3 ReGuidance and its ablations,
    4 fresh DPS, 5 posterior samples) of the run seeded with ``cfg.seed``; distinct seeds give unrelated streams."""
    return BatchRNG.from_seed(derive_seed(cfg.seed, k), ids)


#: the wrapper's starts other than the inversion, reported next to it (:class:`reguidance.wrapper.ReGuidance`)
ABLATIONS: tuple[Start, ...] = ("renoise", "fresh")


@dataclass
class Testbed:
    """The problems of a run: the ``mixture`` and its ``prior`` (linear schedule, 1000 levels), the ``operator``
    (``m x d`` matrix, noise ``sigma_y``), ``truth`` (n, d) and measurements ``y`` (n, m), the exact ``posterior``
    and its most likely component per problem, and the ``candidate`` (n, d) with its network evaluations."""

    mixture: GaussianMixture
    prior: GMMPrior
    operator: MatrixOperator
    ids: range
    truth: Tensor
    y: Tensor
    posterior: GaussianMixturePosterior
    best_mode: Tensor
    candidate: Tensor
    candidate_nfe: int


def make_testbed(cfg: TheoryConfig, progress: bool = False) -> Testbed:
    """The mixture, the measurement matrix (both from ``cfg.testbed_seed``), and ``cfg.candidates`` problems with
    their candidates (streams 0-2 of ``cfg.seed``)."""
    mixture = GaussianMixture.random(cfg.dim, cfg.modes, rank=cfg.rank, seed=cfg.testbed_seed)
    prior = GMMPrior(mixture, Schedule.linear())
    operator = MatrixOperator(_measurement_matrix(cfg), sigma_y=cfg.noise)
    ids = range(cfg.candidates)
    truth, _ = mixture.sample(problem_stream(cfg, 0, ids))
    truth = truth.to(torch.float64)
    y = operator.measure(truth, problem_stream(cfg, 1, ids))
    posterior = mixture.posterior(operator.matrix(), y, cfg.noise)
    if cfg.candidate == "dps":
        cand = dps(
            prior,
            operator,
            y,
            levels=prior.schedule.spaced(cfg.candidate_steps),
            step_size=cfg.candidate_step_size,
            sampler="ddpm",
            rng=problem_stream(cfg, 2, ids),
            progress=progress,
        )
        candidate, candidate_nfe = cand.x, cand.nfe
    else:
        candidate, candidate_nfe = operator.pinv(y), 0
    return Testbed(
        mixture, prior, operator, ids, truth, y, posterior, posterior.most_likely_component(), candidate, candidate_nfe
    )


def _method_metrics(
    x: Tensor, mixture: GaussianMixture, operator: MatrixOperator, y: Tensor, best_mode: Tensor, nfe: int
) -> Record:
    r = reward(operator, x, y)
    dist = mixture.manifold_distance(x)
    nll = -mixture.log_prob(x)
    acc = (mixture.nearest_component(x) == best_mode).double()
    return {
        "reward": float(r.mean()),
        "manifold_distance": float(dist.mean()),
        "nll": float(nll.mean()),
        "mode_accuracy": float(acc.mean()),
        "nfe": int(nfe),
        "n": int(x.shape[0]),
        "ci95": {
            "reward": mean_ci95(r)["ci95"],
            "manifold_distance": mean_ci95(dist)["ci95"],
            "nll": mean_ci95(nll)["ci95"],
            "mode_accuracy": proportion_ci95(acc)["ci95"],  # Wilson: stays inside [0, 1]
        },
        "_per_sample": {"reward": r, "manifold_distance": dist, "nll": nll, "mode_accuracy": acc},
    }


def run_theory(cfg: TheoryConfig, progress: bool = False) -> tuple[Record, dict[str, Tensor]]:
    """Run the experiment; returns the JSON-ready report and the point clouds (for the picture)."""
    tb = make_testbed(cfg, progress)
    mixture, prior, operator, y, best_mode = tb.mixture, tb.prior, tb.operator, tb.y, tb.best_mode
    truth, candidate, candidate_nfe, ids = tb.truth, tb.candidate, tb.candidate_nfe, tb.ids
    base = prior.schedule

    rg_cfg = cfg.reguidance
    rg = reguide(candidate, y, operator, prior, config=rg_cfg, rng=problem_stream(cfg, 3, ids), progress=progress)
    ablations = {
        start: reguide(
            candidate,
            y,
            operator,
            prior,
            config=rg_cfg.replace(start=start),
            rng=problem_stream(cfg, 3, ids),
            progress=progress,
        )
        for start in ABLATIONS
    }
    budget = rg.nfe
    fresh = dps(
        prior,
        operator,
        y,
        levels=base.spaced(min(budget, len(base))),
        step_size=rg_cfg.step_size,
        sampler=rg_cfg.dps.sampler,
        eta=rg_cfg.dps.eta,
        rng=problem_stream(cfg, 4, ids),
        progress=progress,
    )
    post = tb.posterior.sample(problem_stream(cfg, 5, ids)).to(torch.float64)

    methods: dict[str, Record] = {
        "candidate": _method_metrics(candidate, mixture, operator, y, best_mode, candidate_nfe),
        "reguidance": _method_metrics(rg.x, mixture, operator, y, best_mode, candidate_nfe + rg.nfe),
        **{
            start: _method_metrics(out.x, mixture, operator, y, best_mode, candidate_nfe + out.nfe)
            for start, out in ablations.items()
        },
        "dps": _method_metrics(fresh.x, mixture, operator, y, best_mode, fresh.nfe),
        "posterior": _method_metrics(post, mixture, operator, y, best_mode, 0),
    }
    per = {name: m.pop("_per_sample") for name, m in methods.items()}
    higher = {"reward": True, "manifold_distance": False, "nll": False}

    def minus(other: str) -> Record:
        return {k: paired_comparison(per["reguidance"][k], per[other][k], h) for k, h in higher.items()}

    inv_opts = {"steps": rg_cfg.inversion_steps, "t_end": 1.0, "method": rg_cfg.inversion_method}
    roundtrip_prior = roundtrip_error(prior, truth, base, **inv_opts)
    roundtrip_cand = roundtrip_error(prior, candidate, base, **inv_opts)
    report = {
        "config": cfg.facts(),
        "methods": methods,
        "reguidance_minus_candidate": minus("candidate"),
        **{f"reguidance_minus_{start}": minus(start) for start in ABLATIONS},
        "inversion_roundtrip_rel_error": float(roundtrip_prior.mean()),
        "candidate_roundtrip_rel_error": float(roundtrip_cand.mean()),
        "seconds_reguidance": rg.seconds,
    }
    clouds: dict[str, Tensor] = {
        "truth": truth,
        "candidate": candidate,
        "reguidance": rg.x,
        **{start: out.x for start, out in ablations.items()},
        "dps": fresh.x,
        "posterior": post,
        "means": mixture.means,
    }
    return report, clouds


#: what each row of the report is, for the tables
METHOD_NAMES = {
    "candidate": "candidate",
    "reguidance": "**reguidance** (inverted latent at t_end, then DPS)",
    "renoise": "renoise (candidate re-noised to t_end, same DPS)",
    "fresh": "fresh (fresh noise at t_end, same DPS)",
    "dps": "dps (fresh noise, full chain, same budget)",
    "posterior": "exact posterior samples",
}


def _paired_entries(report: Record) -> list[tuple[str, Record]]:
    """``(against, {metric: paired difference})`` for every ``reguidance_minus_<against>`` of the report."""
    prefix = "reguidance_minus_"
    return [(k[len(prefix) :], v) for k, v in report.items() if k.startswith(prefix)]


def format_markdown(report: Record) -> str:
    """The report as the README's markdown table (means with 95% intervals) and its paired lines."""
    lines = [
        "| method | reward −‖y − Ax‖² | manifold distance | NLL | mode accuracy | NFE |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in report["methods"].items():
        cells = []
        for c in ("reward", "manifold_distance", "nll", "mode_accuracy"):
            lo, hi = m["ci95"][c]
            cells.append(f"{m[c]:.3g} [{lo:.3g}, {hi:.3g}]")
        lines.append(f"| {METHOD_NAMES.get(name, name)} | {' | '.join(cells)} | {m['nfe'] if m['nfe'] else '—'} |")
    lines.append("")
    n = next(iter(report["methods"].values())).get("n")
    for against, entry in _paired_entries(report):
        paired = []
        for k, v in entry.items():
            lo, hi = v["ci95"]
            paired.append(f"{k} {v['mean']:+.3g} [{lo:+.3g}, {hi:+.3g}] ({v['win_rate']:.0%} of problems improve)")
        lines.append(f"Paired, per problem (n = {n}), ReGuidance minus {against}: " + "; ".join(paired) + ".")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def format_table(report: Record) -> str:
    """The report as a plain-text table."""
    methods: dict[str, Record] = report["methods"]
    cols = ("reward", "manifold_distance", "nll", "mode_accuracy", "nfe")
    lines = [f"{'method':<12}" + "".join(f"{c:>20}" for c in cols)]
    for name, m in methods.items():
        cells = []
        for c in cols:
            if c == "nfe":
                cells.append(f"{m[c]:>20d}")
            else:
                lo, hi = m["ci95"][c]
                cells.append(f"{m[c]:>9.3f} [{lo:.2f},{hi:.2f}]".rjust(20))
        lines.append(f"{name:<12}" + "".join(cells))
    for against, entry in _paired_entries(report):
        lines.append("")
        lines.append(f"reguidance - {against} (paired, 95% interval, fraction of problems improved):")
        for k, v in entry.items():
            lo, hi = v["ci95"]
            lines.append(f"  {k:<18} {v['mean']:+.4f}  [{lo:+.4f}, {hi:+.4f}]  win rate {v['win_rate']:.2f}")
    lines.append(
        f"inversion round trip (relative L2): prior samples {report['inversion_roundtrip_rel_error']:.2e}, "
        f"candidates {report['candidate_roundtrip_rel_error']:.2e}"
    )
    return "\n".join(lines)


def save_projection_plot(clouds: dict[str, Tensor], path: str | Path) -> Path:
    """Scatter the point clouds on the plane of the two leading principal directions of the mixture's means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = clouds["means"].double()
    centred = means - means.mean(0)
    if means.shape[0] >= 3:
        basis = torch.linalg.svd(centred, full_matrices=False).Vh[:2]
    else:
        allx = torch.cat([clouds["posterior"], clouds["candidate"]]).double()
        basis = torch.linalg.svd(allx - allx.mean(0), full_matrices=False).Vh[:2]
    origin = means.mean(0)

    def proj(x: Tensor) -> Tensor:
        return (x.double() - origin) @ basis.T

    fig, axes = plt.subplots(1, 3, figsize=(15, 5), sharex=True, sharey=True)
    post = proj(clouds["posterior"])
    for ax, name, colour in zip(
        axes, ("candidate", "reguidance", "dps"), ("tab:red", "tab:green", "tab:blue"), strict=True
    ):
        ax.scatter(*post.T, s=6, c="lightgray", label="exact posterior")
        pts = proj(clouds[name])
        ax.scatter(*pts.T, s=6, c=colour, label=name)
        ax.scatter(*proj(means).T, marker="x", c="k", s=60, label="component means")
        ax.set_title(name)
        ax.legend(loc="best", fontsize=8)
    c, r = proj(clouds["candidate"])[:40], proj(clouds["reguidance"])[:40]
    for a, b in zip(c, r, strict=True):
        axes[1].annotate(
            "",
            xy=tuple(b.tolist()),
            xytext=tuple(a.tolist()),
            arrowprops={"arrowstyle": "->", "color": "gray", "lw": 0.5},
        )
    fig.suptitle("2-D projection (principal plane of the mixture means); arrows: candidate -> ReGuidance")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_json(report: Record, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


#: the grid that chose the wrapper's defaults (README, "Choosing the defaults")
SWEEP_GRID: dict[str, tuple[object, ...]] = {
    "sampler": ("ddim", "ddpm"),
    "t_end": (0.3, 0.6, 1.0),
    "step_size": (0.05, 0.2, 0.5),
}


def sweep_theory(base: TheoryConfig, grid: dict[str, tuple[object, ...]] | None = None) -> list[Record]:
    """Run the experiment for every combination of ``grid`` (default :data:`SWEEP_GRID`) on top of ``base``.

    Each row holds the options and, for ReGuidance, the mean reward, manifold distance and mode accuracy with the
    paired improvements over the candidate (95% intervals), next to fresh DPS at the same budget.
    """
    import itertools

    from tqdm.auto import tqdm

    grid = grid or SWEEP_GRID
    rows = []
    combos = list(itertools.product(*grid.values()))
    for values in tqdm(combos, desc="theory sweep"):
        options: dict[str, Any] = dict(zip(grid.keys(), values, strict=True))
        report, _ = run_theory(base.with_options(**options))
        m: dict[str, Record] = report["methods"]
        imp: dict[str, Record] = report["reguidance_minus_candidate"]
        rows.append(
            {
                **options,
                "reward": m["reguidance"]["reward"],
                "manifold_distance": m["reguidance"]["manifold_distance"],
                "mode_accuracy": m["reguidance"]["mode_accuracy"],
                "reward_gain": imp["reward"],
                "manifold_distance_change": imp["manifold_distance"],
                "dps_reward": m["dps"]["reward"],
                "dps_manifold_distance": m["dps"]["manifold_distance"],
                "dps_mode_accuracy": m["dps"]["mode_accuracy"],
                "candidate_reward": m["candidate"]["reward"],
                "candidate_manifold_distance": m["candidate"]["manifold_distance"],
            }
        )
    return rows


def choose_defaults(rows: list[Record]) -> Record:
    """The rule that picked the defaults: among the options whose paired reward gain has a 95% interval entirely
    above zero, the one that lowers the manifold distance most."""
    ok = [r for r in rows if r["reward_gain"]["ci95"][0] > 0]
    if not ok:
        raise ValueError("no configuration raised the reward significantly")
    return min(ok, key=lambda r: r["manifold_distance_change"]["mean"])


def format_sweep(rows: list[Record]) -> str:
    """The sweep as a plain-text table, one row per option combination."""
    lines = [
        f"{'sampler':<8}{'t_end':>6}{'step':>6}  {'reward gain [95% CI]':>26}  {'manifold change [95% CI]':>28}"
        f"{'mode acc':>9}{'dps reward':>11}{'dps dist':>9}{'dps acc':>8}"
    ]
    for r in rows:
        g, d = r["reward_gain"], r["manifold_distance_change"]
        lines.append(
            f"{r['sampler']:<8}{r['t_end']:>6}{r['step_size']:>6}  "
            f"{g['mean']:+8.3f} [{g['ci95'][0]:+.3f},{g['ci95'][1]:+.3f}]  "
            f"{d['mean']:+9.2f} [{d['ci95'][0]:+.2f},{d['ci95'][1]:+.2f}]  "
            f"{r['mode_accuracy']:>8.2f}{r['dps_reward']:>11.3f}{r['dps_manifold_distance']:>9.2f}"
            f"{r['dps_mode_accuracy']:>8.2f}"
        )
    c = rows[0]
    best = choose_defaults(rows)
    lines.append(
        "chosen (reward gain significant, largest manifold-distance drop): "
        + ", ".join(f"{k}={best[k]}" for k in SWEEP_GRID)
    )
    lines.append(
        f"candidate: reward {c['candidate_reward']:.3f}, manifold distance {c['candidate_manifold_distance']:.2f}"
    )
    return "\n".join(lines)


def format_sweep_markdown(rows: list[Record]) -> str:
    """The sweep as a Markdown table for the README, the chosen row (:func:`choose_defaults`) in bold."""
    best = choose_defaults(rows)
    lines = [
        "| sampler after inversion | t_end | ζ | reward gain [95% CI] | manifold-distance change [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        g, d = r["reward_gain"], r["manifold_distance_change"]
        cells = [
            str(r["sampler"]),
            f"{r['t_end']:g}",
            f"{r['step_size']:g}",
            f"{g['mean']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]",
            f"{d['mean']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]",
        ]
        if r is best:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
