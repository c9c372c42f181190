"""The documentation stays true: docs/cli.md is what the parsers print, and the sample frame the quick start
predicts on is shipped as package data (so it exists in a wheel, not only in the checkout)."""

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="argparse's help layout differs between Python versions; "
                    "docs/cli.md is generated with 3.11, the version the Makefile sets up")
def test_cli_reference_is_generated_from_the_current_parsers():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_docs.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr + " (run: python scripts/cli_docs.py)"


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
