"""The command line: the theory experiment end to end, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import torch

from reguidance.cli import main

TINY = [
    "--dim",
    "4",
    "--modes",
    "3",
    "--measurements",
    "1",
    "--candidates",
    "8",
    "--candidate-steps",
    "5",
    "--inversion-steps",
    "10",
    "--dps-steps",
    "10",
]


def test_theory_writes_the_json_report_and_the_picture(tmp_path, capsys):
    out = tmp_path / "r.json"
    plot = tmp_path / "p.png"
    assert main(["theory", *TINY, "--json", str(out), "--plot", str(plot)]) == 0
    report = json.loads(out.read_text())
    assert set(report["methods"]) == {"candidate", "reguidance", "renoise", "fresh", "dps", "posterior"}
    for m in report["methods"].values():
        assert {"reward", "manifold_distance", "nll", "mode_accuracy", "nfe"} <= set(m)
    assert report["methods"]["reguidance"]["nfe"] == 5 + 10 + 10
    assert isinstance(report["inversion_roundtrip_rel_error"], float)
    assert isinstance(report["candidate_roundtrip_rel_error"], float)
    assert plot.stat().st_size > 1000
    rg = report["methods"]["reguidance"]
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("reguidance "))
    assert f"{rg['reward']:.3f}" in row and row.rstrip().endswith(str(rg["nfe"]))  # the table shows the JSON's numbers


def test_bad_option_value_prints_one_line_and_exits_2(capsys):
    assert main(["theory", "--measurements", "40", "--dim", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "measurements" in err and "\n" not in err


def test_negative_noise_is_reported_as_a_one_line_error(capsys):
    assert main(["theory", *TINY, "--noise", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "noise" in err and "\n" not in err


def test_unknown_option_is_a_one_line_usage_error(capsys):
    assert main(["theory", "--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no-such-flag" in err and "\n" not in err


def test_python_dash_m_runs_the_same_command():
    cmd = [sys.executable, "-m", "reguidance", "--version"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "reguidance" in proc.stdout


def test_console_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "reguidance", "theory", "--steps-nonsense"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_models_lists_the_known_checkpoints(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ffhq_10m" in out and "imagenet256_uncond" in out


def test_models_json_says_whether_each_is_present(tmp_path, capsys):
    assert main(["models", "--json", "--checkpoint-dir", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    ffhq = next(r for r in rows if r["name"] == "ffhq_10m")
    assert ffhq["present"] is False


def test_bench_with_an_unknown_task_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "--tasks", "box99", "--ids", "0:2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "box99" in err and "\n" not in err


def test_bench_with_reversed_ids_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "--ids", "5:2", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == "error: --ids must satisfy 0 <= A < B, got '5:2'"
    assert not (tmp_path / "run").exists()


def test_restore_without_inputs_is_a_one_line_error(tmp_path, capsys):
    assert main(["restore", "--task", "sr4", "--method", "pinv", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--image" in err and "\n" not in err


def test_restore_command_restores_a_folder_with_the_embedded_prior(tmp_path, capsys):
    from reguidance.io.datasets import load_test_subset
    from reguidance.io.images import save_images

    x, _, _ = load_test_subset("mnist")
    save_images(x[:2], [tmp_path / "in" / "a.png", tmp_path / "in" / "b.png"])
    args = [
        "restore",
        "--prior",
        "mnist",
        "--task",
        "sr4",
        "--image",
        str(tmp_path / "in"),
        "--method",
        "pinv",
        "--inversion-steps",
        "2",
        "--dps-steps",
        "2",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["name"] for r in report["images"]] == ["a.png", "b.png"]
    assert [r["output"] for r in report["images"]] == ["restored/a.png", "restored/b.png"]
    assert (tmp_path / "out" / "restored" / "b.png").is_file()
    after = sum(r["consistency_after"] for r in report["images"]) / 2
    assert f"2 images restored into {tmp_path / 'out' / 'restored'}" in (out := capsys.readouterr().out)
    assert f"-> {after:.2f}" in out  # the printed mean is the report's


def test_demo_runs_the_cpu_protocol_and_writes_its_picture(tmp_path, capsys):
    assert main(["demo", "--n", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "expected about" in out.splitlines()[0]  # the estimate comes before the work
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0] == "| task | method | variant | PSNR | SSIM | consistency | s/image |"  # seven columns
    assert {tuple(c.strip() for c in line.split("|")[1:4]) for line in table[2:]} == {
        (t, m, v)
        for t in ("box20", "sr4", "sr8")
        for m in ("pinv", "dps", "daps")
        for v in ("candidate", "+ReGuidance")
    }
    assert (tmp_path / "demo.png").stat().st_size > 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["protocol"] == "cpu"
    dps = next(r for r in config["runs"] if r["task"] == "sr8" and r["method"] == "dps")
    assert dps["method_options"]["steps"] == 50 and dps["reguidance"]["inversion_steps"] == 10


def test_tune_refuses_a_step_size_the_method_does_not_have(capsys):
    assert main(["tune", "--task", "sr8", "--method", "dps", "--method-grid", "noise_mix=1,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "step_size" in err and "\n" not in err


def test_restore_samples_writes_the_spread_and_keeps_the_first_draw(tmp_path):
    from reguidance.io.datasets import load_test_subset
    from reguidance.io.images import read_images, save_images

    x, _, _ = load_test_subset("mnist")
    save_images(x[:2], [tmp_path / "in" / "a.png", tmp_path / "in" / "b.png"])
    base = ["restore", "--prior", "mnist", "--task", "box20c", "--image", str(tmp_path / "in"), "--method", "pinv"]
    base += ["--inversion-steps", "2", "--dps-steps", "3"]
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    assert main([*base, "--samples", "3", "--out", str(tmp_path / "three")]) == 0
    one, three = (read_images([tmp_path / d / "restored" / "a.png"]) for d in ("one", "three"))
    assert torch.equal(one, three)  # the first draw is the plain restoration
    rows = [json.loads(line) for line in (tmp_path / "three" / "restore.jsonl").read_text().splitlines()]
    assert all(r["spread"] > 0 and r["nfe"] == 2 + 3 * 3 for r in rows)  # one inversion, three DPS runs
    assert (tmp_path / "three" / "std" / "b.png").is_file()
    assert main([*base, "--samples", "0", "--out", str(tmp_path / "zero")]) == 2
