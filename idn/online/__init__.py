"""Online placement policies: nodes that update what they hold from the requests they just saw.

``infida``: the paper's online algorithm (Si Salem et al., IEEE/ACM ToN 2024), per-node
mirror ascent on the observed gain with randomised rounding; see its docstring for what
it takes from the paper and where it departs.
"""
