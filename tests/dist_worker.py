"""Run by torchrun in tests/test_distributed.py: ``charpoet.train`` on one rank of a group.

    python -m torch.distributed.run --nproc-per-node N tests/dist_worker.py CONFIG.json RUN STEPS
"""

import json
import sys

from charpoet import RunConfig, train

config_path, run, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = RunConfig.from_dict(json.loads(open(config_path, encoding="utf-8").read()))
train(config, run, stop_after_steps=steps)
