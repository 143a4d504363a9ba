"""The command line wraps the same calls: segment, reconstruct, infill (spans or gap markers), generate."""

import json

import pytest

from zonkey.cli import run


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp("ck")
    tiny_model.save_pretrained(d)
    return str(d)


def test_segment_json(ckpt, capsys):
    assert run(["--model", ckpt, "--json", "segment", "The zebra is an equine."]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text"] == "The zebra is an equine."
    assert out["levels"][0]["starts"][0] == 0 and len(out["levels"][0]["char_bos"]) == 23


def test_infill_with_gap_marker_and_with_span_agree_on_context(ckpt, capsys):
    assert run(["--model", ckpt, "--json", "infill", "The zebra is an ___ equine.", "--steps", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    (s, e), text = res["filled"][0], res["text"]
    assert (text[:s], text[e:]) == ("The zebra is an ", " equine.")  # the marker was replaced, context kept
    assert run(["--model", ckpt, "infill", "The zebra is an African equine.", "--span", "16:23", "--steps", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith("equine.")


def test_generate_and_reconstruct(ckpt, capsys):
    assert run(["--model", ckpt, "--json", "generate", "--steps", "2", "--seed", "4"]) == 0
    assert len(json.loads(capsys.readouterr().out)["trajectory"]) == 6  # two passes of 2 steps + their ends
    assert run(["--model", ckpt, "--json", "generate", "--steps", "2", "--seed", "4", "--refine", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["trajectory"]) == 3 and out["refine"] == 0.0
    assert run(["--model", ckpt, "reconstruct", "--level", "0", "hello"]) == 0
    capsys.readouterr()
    assert run(["--model", ckpt, "--json", "generate", "--steps", "2", "--temperature", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["temperature"] == 0.5
    assert run(["--model", ckpt, "generate", "--temperature", "0"]) == 2
    assert "temperature=0.0 is out of range" in capsys.readouterr().err
    assert run(["--model", ckpt, "generate", "--refine", "1"]) == 2
    assert "refine=1.0 is out of range" in capsys.readouterr().err


def test_errors_are_one_line_with_status_2(ckpt, capsys):
    assert run(["--model", ckpt, "infill", "no markers here", "--steps", "2"]) == 2
    assert "no --span given" in capsys.readouterr().err
    assert run(["--model", ckpt, "infill", "hello world", "--span", "3:99"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert run(["--model", "/nonexistent/dir", "segment", "hi"]) == 2
    assert "does not exist" in capsys.readouterr().err
