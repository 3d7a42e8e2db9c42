"""Self-learning models: river-style ``learn_one``/``score_one``, hyper-parameters in ``__init__``,
state a few numbers that round-trip through ``to_dict``/``from_dict`` (the protocol: belief.py)."""

from typing import Any

from master.models.belief import BeliefModel, Score
from master.models.counts import CountParams, CountScore, DeviceCountModel, PopulationCountModel
from master.models.dirichlet import CategoryModel
from master.models.gamma_poisson import CountModel, Gamma, nb_sf, predictive_sf
from master.models.intervals import DeviceBeacons

# Every belief model of the master: the conformance suite checks each through BeliefModel alone, and fails
# on a class with a learn_one that is missing here.
BELIEF_MODELS: tuple[type[BeliefModel[Any, Any]], ...] = (
    CountModel,
    DeviceCountModel,
    PopulationCountModel,
    CategoryModel,
    DeviceBeacons,
)

__all__ = [
    "BELIEF_MODELS",
    "BeliefModel",
    "CategoryModel",
    "CountModel",
    "CountParams",
    "CountScore",
    "DeviceBeacons",
    "DeviceCountModel",
    "Gamma",
    "PopulationCountModel",
    "Score",
    "nb_sf",
    "predictive_sf",
]
