"""The reliability suite: bad files, bad options, user-caused I/O errors, a run's identity, one writer per folder,
kill -9 and Ctrl-C mid-run, restore's naming and pairing, and reproducibility as promised.

Each test names the promise it shows (README, "Reliability"). Runs are tiny: the embedded MNIST prior or a small
random network, two to eight images, a few steps.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from reguidance.app.methods import Pinv
from reguidance.cli import main
from reguidance.conventions import REPRODUCIBILITY_ATOL, InputError, derive_seed

if TYPE_CHECKING:
    from reguidance.priors.adm import ADMPrior

    #: the ``tiny`` fixture: a random-weight ADM prior, images (6, 1, 32, 32) in [-1, 1] and their labels (6,)
    Tiny = tuple[ADMPrior, torch.Tensor, torch.Tensor]

FAST_BENCH = ["bench", "--prior", "mnist", "--tasks", "sr4", "--methods", "pinv", "--protocol", "cpu"]


def one_line_error(capsys, *words: str) -> str:
    """The stderr of a command that failed with a user error: one line, no traceback, naming ``words``."""
    text = capsys.readouterr().err
    err = text.strip().splitlines()[-1]  # progress bars may come before it
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert err.startswith("error: ") and len(errors) == 1 and "Traceback" not in text, text
    for w in words:
        assert w in err, (w, err)
    return err


def mnist_state_dict() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from reguidance.conventions import ASSETS_DIR
    from reguidance.priors.zoo import MODELS

    return load_file(str(ASSETS_DIR / str(MODELS["mnist"].asset)))


# ------------------------------------------------------------------------------------------------ bad options
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--threads", "0"], ["--threads", ">= 1"]),
        (["--steps", "0"], ["--steps", ">= 1"]),
        (["--methods", ","], ["--methods", "names nothing"]),
        (["--tasks", "box99"], ["box99"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--ids", "5:2"], ["--ids"]),
        (["--ids", "9999:10001"], ["9999:10001", "ids 0:"]),
    ],
)
def test_bad_bench_options_fail_at_once_with_one_line_and_write_nothing(tmp_path, capsys, args, words):
    out = tmp_path / "run"
    assert main([*FAST_BENCH, "--ids", "0:2", *args, "--out", str(out)]) == 2
    one_line_error(capsys, *words)
    assert not out.exists()


def test_cuda_without_cuda_is_a_one_line_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main([*FAST_BENCH, "--ids", "0:2", "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
    one_line_error(capsys, "--device", "CUDA is not available")
    assert main(["restore", "--task", "sr4", "--method", "pinv", "--device", "cuda", "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "--device")


def test_sample_with_batch_size_0_names_the_flag(tmp_path, capsys):
    assert main(["sample", "--prior", "mnist", "--batch-size", "0", "--out", str(tmp_path / "s")]) == 2
    one_line_error(capsys, "--batch-size")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("content", "words"), [("[1, 2]", ["holds a JSON list"]), ("{nope", ["not valid JSON"])])
def test_train_config_that_is_not_an_object_names_the_file(tmp_path, capsys, content, words):
    config = tmp_path / "c.json"
    config.write_text(content)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "t")]) == 2
    one_line_error(capsys, str(config), *words)


def test_output_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main([*FAST_BENCH, "--ids", "0:2", "--out", str(tmp_path / "f" / "run")]) == 2
    one_line_error(capsys, "--out")


def test_every_network_command_takes_the_shared_runtime_options():
    from reguidance.cli import DTYPE_NAMES, cli
    from reguidance.conventions import DTYPES

    assert tuple(DTYPES) == DTYPE_NAMES
    for name in ("sample", "bench", "speed", "restore", "demo", "tune", "tune-defaults"):
        opts = {o for p in cli.commands[name].params for o in p.opts}
        assert {"--device", "--dtype", "--threads"} <= opts, name


# ----------------------------------------------------------------------------------------------------- bad files
def _corrupt_files(tmp_path: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    from reguidance.conventions import ASSETS_DIR
    from reguidance.priors.zoo import MODELS

    sd = mnist_state_dict()
    files = {
        "truncated": tmp_path / "truncated.safetensors",
        "random": tmp_path / "random.safetensors",
        "random_pt": tmp_path / "random.pt",
        "int32": tmp_path / "int32.safetensors",
        "nan": tmp_path / "nan.safetensors",
        "folder": tmp_path / "x.pt",
    }
    files["truncated"].write_bytes((ASSETS_DIR / str(MODELS["mnist"].asset)).read_bytes()[:1000])
    rng = np.random.default_rng(0)
    files["random"].write_bytes(rng.bytes(5000))
    files["random_pt"].write_bytes(rng.bytes(5000))
    save_file({k: v.to(torch.int32) if v.is_floating_point() else v for k, v in sd.items()}, str(files["int32"]))
    nan = {k: v.clone() for k, v in sd.items()}
    next(v for v in nan.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    save_file(nan, str(files["nan"]))
    files["folder"].mkdir()
    return files


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("truncated", ["--prior"]),
        ("random", ["--prior"]),
        ("random_pt", ["--prior", "weights_only"]),
        ("int32", ["--prior", "do not load"]),
        ("nan", ["--prior", "1 NaN or Inf"]),
        ("folder", ["--prior", "is a folder"]),
    ],
)
def test_bad_weight_files_are_one_line_errors_before_any_output(tmp_path, capsys, kind, words):
    file = _corrupt_files(tmp_path)[kind]
    out = tmp_path / "run"
    args = [*FAST_BENCH, "--prior", str(file), "--dataset", "mnist", "--ids", "0:2", "--out", str(out)]
    assert main(args) == 2
    one_line_error(capsys, *words)
    assert not out.exists()


def test_bad_lpips_weight_files_are_one_line_errors(tmp_path, capsys):
    for name in ("alex.pth", "lin.pth"):
        (tmp_path / name).write_bytes(np.random.default_rng(1).bytes(3000))
    lp = ["--lpips-alexnet", str(tmp_path / "alex.pth"), "--lpips-lin", str(tmp_path / "lin.pth")]
    assert main([*FAST_BENCH, "--ids", "0:2", *lp, "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, "--lpips")


def test_an_empty_png_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"")
    args = ["restore", "--task", "sr4", "--image", str(tmp_path / "in"), "--method", "pinv"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "a.png")


def test_a_results_row_without_its_keys_is_refused_naming_the_file(tmp_path, capsys):
    from reguidance.bench.runner import read_results

    log = tmp_path / "results.jsonl"
    log.write_text('{"task": "sr4", "method": "pinv", "reguidance": false, "id": 0}\n{}\n{"task": "sr4", "met')
    with pytest.raises(InputError, match=r"results.jsonl, line 2, lacks task"):
        read_results(log)
    log.write_text('{"task": "sr4", "method": "pinv", "reguidance": false, "id": 0}\n{"task": "sr4", "met')
    assert len(read_results(log)) == 1  # a torn last line is a row not yet written


# ----------------------------------------------------------------------------------------- the error contract
def test_a_bug_keeps_its_traceback(monkeypatch):
    import reguidance.studies.theory

    def broken(*args, **kwargs):
        raise ValueError("an internal bug deep inside")

    monkeypatch.setattr(reguidance.studies.theory, "run_theory", broken)
    with pytest.raises(ValueError, match="internal bug"):
        main(["theory", "--candidates", "4"])


def test_a_full_disk_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch, capsys):
    import reguidance.io.files

    target = tmp_path / "report.json"
    target.write_text('{"old": true}')
    (tmp_path / ".reguidance-manifest.jsonl").write_text('{"path": "report.json"}\n')  # written by an earlier run

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(reguidance.io.files.os, "fsync", full)
    args = ["theory", "--dim", "4", "--modes", "2", "--measurements", "1", "--candidates", "4"]
    assert (
        main([*args, "--candidate-steps", "2", "--inversion-steps", "2", "--dps-steps", "2", "--json", str(target)])
        == 2
    )
    one_line_error(capsys, "No space left on device")
    assert target.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == [".reguidance-manifest.jsonl", "report.json"]


def test_atomic_writes_through_libraries_keep_the_suffix_and_leave_nothing_on_failure(tmp_path):
    from reguidance.io.files import atomic_path

    with atomic_path(tmp_path / "a.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png")
    assert (tmp_path / "a.png").read_bytes() == b"png"
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "a.png") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert (tmp_path / "a.png").read_bytes() == b"png" and len(list(tmp_path.iterdir())) == 1


def test_the_api_refuses_non_float_candidates(gmm_prior, gmm_problem):
    from reguidance.wrapper import reguide

    operator, truth, y = gmm_problem
    for dtype in (torch.uint8, torch.bool, torch.int64):
        with pytest.raises(InputError, match="floating-point"):
            reguide(truth.to(dtype), y, operator, gmm_prior, seed=0)


def test_the_api_refuses_an_unavailable_device():
    from reguidance.conventions import check_device

    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="device"):
        check_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            check_device("cuda")


# -------------------------------------------------------------------------------------------- a run's identity
@pytest.fixture(scope="module")
def tiny():
    from reguidance.diffusion import Schedule
    from reguidance.priors.adm import ADMPrior, ADMUNet

    torch.manual_seed(0)
    unet = ADMUNet(32, 1, 32, 1, num_res_blocks=1, attention_resolutions=[], channel_mult=(1, 2), num_head_channels=32)
    prior = ADMPrior(unet, Schedule.linear()).eval()
    images = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return prior, images, torch.arange(6)


def tiny_spec(**kw):
    from reguidance.bench.runner import BenchSpec
    from reguidance.wrapper import ReGuidance

    base = {"tasks": ["sr4"], "methods": ["pinv"], "ids": range(2), "seed": 0, "batch_size": 2}
    return BenchSpec(**{**base, "reguidance": ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True), **kw})


def test_a_changed_seed_into_an_old_folder_is_refused_naming_the_difference(tiny: Tiny, tmp_path):
    from reguidance.bench.runner import read_results, run_bench

    run_bench(*tiny, tiny_spec(ids=range(4)), tmp_path, progress=False)
    with pytest.raises(InputError, match=r"seed: 0 in the folder, 1 now.*--overwrite"):
        run_bench(*tiny, tiny_spec(seed=1), tmp_path, progress=False)
    run_bench(*tiny, tiny_spec(seed=1), tmp_path, progress=False, overwrite=True)
    rows = read_results(tmp_path / "results.jsonl")
    assert sorted(r["id"] for r in rows) == [0, 0, 1, 1]  # the seed-0 rows are gone, not relabelled
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1


def test_a_changed_option_is_refused_and_more_ids_resume(tiny: Tiny, tmp_path):
    from reguidance.bench.runner import read_results, run_bench
    from reguidance.wrapper import ReGuidance

    run_bench(*tiny, tiny_spec(), tmp_path, progress=False)
    first = (tmp_path / "results.jsonl").read_text()
    other = ReGuidance().replace(inversion_steps=2, dps_steps=3, clip=True)
    with pytest.raises(InputError, match="other settings"):
        run_bench(*tiny, tiny_spec(reguidance=other), tmp_path, progress=False)
    run_bench(*tiny, tiny_spec(ids=range(3)), tmp_path, progress=False)
    text = (tmp_path / "results.jsonl").read_text()
    assert text.startswith(first) and len(read_results(tmp_path / "results.jsonl")) == 6  # ids 0, 1 reused
    assert json.loads((tmp_path / "config.json").read_text())["ids"] == ["0:3"]


def test_rows_carry_the_hash_of_what_determines_them(tiny: Tiny, tmp_path):
    import hashlib

    from reguidance.bench.runner import read_results, run_bench

    spec = tiny_spec(context={"prior": "tiny", "prior_sha256": "ab", "dtype": "fp32"})
    run_bench(*tiny, spec, tmp_path, progress=False)
    facts = json.loads((tmp_path / "config.json").read_text())["runs"][0]["facts"]
    assert facts["seed"] == 0 and facts["prior_sha256"] == "ab" and facts["task"]["kind"] == "sr"  # the definition
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    assert {r["run"] for r in read_results(tmp_path / "results.jsonl")} == {
        hashlib.sha256(text.encode()).hexdigest()[:16]
    }
    assert spec.identity("sr4", "pinv") != tiny_spec(context={**spec.context, "dtype": "bf16"}).identity("sr4", "pinv")


def test_a_second_writer_is_refused_by_the_lock(tmp_path, capsys):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from reguidance.app.runs import hold_folder\n"
            "with hold_folder(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main([*FAST_BENCH, "--ids", "0:2", "--out", str(tmp_path / "run")]) == 2
        one_line_error(capsys, "another reguidance process is writing into")
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "run" / "results.jsonl").exists()


# ------------------------------------------------------------------------------------ kill -9 and Ctrl-C mid-run
TINY_CLI = Path(__file__).parent / "scripts" / "tiny_cli.py"  # the command, with a small random network as prior


def _interruptible() -> None:
    """In the child: Ctrl-C's default action, even when the test runner was started with SIGINT ignored (a job
    put in the background by a non-interactive shell, or under nohup, inherits SIG_IGN, and Python keeps it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # reset to the default; Python installs its handler at start


