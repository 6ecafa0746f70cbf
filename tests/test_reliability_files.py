"""Issue 17, "your files" and "checked before any work": every refusal is one line on stderr, exit 2, and leaves the
file tree exactly as it was (nothing created, deleted or modified); what a run wrote is the only thing it deletes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from reguidance.cli import main
from reguidance.conventions import InputError
from reguidance.io.files import Manifest

QUICK = ["--ids", "0:1", "--methods", "pinv", "--tasks", "sr4", "--protocol", "cpu"]


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content's sha256 ("dir" for folders)."""
    return {
        p.relative_to(root).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def png(path: Path, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), 128).save(path)
    return path


def refused(capsys, args: list[str], root: Path, *words: str) -> None:
    """``args`` exit with 2 and one ``error:`` line naming ``words``; the tree under ``root`` is unchanged."""
    before = snapshot(root)
    assert main(args) == 2
    text = capsys.readouterr().err
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in text, text
    for w in words:
        assert w in errors[0], (w, errors[0])
    assert snapshot(root) == before


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- data loss: the destructive scenarios of the issue, verbatim -------------------------------------------------


def test_bench_over_its_own_data_folder_is_refused(here, capsys):
    png(here / "proj" / "images" / "a.png")
    args = ["bench", "--data", "folder:proj/images", "--out", "proj", "--overwrite", *QUICK[:6]]
    refused(capsys, args, here, "--out proj", "--data")


def test_restore_into_the_folder_of_its_candidates_is_refused(here, capsys):
    png(here / "candidate" / "a.jpg")
    png(here / "image" / "a.png")
    args = ["restore", "--task", "sr4", "--image", "image", "--candidate", "candidate", "--out", ".", "--overwrite"]
    refused(capsys, args, here, "--out .", "contains the input")


def test_restore_never_overwrites_its_own_inputs(here, capsys):
    png(here / "p" / "measurement" / "a.png", 8)
    png(here / "p" / "candidate" / "a.png")
    args = ["restore", "--task", "sr4", "--measurement", "p/measurement", "--candidate", "p/candidate", "--out", "p"]
    refused(capsys, args, here, "--out p", "contains")


@pytest.mark.parametrize(
    ("command", "user_file"),
    [("bench", "config.json"), ("restore", "report.json"), ("bench", "summary.md"), ("demo", "results.jsonl")],
)
def test_a_users_file_in_out_is_refused_naming_it(here, capsys, command, user_file):
    (here / "o").mkdir()
    (here / "o" / user_file).write_text("mine")
    png(here / "c.png")
    png(here / "m.png", 8)
    args = {
        "bench": ["bench", "--out", "o", *QUICK],
        "restore": ["restore", "--task", "sr4", "--measurement", "m.png", "--candidate", "c.png", "--out", "o"],
        "demo": ["demo", "--out", "o", "--n", "1"],
    }[command]
    refused(capsys, args, here, user_file, "--out")


@pytest.mark.parametrize(("kind", "command"), [("restore", "bench"), ("bench", "restore"), ("demo", "bench")])
def test_a_folder_another_command_wrote_is_refused_naming_it(here, capsys, kind, command):
    (here / "o").mkdir()
    (here / "o" / ".reguidance-run.json").write_text(json.dumps({"program": "reguidance", "kind": kind}))
    png(here / "c.png")
    png(here / "m.png", 8)
    args = {
        "bench": ["bench", "--out", "o", *QUICK],
        "restore": ["restore", "--task", "sr4", "--measurement", "m.png", "--candidate", "c.png", "--out", "o"],
    }[command]
    refused(capsys, args, here, f"reguidance {kind}")


@pytest.mark.parametrize(
    "link",
    ["--out", "link"],  # the output given through a symlink and through sub/../
)
def test_outputs_inside_inputs_are_found_through_links_and_dotdot(here, capsys, link):
    png(here / "imgs" / "a.png")
    (here / "link").symlink_to(here / "imgs")
    out = "link/out" if link == "link" else "sub/../imgs"
    refused(capsys, ["bench", "--data", "folder:imgs", "--out", out, *QUICK[:6]], here, "--data imgs")


def test_a_users_json_file_is_never_replaced(here, capsys):
    (here / "mine.json").write_text("{}")
    refused(capsys, ["theory", "--candidates", "2", "--json", "mine.json"], here, "--json mine.json", "did not")
    refused(capsys, ["bench", "--json", "mine.json", "--out", "o", *QUICK], here, "--json mine.json")


