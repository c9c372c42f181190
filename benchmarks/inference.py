"""The inference benchmark lives in the package (roadseg.benchmark, also `roadseg benchmark`); this script runs it
from a source checkout: python benchmarks/inference.py [--model kitti-lite0] [--scales 0.5,1.0] [--quick]"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from roadseg.benchmark import main

    sys.exit(main())
