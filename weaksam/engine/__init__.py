"""What every trainer shares (issue 21): the DDP world, fingerprinted checkpoints, the lr rules,
the optimiser, the non-finite check, epoch sums over processes, the epoch loop with hooks and
the DVCLive hook.

- ``world``: rank and world size, gradient sum, any-rank flags, sums over processes.
- ``checkpoint``: fingerprint, atomic save, resume only when the fingerprint matches.
- ``schedule``: the learning-rate rules of the trainers, each its own float expression.
- ``optim``: the optimiser factory and one optimiser step.
- ``guard``: the non-finite loss check.
- ``loop``: the resumable epoch loop with its after-epoch hooks.
- ``live``: the DVCLive hook (curves and summary, rank 0 only) of the training stages.

The trainers keep their own data order and random draws; the engine draws no random number.
"""
