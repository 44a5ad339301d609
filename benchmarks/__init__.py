"""``make bench``: where the course's time goes, measured on the current machine.

- :mod:`benchmarks.run` -- the command line (``python -m benchmarks.run``) and the sizes
- :mod:`benchmarks.measure` -- timing helpers and one function per measurement
- :mod:`benchmarks.peers` -- the same attacks from ART and CleverHans, if they import
- :mod:`benchmarks.report` -- machine facts, ``results.json`` and the Markdown table

Every speed is reported as a ratio of two timings taken in the same process, on the same
model and data, interleaved, so that the machine's noise largely cancels. See
``benchmarks/README.md`` for what each number means.
"""
