"""The project's tooling: reproduction, the notebook series runner and the classroom.

It imports the course library :mod:`helpers` and is never imported by it (nor by the
notebooks), so what students read stays the course alone.

- :mod:`tooling.series` -- the notebook series, its CI sizes, its parameters cells, and
  running a notebook with papermill
- :mod:`tooling.reproduce` -- ``make reproduce``: the series at full size, ``results/`` and
  the README table
- :mod:`tooling.classroom` -- ``make assignments`` / ``make grade``: nbgrader releases, the
  student kit, autograding
- :mod:`tooling.run_facts` -- where and when a run happened (date, commit, machine,
  versions), for ``make reproduce`` and ``make bench``
"""