# -- the library: manifest, overwrite, legacy folders, names ---------------------------------------------------


def test_overwrite_deletes_only_what_the_manifest_lists(tmp_path):
    from reguidance.app.runs import clear_outputs, own_folder
    from reguidance.io.files import atomic_write_text

    with own_folder(tmp_path, "bench"):
        atomic_write_text(tmp_path / "images" / "a.png", "ours")
        atomic_write_text(tmp_path / "config.json", "ours")
    (tmp_path / "images" / "user.png").write_text("theirs")
    (tmp_path / "notes.txt").write_text("theirs")
    gone = clear_outputs(tmp_path)
    assert sorted(p.name for p in gone) == ["a.png", "config.json"]
    assert (tmp_path / "images" / "user.png").read_text() == "theirs" and (tmp_path / "notes.txt").exists()


def test_a_file_dropped_into_an_owned_folder_is_never_replaced(tmp_path):
    from reguidance.app.runs import own_folder
    from reguidance.io.files import atomic_write_text

    with own_folder(tmp_path, "restore"):
        atomic_write_text(tmp_path / "report.json", "ours")
    (tmp_path / "extra.json").write_text("theirs")
    with own_folder(tmp_path, "restore"), pytest.raises(InputError, match="did not write"):
        atomic_write_text(tmp_path / "extra.json", "ours")
    assert (tmp_path / "extra.json").read_text() == "theirs"


def test_a_folder_an_older_version_wrote_is_resumed_as_bench_and_adopted(tmp_path):
    from reguidance.app.runs import check_output_folder, clear_outputs, own_folder

    (tmp_path / "config.json").write_text(json.dumps({"protocol": "cpu", "runs": []}))
    (tmp_path / "results.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("theirs")
    check_output_folder(tmp_path, "bench")
    with pytest.raises(InputError, match="reguidance bench"):
        check_output_folder(tmp_path, "restore")
    with own_folder(tmp_path, "bench"):
        pass
    assert sorted(p.name for p in clear_outputs(tmp_path)) == ["config.json", "results.jsonl"]
    assert (tmp_path / "notes.txt").exists()


def test_the_manifest_records_a_file_before_it_is_written(tmp_path, monkeypatch):
    import reguidance.io.files
    from reguidance.app.runs import own_folder
    from reguidance.io.files import Manifest, atomic_write_text

    def crash(*a):
        raise KeyboardInterrupt

    with own_folder(tmp_path, "bench"):
        monkeypatch.setattr(reguidance.io.files.os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            atomic_write_text(tmp_path / "config.json", "x")
    assert "config.json" in Manifest(tmp_path).paths


def test_any_name_the_filesystem_accepts_can_be_written_atomically(tmp_path):
    from reguidance.io.files import atomic_write_text

    name = "a" * 250 + ".png"
    atomic_write_text(tmp_path / name, "x")
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_restore_refuses_an_input_whose_output_name_would_be_too_long(here, capsys):
    long = "a" * 250 + ".jpg"
    png(here / "m" / long, 8)
    png(here / "c" / long)
    refused(capsys, ["restore", "--task", "sr4", "--measurement", "m", "--candidate", "c", "--out", "o"], here, "255")


# -- checked before the first write ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--steps", "5000", "--methods", "dps"], "--steps"),
        (["--inversion-steps", "5000"], "--inversion-steps"),
        (["--dps-steps", "5000"], "--dps-steps"),
    ],
)
def test_bench_step_counts_beyond_the_chain(here, capsys, extra, flag):
    refused(capsys, ["bench", "--out", "o", *QUICK, *extra], here, flag, "levels")


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--method", "dps", "--steps", "5000"], "--steps"),
        (["--candidate", "c.png", "--inversion-steps", "5000"], "--inversion-steps"),
        (["--candidate", "c.png", "--dps-steps", "400"], "--dps-steps"),
    ],
)
def test_restore_step_counts_beyond_the_chain(here, capsys, extra, flag):
    png(here / "c.png")
    png(here / "m.png", 8)
    refused(capsys, ["restore", "--task", "sr4", "--measurement", "m.png", "--out", "o", *extra], here, flag)


@pytest.mark.parametrize(
    "args",
    [
        ["speed", "--dps-steps", "5000"],
        ["theory", "--candidates", "2", "--inversion-steps", "5000"],
        ["tune", "--task", "sr4", "--method", "dps", "--grid", "dps_steps=5000"],
    ],
)
def test_other_commands_step_counts_beyond_the_chain(here, capsys, args):
    refused(capsys, args, here, "levels")


