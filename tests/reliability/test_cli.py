"""Reliability: every subcommand with --help, with no arguments, and with a bad path; bad configs."""

import pytest

from roadseg.cli import main

COMMANDS = ["weights", "train", "eval", "predict", "video", "export", "release", "quantize", "benchmark", "report", "demo"]
# demo, benchmark and eval take no required argument: run bare, they are documented jobs (make demo / bench; eval
# scores the default model on its own validation split)
NEED_ARGS = [c for c in COMMANDS if c not in ("demo", "benchmark", "eval")]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: roadseg {cmd}")


@pytest.mark.parametrize("cmd", NEED_ARGS)
def test_no_arguments_is_usage_error(cmd, capsys):
    assert main([cmd]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: roadseg ") and "Traceback" not in err


def test_version_and_every_option_explained_with_its_default(capsys):
    import argparse

    from roadseg import __version__
    from roadseg.cli import build_parser

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"roadseg {__version__}"
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        for a in sp._actions:
            assert not a.option_strings or a.help, f"roadseg {name} {a.option_strings[0]} has no help"
    assert main(["predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "frames per network call (default: 4)" in text and "the backend runs there (default: auto)" in text


def test_no_command(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err == ("error: roadseg: a command is required: weights, train, eval, predict, video, "
                                       "export, release, quantize, benchmark, report, demo (see roadseg --help)\n")


@pytest.mark.parametrize("argv, line", [
    (["eval", "--bogus"], "error: roadseg eval: unrecognized arguments: --bogus (see roadseg eval --help)"),
    (["predict"], "error: roadseg predict: one of the arguments --out --kitti-submission is required "
                  "(see roadseg predict --help)"),
    (["predict", "x.png"], "error: roadseg predict: one of the arguments --out --kitti-submission is required "
                           "(see roadseg predict --help)"),
    (["evl"], "error: roadseg: unknown command 'evl' (did you mean 'eval'?) (see roadseg --help)"),
    (["-q", "--bogus"], "error: roadseg: unrecognized arguments: --bogus (see roadseg --help)"),
    (["-v", "evl"], "error: roadseg: unknown command 'evl' (did you mean 'eval'?) (see roadseg --help)"),
])
def test_usage_errors_are_one_line_naming_the_command(argv, line, capsys):
    assert main(argv) == 2 and capsys.readouterr().err == line + "\n"


def bad_path_cases(tiny):
    return {
        "weights": ["weights", "fetch", "keras", "--path", "/nope/w.h5"],
        "train": ["train", "--config", "/nope/c.yaml"],
        "eval": ["eval", "--checkpoint", "/nope/m.pt"],
        "predict": ["predict", "/nope/a.png", "--checkpoint", tiny, "--backend", "torch", "--out", "/tmp/x"],
        "video": ["video", "/nope/v.mp4", "--out", "/tmp/roadseg_v.mp4", "--checkpoint", tiny, "--backend", "torch"],
        "export": ["export", "/nope/m.pt", "--out", "/tmp/roadseg_m.onnx"],
        "release": ["release", "/nope/m.pt", "--out", "/tmp/roadseg_r.pt"],
        "quantize": ["quantize", "/nope/m.onnx", "--calib", "/nope", "--out", "/tmp/roadseg_q.onnx"],
        "benchmark": ["benchmark", "--checkpoint", "/nope/m.pt", "--out", "/tmp/roadseg_bench"],
        "report": ["report", "/nope/run"],
        "demo": ["demo", "--data", "/nope"],
    }


@pytest.mark.parametrize("cmd", COMMANDS)
def test_bad_path_is_one_line_error(cmd, tiny_ckpt, capsys):
    assert main(bad_path_cases(str(tiny_ckpt))[cmd]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "/nope" in err[0], err


def test_bad_config_key_type_and_range_via_cli(tmp_path, capsys):
    cases = {"train:\n  epoch: 3\n": "unknown config key 'train.epoch' (did you mean 'epochs'?)",
             "train:\n  epochs: three\n": "'train.epochs': expected an integer",
             "model:\n  dropout: 1.5\n": "'model.dropout': 1.5 is out of range"}
    for text, msg in cases.items():
        p = tmp_path / "c.yaml"
        p.write_text(text)
        assert main(["train", "--config", str(p)]) == 2
        assert msg in capsys.readouterr().err
    assert main(["train", "--config", str(p), "train.lrr=1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err


@pytest.mark.parametrize("args,msg", [
    (["--batch-size", "0"], "--batch-size: must be > 0, got 0"),
    (["--batch-size", "-3"], "--batch-size: must be > 0, got -3"),
    (["--scale", "0"], "--scale: must be > 0, got 0"),
    (["--size", "8"], "--size: 8: the network input height must be 32-8192 pixels"),
    (["--backend", "onnxruntime", "--precision", "bf16"], "precision bf16 does not run on backend onnxruntime (it runs fp32, int8, fp16)"),
])
def test_bad_numbers_and_precisions_are_usage_errors_before_any_work(args, msg, tiny_ckpt, tmp_path, capsys):
    from conftest import KITTI

    frame = KITTI / "training" / "image_2" / "um_000000.jpg"
    rc = main(["predict", str(frame), "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_command_reference_lists_every_command_and_the_readme_names_real_ones():
    """docs/cli.md (generated from the parsers, checked current by tests/test_docs.py) lists every command of the
    CLI in its table, and every `roadseg WORD` the README shows is one of them."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    table = (root / "docs" / "cli.md").read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"\[`(\w+)`\]", table)) == set(COMMANDS)
    code = "\n".join(re.findall(r"(?s)```[a-z]*\n(.*?)```", (root / "README.md").read_text()))
    named = set(re.findall(r"(?m)^\s*roadseg (\w+)", code))
    assert named and named <= set(COMMANDS), named - set(COMMANDS)


@pytest.mark.parametrize("argv,verbose,quiet", [(["eval", "-v"], True, False), (["-v", "eval"], True, False),
                                                (["eval"], False, False), (["demo", "-q"], False, True),
                                                (["-q", "predict", "x.png", "--out", "o"], False, True)])
def test_verbose_and_quiet_before_or_after_the_subcommand(argv, verbose, quiet):
    from roadseg.cli import build_parser

    a = build_parser().parse_args(argv)
    assert (a.verbose, a.quiet) == (verbose, quiet)


def test_verbose_and_quiet_together_is_a_usage_error(capsys):
    assert main(["eval", "-v", "-q"]) == 2 and "exclude each other" in capsys.readouterr().err


# ------------------------------------------------------------------ the top-level handler


def replace_command(monkeypatch, name: str, func) -> None:
    """Run `func` for `roadseg NAME` (the parser is built from cli.commands.COMMANDS at each main())."""
    from roadseg.cli import commands

    table = [(n, h, args, func if n == name else f) for n, h, args, f in commands.COMMANDS]
    monkeypatch.setattr(commands, "COMMANDS", table)


@pytest.mark.parametrize("exc,rc,line", [
    (__import__("roadseg.errors", fromlist=["DataError"]).DataError("/data/x.png: corrupt or truncated image"), 2,
     "error: /data/x.png: corrupt or truncated image"),
    (PermissionError(13, "Permission denied", "/out/m.onnx"), 2, "error: /out/m.onnx: Permission denied"),
    (MemoryError(), 2, "error: out of memory (try a smaller --size, --batch-size or image)"),
])
def test_expected_failures_are_one_line_and_exit_2(exc, rc, line, monkeypatch, capsys):

    def fail(a):
        raise exc

    replace_command(monkeypatch, "report", fail)
    assert main(["report", "x"]) == rc
    assert capsys.readouterr().err.strip().splitlines() == [line]


def test_unexpected_exception_is_one_line_with_the_traceback_in_a_file(monkeypatch, capsys, tmp_path):
    import re
    import tempfile


    def buggy(a):
        raise ValueError("boom\nsecond line")

    replace_command(monkeypatch, "report", buggy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["report", "x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    m = re.fullmatch(r"error: unexpected ValueError: boom \(a bug in roadseg; the full traceback is in (\S+)\)", err[0])
    assert m, err[0]
    text = open(m.group(1)).read()
    assert m.group(1).startswith(str(tmp_path)) and "Traceback (most recent call last)" in text
    assert "in buggy" in text and "ValueError: boom" in text


def test_a_signal_wrapped_by_a_library_still_ends_as_the_interrupt(monkeypatch, capsys):
    """torch.save turns an exception raised in its write callback into a RuntimeError: the signal that caused it
    is still reported as such (exit 143), and the signal handlers are put back afterwards."""
    import os
    import signal
    import time


    def save_like_torch(a):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos") from None
        raise AssertionError("SIGTERM was not delivered")

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    replace_command(monkeypatch, "report", save_like_torch)
    assert main(["report", "x"]) == 143
    assert capsys.readouterr().err.strip().splitlines() == ["terminated (SIGTERM)"]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
