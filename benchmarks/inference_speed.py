"""Dense vs masked vs sparse inference time; prints JSON and writes it under benchmarks/results/.

    python benchmarks/inference_speed.py                      # defaults of `aignet bench`
    python benchmarks/inference_speed.py --batch-sizes 1,256 --rate 0.5

Any `aignet bench` option is accepted; this script only adds the default output file.
"""

import sys
from pathlib import Path

from aignet.cli import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        device = argv[argv.index("--device") + 1] if "--device" in argv else "cpu"
        argv += ["--out", str(RESULTS / f"inference_speed_{device.split(':')[0]}.json")]
    sys.exit(main(["bench", "--json", *argv]))
