"""``fasterseg study``: does the search buy anything over random architectures of the same
latency, and does distillation beat training the student alone? :mod:`.run` trains the
models (resumably), :mod:`.stats` computes the statistics from their numbers and
:mod:`.report` writes ``study.md`` / ``study.json`` and the plots."""

from .run import run_study, sample_matched

__all__ = ["run_study", "sample_matched"]
