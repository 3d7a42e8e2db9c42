"""Self-learning models: river-style ``learn_one``/``score_one``, hyper-parameters in ``__init__``,
state a few numbers that round-trip through ``to_dict``/``from_dict``."""

from master.models.gamma_poisson import CountModel, Gamma, nb_sf, predictive_sf
from master.models.scan import NetworkScanModel, PopulationScanModel, ScanParams, ScanScore

__all__ = [
    "CountModel",
    "Gamma",
    "NetworkScanModel",
    "PopulationScanModel",
    "ScanParams",
    "ScanScore",
    "nb_sf",
    "predictive_sf",
]