def test_a_task_with_sigma_y_zero_is_refused(here, capsys):
    refused(capsys, ["bench", "--out", "o", *QUICK[:6], "--tasks", "sr4,sigma_y=0"], here, "sigma_y must be > 0")


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--out", "o", *QUICK],
        ["restore", "--task", "sr4", "--method", "pinv", "--image", "c.png", "--out", "o"],
        ["demo", "--out", "o", "--n", "1"],
        ["sample", "--prior", "mnist", "--n", "1", "--out", "o"],
        ["train", "--out", "o", "--steps", "1"],
        ["train-classifier", "--dataset", "mnist", "--out", "o"],
        ["theory", "--candidates", "2"],
        ["theory-sweep", "--candidates", "2"],
        ["tune", "--task", "sr4", "--method", "dps"],
    ],
)
def test_a_negative_seed_is_refused_naming_the_flag(here, capsys, args):
    png(here / "c.png")
    refused(capsys, [*args, "--seed", "-1"], here, "--seed")


@pytest.mark.parametrize("bad", ["._a.png", "zz.png"])
def test_a_data_folder_with_a_file_that_is_no_image_is_refused_up_front(here, capsys, bad):
    png(here / "imgs" / "a.png")
    (here / "imgs" / bad).write_text("not an image")
    refused(capsys, ["bench", "--data", "folder:imgs", "--out", "o", *QUICK[:6]], here, bad, "--data")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["theory", "--t-end", "nan"], "--t-end"),
        (["theory", "--t-end", "1.5"], "--t-end"),
        (["theory", "--step-size", "inf"], "--step-size"),
        (["tune", "--task", "sr4", "--method", "dps", "--grid", "t_end=nan"], "--grid t_end=nan"),
        (["tune", "--task", "sr4", "--method", "dps", "--method-grid", "step_size=-1"], "--method-grid"),
    ],
)
def test_bad_values_are_refused_naming_the_flag_before_any_folder_is_made(here, capsys, args, flag):
    refused(capsys, [*args, "--candidates", "2"] if args[0] == "theory" else args, here, flag)


def test_a_train_config_with_an_unknown_dataset_is_refused_before_the_folder(here, capsys):
    (here / "c.json").write_text(json.dumps({"dataset": "cifar"}))
    refused(capsys, ["train", "--config", "c.json", "--out", "o"], here, "--config c.json", "cifar")


# -- a run end to end: it resumes, and --overwrite deletes only its own files -----------------------------------


@pytest.mark.slow
def test_restore_overwrite_keeps_a_users_file_and_resumes_after(here, capsys):
    png(here / "c.png")
    png(here / "m.png", 8)
    args = ["restore", "--task", "sr4", "--measurement", "m.png", "--candidate", "c.png", "--out", "o"]
    args += ["--inversion-steps", "1", "--dps-steps", "1"]
    assert main(args) == 0
    (here / "o" / "restored" / "mine.txt").write_text("theirs")
    assert main([*args, "--overwrite"]) == 0
    assert main(args) == 0
    assert (here / "o" / "restored" / "mine.txt").read_text() == "theirs"
    assert {"restore.jsonl", "report.json", "restored/m.png"} <= Manifest(here / "o").paths


@pytest.mark.slow
def test_bench_overwrite_keeps_a_users_file_and_refuses_a_restore_folder(here, capsys):
    args = ["bench", "--out", "o", *QUICK, "--inversion-steps", "1", "--dps-steps", "1"]
    assert main(args) == 0
    assert json.loads((here / "o" / ".reguidance-run.json").read_text())["kind"] == "bench"
    (here / "o" / "images" / "mine.txt").write_text("theirs")
    assert main([*args, "--overwrite"]) == 0
    assert (here / "o" / "images" / "mine.txt").read_text() == "theirs"
    assert (here / "o" / "results.jsonl").read_text().count("\n") == 2
    assert main(args) == 0  # the overwritten run recorded its files again: a rerun resumes
    assert "results.jsonl" in Manifest(here / "o").paths
    capsys.readouterr()
    png(here / "c.png")
    png(here / "m.png", 8)
    restore = ["restore", "--task", "sr4", "--measurement", "m.png", "--candidate", "c.png", "--out", "o"]
    refused(capsys, restore, here, "reguidance bench")
