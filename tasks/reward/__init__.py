"""The hybrid reward of RL (paper §5.2.2): one package, one module per component.

    item = RewardItem(...)                      # item.py: what every grader sees for one completion
    route(item)                                 # router.py: which graders apply (metadata + prompt intent)
    rule.score / rubric.judge / pairwise.score / process.score   # the graders, each a Score in [0, 1]
    shaping.factor / safety.gate                # multiplicative penalties; the gate that zeroes a reward
    fusion.fuse / fusion.partial_order_correct  # non-linear per-task fusion, expert partial order
    HybridReward (hybrid.py)                    # all of it per completion, with the decomposition kept
"""
