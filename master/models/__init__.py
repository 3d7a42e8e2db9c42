"""Self-learning models: river-style ``learn_one``/``score_one``, hyper-parameters in ``__init__``,
state a few numbers that round-trip through ``to_dict``/``from_dict``."""

from master.models.counts import CountParams, CountScore, DeviceCountModel, PopulationCountModel
from master.models.gamma_poisson import CountModel, Gamma, nb_sf, predictive_sf

__all__ = [
    "CountModel",
    "CountParams",
    "CountScore",
    "DeviceCountModel",
    "Gamma",
    "PopulationCountModel",
    "nb_sf",
    "predictive_sf",
]
