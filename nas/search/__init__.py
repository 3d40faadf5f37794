"""The search: spaces, objectives, the ask/tell searcher, MO-ASHA, the Ray adapter, the driver.

Ray is imported only by ``nas.search.ray_adapter`` (and only when trials run on Ray);
importing this package needs neither Ray nor torch.
"""

from nas.search.objectives import OBJECTIVES, Objective, parse_objectives
from nas.search.pareto import full_budget_trials, hypervolume, pareto_front, study_hypervolume
from nas.search.space import SearchSpace, load_space

__all__ = ["OBJECTIVES", "Objective", "SearchSpace", "full_budget_trials", "hypervolume",
           "load_space", "pareto_front", "parse_objectives", "study_hypervolume"]
