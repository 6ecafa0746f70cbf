"""The benchmark, in layers (each imports only those above it; nothing outside ``bench/`` but the CLI imports it).

- :mod:`.records`: the row type, the results reader, a row's variant (imports nothing of ``bench``);
- :mod:`.defaults`: the per-protocol budgets and tuned tables, and :func:`.defaults.resolve_options`, the one
  place a method's options are put together and checked;
- :mod:`.inputs`: where the images and metric networks come from;
- :mod:`.runner`: :class:`.runner.BenchSpec` and the resumable :func:`.runner.run_bench` (batches solved by
  :func:`reguidance.app.batch.solve_batch`, the folder owned by :class:`reguidance.app.runs.RunFolder`);
- :mod:`.report` (summaries, tables, pictures) and :mod:`.tune` (the validation sweep);
- :mod:`.session`: a whole benchmark run, as ``reguidance bench`` and ``demo`` call it.

Tasks, methods and sharding are library modules (:mod:`reguidance.tasks`, :mod:`reguidance.app.methods`,
:mod:`reguidance.app.shard`).
"""