def _start_bench(out: Path, ids: str) -> subprocess.Popen:
    args = [sys.executable, str(TINY_CLI), *FAST_BENCH, "--ids", ids, "--batch-size", "1", "--out", str(out)]
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible
    )


def _wait_for_rows(proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 2:
            return
        time.sleep(0.05)
    raise AssertionError(f"no rows appeared (exit {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}")


def _prefix(log: Path) -> int:
    """The rows of ``log`` are whole lines, none twice, and are the first of ``(id 0, candidate), (id 0,
    ReGuidance), (id 1, candidate), ...``: each variant is written as it finishes, so a stopped run leaves every
    image before the last one complete and the last one with its candidate alone at most. Returns their number."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]  # every line is whole
    keys = sorted((r["id"], r["reguidance"]) for r in rows)
    assert keys == [(i, b) for i in range(len(keys)) for b in (False, True)][: len(keys)]
    return len(keys)


def test_kill_9_mid_run_then_resume_completes_without_duplicates(tmp_path, monkeypatch):
    out = tmp_path / "run"
    proc = _start_bench(out, "0:200")
    _wait_for_rows(proc, out / "results.jsonl")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len((out / "results.jsonl").read_text().splitlines())
    assert 0 < done < 400
    sys.path.insert(0, str(TINY_CLI.parent))
    from tiny_cli import tiny_prior

    monkeypatch.setattr("reguidance.cli.support.load_prior", tiny_prior)  # the same network as the killed process's
    assert main([*FAST_BENCH, "--ids", "0:2", "--batch-size", "1", "--out", str(out)]) == 0
    assert _prefix(out / "results.jsonl") == max(4, done)  # ids 0 and 1 complete, nothing lost or written twice
    assert not [p for p in out.rglob(".*tmp*")]  # no temporary file survived the kill's successor


def test_ctrl_c_exits_130_with_one_line_and_nothing_torn(tmp_path):
    out = tmp_path / "run"
    proc = _start_bench(out, "0:200")
    _wait_for_rows(proc, out / "results.jsonl")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        "error: interrupted; finished work is kept, rerun the command to resume"
    ]
    assert "Traceback" not in err
    text = (out / "results.jsonl").read_text()
    assert text.endswith("\n")
    assert _prefix(out / "results.jsonl") == len(text.splitlines()) > 0


# ---------------------------------------------------------------------------------------------------- restore
def _restore(tiny_prior, out, **kw):
    from reguidance.app.restore import restore, write_report
    from reguidance.wrapper import ReGuidance

    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True)
    names = restore(tiny_prior, kw.pop("task", "sr4"), out, config=cfg, progress=False, **kw)
    return write_report(out, "sr4", cfg, names)


def test_restore_keeps_inputs_that_share_a_stem_apart(tiny, tmp_path):
    from reguidance.io.images import save_images

    save_images(tiny[1][:2], [tmp_path / "in" / "a.png", tmp_path / "in" / "a.jpg"])
    report = _restore(tiny[0], tmp_path / "out", images=tmp_path / "in", method=Pinv())
    assert [r["output"] for r in report["images"]] == ["restored/a.jpg.png", "restored/a.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "restored").iterdir()) == ["a.jpg.png", "a.png"]


def test_restore_pairs_candidates_by_name_not_position(tiny, tmp_path):
    from reguidance.io.images import save_images

    x = tiny[1]
    save_images(x[:3], [tmp_path / "in" / f"{k:02d}.png" for k in range(3)])
    save_images(x[[2, 0, 1]], [tmp_path / "c" / n for n in ("02.png", "10.png", "11.png")])
    with pytest.raises(InputError, match=r"no candidate for 2 inputs: 00.png, 01.png"):
        _restore(tiny[0], tmp_path / "o1", images=tmp_path / "in", candidates=tmp_path / "c")
    assert not (tmp_path / "o1").exists()
    (tmp_path / "c" / "10.png").rename(tmp_path / "c" / "00.jpg")  # stems match: 00.jpg is 00.png's candidate
    (tmp_path / "c" / "11.png").rename(tmp_path / "c" / "01.png")
    save_images(x[3:4], [tmp_path / "c" / "99.png"])
    with pytest.raises(InputError, match=r"1 candidates match no input: 99.png"):
        _restore(tiny[0], tmp_path / "o2", images=tmp_path / "in", candidates=tmp_path / "c")
    (tmp_path / "c" / "99.png").unlink()
    report = _restore(tiny[0], tmp_path / "o3", images=tmp_path / "in", candidates=tmp_path / "c")
    assert [(r["name"], r["candidate"]) for r in report["images"]] == [
        ("00.png", "00.jpg"),
        ("01.png", "01.png"),
        ("02.png", "02.png"),
    ]
    from reguidance.io.images import load_images

    cand, _ = load_images(tmp_path / "o3" / "candidate" / "00.png", None, 1)
    assert (cand[0] - x[0]).abs().max() < 1 / 127.5 + 1e-6  # 00.png got 00.jpg's picture (x[0]), 8-bit rounding


def test_restore_refuses_ambiguous_candidates():
    from reguidance.app.restore import match_candidates

    with pytest.raises(InputError, match=r"more than one candidate fits a.png \(a.jpg, a.tif\)"):
        match_candidates(["a.png"], ["a.jpg", "a.tif"])
    assert match_candidates(["a.png", "a.jpg"], ["a.jpg", "a.png"]) == [1, 0]
    assert match_candidates(["photo.png"], ["out.png"], single_files=True) == [0]


def test_restore_refuses_a_folder_of_another_run_and_redoes_a_changed_input_only_with_overwrite(tiny, tmp_path):
    from reguidance.io.images import save_images

    save_images(tiny[1][:2], [tmp_path / "in" / "a.png", tmp_path / "in" / "b.png"])
    _restore(tiny[0], tmp_path / "out", images=tmp_path / "in", method=Pinv())
    with pytest.raises(InputError, match=r"other settings \(seed: 0 in the folder, 5 now"):
        _restore(tiny[0], tmp_path / "out", images=tmp_path / "in", method=Pinv(), seed=5)
    save_images(tiny[1][2:3], [tmp_path / "in" / "b.png"])
    with pytest.raises(InputError, match="another version of that file"):
        _restore(tiny[0], tmp_path / "out", images=tmp_path / "in", method=Pinv())
    report = _restore(tiny[0], tmp_path / "out", images=tmp_path / "in", method=Pinv(), overwrite=True)
    assert [r["name"] for r in report["images"]] == ["a.png", "b.png"]


def test_an_input_s_result_does_not_depend_on_the_other_files_in_its_folder(tiny, tmp_path):
    from reguidance.io.images import save_images

    save_images(tiny[1][[0, 0]], [tmp_path / "one" / "b.png", tmp_path / "two" / "b.png"])
    save_images(tiny[1][2:3], [tmp_path / "two" / "a.png"])
    one = _restore(tiny[0], tmp_path / "o1", images=tmp_path / "one", method=Pinv(), task="box16")["images"][0]
    two = _restore(tiny[0], tmp_path / "o2", images=tmp_path / "two", method=Pinv(), task="box16")["images"][1]
    assert two["name"] == "b.png"
    assert one["consistency_after"] == pytest.approx(two["consistency_after"], abs=1e-4)


# ---------------------------------------------------------------------------------------------- reproducibility
def test_seeds_are_64_bit_without_aliasing():
    assert derive_seed(1, 0) != derive_seed(1 + 2**32, 0)
    assert derive_seed(0, 5) != derive_seed(0, 5 + 2**32)
    assert derive_seed(2**32, 1) != derive_seed(0, 1 + 2**32) != derive_seed(2**32 + 1, 0)
    state = np.random.SeedSequence([7, 3]).generate_state(2)  # seeds below 2**32: numpy's mixing of [seed, index]
    assert derive_seed(7, 3) == ((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)
    for bad in (-1, 2**64, 1.5):
        with pytest.raises(InputError):
            derive_seed(bad, 0)  # type: ignore[arg-type]  # 1.5 is not an int, on purpose


@pytest.mark.parametrize(
    ("method", "options"),
    [("dps", {"steps": 4}), ("daps", {"steps": 2, "ode_steps": 1, "langevin_steps": 3})],
)
def test_outputs_agree_across_batch_sizes_and_thread_counts_within_the_stated_tolerance(method, options):
    from reguidance.app.batch import solve_batch
    from reguidance.app.methods import make_method
    from reguidance.io.datasets import load_test_subset
    from reguidance.priors import load_prior
    from reguidance.tasks import get_task
    from reguidance.wrapper import ReGuidance

    prior, x, task = load_prior("mnist"), load_test_subset("mnist")[0][:3], get_task("sr4")
    cfg = ReGuidance().replace(inversion_steps=2, dps_steps=2, clip=True)
    config = make_method(method, {**options, "clip": True})

    def run(batch: int, threads: int) -> torch.Tensor:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            cands, outs = [], []
            for s in range(0, 3, batch):
                ids = list(range(s, min(s + batch, 3)))
                op, y = task.measure(x[ids], ids, 0)
                solved = solve_batch(
                    prior, op, y, ids, seed=0, task="sr4", split="test", name=method, method=config, config=cfg
                )
                cands.append(solved["candidate"].x)
                outs.append(solved["reguidance"].raw)
            return torch.cat([*cands, *outs])
        finally:
            torch.set_num_threads(before)

    ref = run(3, 2)
    assert torch.equal(run(3, 2), ref)  # same batch and threads: bitwise
    for batch, threads in ((1, 2), (2, 1)):
        assert (run(batch, threads) - ref).abs().max() <= REPRODUCIBILITY_ATOL


def test_restore_with_a_bad_candidate_folder_writes_nothing(tmp_path, capsys):
    from reguidance.io.datasets import load_test_subset
    from reguidance.io.images import save_images

    x = load_test_subset("mnist")[0][:2]
    save_images(x, [tmp_path / "in" / "a.png", tmp_path / "c" / "z.png"])
    args = ["restore", "--task", "sr4", "--image", str(tmp_path / "in" / "a.png"), "--candidate", str(tmp_path / "c")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "--candidate", "a.png")
    assert not (tmp_path / "out").exists()


def test_load_prior_refuses_none_and_an_absent_device_with_input_errors():
    from reguidance.conventions import InputError
    from reguidance.priors import load_prior

    with pytest.raises(InputError, match="got None"):
        load_prior(None)  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="cuda"):
            load_prior("mnist", device="cuda")


def test_a_script_section_is_written_between_its_markers_or_printed(tmp_path, capsys):
    from reguidance.io.files import write_section

    doc = tmp_path / "README.md"
    doc.write_text("top\n<!-- speed:begin -->\nold\n<!-- speed:end -->\nbottom\n")
    write_section(doc, "speed", "| new |\n")
    assert doc.read_text() == "top\n<!-- speed:begin -->\n| new |\n<!-- speed:end -->\nbottom\n"
    write_section(None, "speed", "| shown |")
    assert "| shown |\n" in capsys.readouterr().out
    with pytest.raises(ValueError, match="needs the markers <!-- cost:begin -->"):
        write_section(doc, "cost", "x")
