"""``detdistill shrink``: a speed target in, the best distilled student out.

One module per step: :mod:`.candidates` generates the students a teacher admits (zoo families over the lean
knobs, low-rank compressions of the teacher), :mod:`.timing` times them against the teacher on this machine,
:mod:`.front` keeps those that meet the target and finds the Pareto front, :mod:`.pipeline` distils the best
few briefly, chooses on validation and trains the chosen one to the end (:func:`search`), and :mod:`.report`
writes ``shrink.html``, ``candidates.csv`` and ``summary.json``.
"""

from .candidates import Candidate, generate_candidates
from .front import Target, TargetUnreachable, pareto_front
from .pipeline import ShrinkResult, search

__all__ = ["Candidate", "ShrinkResult", "Target", "TargetUnreachable", "generate_candidates", "pareto_front",
           "search"]
