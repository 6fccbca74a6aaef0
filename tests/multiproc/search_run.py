"""Run by tests/test_distributed.py under torchrun: a tiny search with the synthetic latency
table of tests/test_search.py. argv: config YAML, output folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_search import fake_table

from fasterseg.config import load_config
from fasterseg.engine.search import search

if __name__ == "__main__":
    cfg = load_config(sys.argv[1])
    search(cfg, sys.argv[2], fake_table(cfg.space), progress=False)
