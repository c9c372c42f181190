"""The documentation stays true: docs/cli.md is what the parsers print and docs/optimization.md holds the benchmark's
last table (scripts/gen_docs.py), every test the errors page names exists, and the sample frame the quick start
predicts on is shipped as package data (so it exists in a wheel, not only in the checkout)."""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="argparse's help layout differs between Python versions; "
                    "docs/cli.md is generated with 3.11, the version the Makefile sets up")
def test_generated_pages_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr + " (run: python scripts/gen_docs.py)"


def test_sample_frame_is_package_data_with_its_calibration():
    from roadseg.data import read_image
    from roadseg.data.bev import frame_lookup
    from roadseg.data.samples import CALIBRATION, FRAME

    frame = read_image(FRAME)
    assert frame.shape == (375, 1242, 3) and CALIBRATION.is_file()
    assert frame_lookup(FRAME, frame.shape[:2]) is not None  # KITTI's layout: calib/ beside image_2/
    line = re.search(r'^"roadseg\.data\.samples" = (\[.*\])$', (ROOT / "pyproject.toml").read_text(), re.M)
    shipped = {f for g in json.loads(line.group(1)) for f in FRAME.parents[1].glob(g)}
    assert {FRAME, CALIBRATION} <= shipped
    r = subprocess.run([sys.executable, "-m", "roadseg.data.samples"], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == str(FRAME)


def test_every_test_the_errors_page_names_exists():
    """Each row's last cell names tests as `file.py::test_name` (tests/reliability/ unless the path says otherwise)
    or `::test_name` for another test in the file named before it."""
    named = []
    for line in (ROOT / "docs" / "errors.md").read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| Case"):
            continue
        current = None
        for ref in re.findall(r"`([^`]*::[^`]+)`", line.rstrip(" |").rsplit("|", 1)[1]):
            file, _, name = ref.partition("::")
            current = file or current
            path = ROOT / current if current.startswith("tests/") else ROOT / "tests" / "reliability" / current
            named.append((path, name))
    missing = [f"{p.relative_to(ROOT)}::{n}" for p, n in named if not p.is_file() or f"def {n}(" not in p.read_text()]
    assert len(named) > 60 and not missing, missing
