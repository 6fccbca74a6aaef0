"""Training, distillation, evaluation and checkpointing loops (plain functions)."""
