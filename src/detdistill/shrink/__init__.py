"""``detdistill shrink``: a speed target in, the best distilled student out.

The search is a plan and six steps (:mod:`.pipeline`): :func:`~.pipeline.open_plan` checks every input
(:mod:`.inputs`) and keys the run folder by what it depends on (:mod:`.keys`); *generate* lists the students
a teacher admits (:mod:`.candidates`: zoo families over the lean knobs, the stride-8 form where the data has
small objects, low-rank compressions of the teacher); *time* times them against the teacher on this machine
(:mod:`.timing`, through a :data:`~.timing.Timer`); *rank* keeps those that meet the target (:mod:`.front`) and
picks the first rung; *distil* runs successive halving over measured validation accuracy (:mod:`.halving`);
*finish* trains the choice to the end and checks its speed; *report* writes ``shrink.html``,
``candidates.csv`` and ``summary.json`` (:mod:`.report`).
"""

from .candidates import Candidate, generate_candidates
from .front import Target, TargetUnreachable, pareto_front
from .halving import Rung, halving_schedule
from .inputs import ShrinkInputError, check_inputs
from .pipeline import ShrinkError, ShrinkPlan, ShrinkResult, open_plan, search
from .timing import Timer, cpu_timer

__all__ = ["Candidate", "Rung", "ShrinkError", "ShrinkInputError", "ShrinkPlan", "ShrinkResult", "Target",
           "TargetUnreachable", "Timer", "check_inputs", "cpu_timer", "generate_candidates", "halving_schedule",
           "open_plan", "pareto_front", "search"]
