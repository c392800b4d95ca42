"""DONE markers certify content (benchmark.markers) and sample shards are keyed by weights."""

import hashlib
import json

import torch

from benchmark.markers import (
    certified_digest,
    check_marker,
    file_sha256,
    module_digest,
    tree_digests,
    write_marker,
)


def _folder(tmp_path):
    out = tmp_path / "synthetic"
    (out / "images").mkdir(parents=True)
    (out / "images" / "a.png").write_bytes(b"image a")
    (out / "images" / "b.png").write_bytes(b"image b")
    (out / "metadata.csv").write_text("path,finding\nimages/a.png,x\nimages/b.png,y\n")
    return out


def test_tree_digests_are_sha256_of_each_file(tmp_path):
    out = _folder(tmp_path)
    d = tree_digests(out)
    assert d == {"images/a.png": hashlib.sha256(b"image a").hexdigest(),
                 "images/b.png": hashlib.sha256(b"image b").hexdigest(),
                 "metadata.csv": file_sha256(out / "metadata.csv")}
    (out / ".x.tmp-123").write_bytes(b"half written")  # temporary files are not content
    assert tree_digests(out) == d


def test_marker_certifies_the_files_config_and_inputs(tmp_path):
    out, m = _folder(tmp_path), tmp_path / "synthetic.DONE"
    assert "missing" in check_marker(m, config_hash="c1", output=out)
    body = write_marker(m, config_hash="c1", output=out, inputs={"checkpoint": "w1"})
    assert json.loads(m.read_text()) == body
    assert check_marker(m, config_hash="c1", output=out, inputs={"checkpoint": "w1"}) is None
    assert "another config" in check_marker(m, config_hash="c2", output=out,
                                            inputs={"checkpoint": "w1"})
    why = check_marker(m, config_hash="c1", output=out, inputs={"checkpoint": "w2"})
    assert "inputs changed" in why and "checkpoint" in why
    # a replaced image (same name, other bytes) is found and named
    (out / "images" / "b.png").write_bytes(b"another image")
    why = check_marker(m, config_hash="c1", output=out, inputs={"checkpoint": "w1"})
    assert "images/b.png changed" in why
    (out / "images" / "b.png").write_bytes(b"image b")
    (out / "images" / "c.png").write_bytes(b"extra")
    assert "c.png was added" in check_marker(m, config_hash="c1", output=out,
                                             inputs={"checkpoint": "w1"})
    (out / "images" / "c.png").unlink()
    (out / "metadata.csv").unlink()
    assert "metadata.csv is missing" in check_marker(m, config_hash="c1", output=out,
                                                     inputs={"checkpoint": "w1"})


def test_old_or_damaged_markers_are_not_trusted(tmp_path):
    out, m = _folder(tmp_path), tmp_path / "checkpoint.DONE"
    m.write_text("c1")  # the format before content hashes: the config hash alone
    assert "another version" in check_marker(m, config_hash="c1", output=out)
    m.write_text('{"marker_version": 1, "config_')  # truncated
    assert "unreadable" in check_marker(m, config_hash="c1", output=out)


def test_certified_digest_changes_with_any_file(tmp_path):
    out, m = _folder(tmp_path), tmp_path / "DONE"
    write_marker(m, config_hash="c", output=out)
    first = certified_digest(m)
    (out / "images" / "a.png").write_bytes(b"image A")
    write_marker(m, config_hash="c", output=out)
    assert certified_digest(m) != first


def test_module_digest_follows_the_weights():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    assert module_digest(a) == module_digest(b)
    assert module_digest(a, None) == module_digest(a)
    with torch.no_grad():
        b.weight[1, 2] += 1e-6
    assert module_digest(a) != module_digest(b)
    # bfloat16 weights hash too (numpy has no bfloat16)
    assert module_digest(a.to(torch.bfloat16)) != module_digest(a.float())
    assert len(module_digest(a)) == 64
