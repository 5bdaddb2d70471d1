"""Training and evaluation of a model on in-memory splits: the loop (loop), its optimizer and schedule
(optim), its checkpoints (checkpoint), evaluation (evaluate), the linear-probe fast path (linear_probe)
and several processes (dist).

Knows nothing of run folders or records beyond the checkpoint file it is handed (bench.run does that).
"""
