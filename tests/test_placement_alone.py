"""greedy and smallest without the LP-guided completion (``lp_completion=False``): what the rule alone finds."""

from idn.placement import PlacementOptions, build_problem
from idn.placement.baselines import greedy, smallest
from idn.placement.solve import score
from idn.placement.synthetic import tree_instance


def test_without_the_completion_the_rule_alone_reports_failed_where_only_the_lp_finds_a_plan():
    """A compute-tight instance (the one test_placement_ilp's completion test uses): the rules'
    placements and the compute-aware fill leave demand short, so greedy-alone and smallest-alone
    say they failed (a heuristic finding nothing proves nothing) with the fill's reason; with the
    LP-guided completion both find a feasible plan."""
    topo, cat, dem = tree_instance(2, 3, 1, 5, 12, seed=0, rate=(60.0, 200.0), slo_accuracy=(None, 0.7, 0.8))
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=500.0, rho=0.8))
    for h in (greedy, smallest):
        alone, full = h(p, lp_completion=False), h(p)
        assert alone.method == f"{h.__name__}-alone" and alone.facts.status == "failed"
        assert "compute caps cannot carry the demand" in alone.facts.options["solver_message"]
        assert "LP-guided completion" not in alone.facts.options["solver_message"]
        assert full.facts.status == "heuristic" and score(p, full, topo, cat, dem)[1].feasible


def test_without_the_completion_nothing_changes_where_the_rule_alone_suffices():
    topo, cat, dem = tree_instance(2, 3, 1, 5, 20, seed=1)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=500.0))
    for h in (greedy, smallest):
        alone, full = h(p, lp_completion=False), h(p)
        assert alone.facts.status == full.facts.status == "heuristic"
        assert alone.facts.objective == full.facts.objective and alone.placements == full.placements
