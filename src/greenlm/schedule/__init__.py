"""greenlm.schedule: when and where to run a job, on real hourly grid intensity (docs/scheduling.md).

- ``job.py``: the job (duration, energy from --energy-kwh or a pricetag.json, pause cost);
- ``forecast.py``: greenlm's forecaster (same clock hour over past days) and forecast files;
- ``plan.py``: one job: starting now, Flexible Start, Pause & Resume, regions; forecast vs oracle;
- ``simulate.py``: every start hour of a year at once (numpy), savings' mean and distribution;
- ``figures.py``: the simulation's figure (matplotlib, optional);
- ``request.py``: the commands' options to plans (files read, everything checked before anything is written);
- ``wait.py``: ``greenlm schedule exec``'s clocks (real, fake, accelerated) and the command's run.

Imports greenlm.measure and greenlm.common only.
"""
