"""How the router decides: the routing policies (pure functions over snapshots) and
what they learn from outcomes (posteriors under a prior shared by contexts, change
detection, the exploration budget, the price of quality). Plain Python; the router owns
one learner.

Module map:

    policies.py   Routing policies: pure functions `(candidates, need, settings) -> ranked
                  scores`
    learning.py   What the router has learned about its providers, from the records it produces
                  itself
    estimates.py  The learner's settings and the state it keeps per provider and context:
                  decayed sums, and what a decision reads from them (actors/policy/learning.py
                  explains the model)
    shared_prior.py  The prior every context's provider scores are drawn from, fitted by
                  EM from all contexts at once (empirical Bayes), and each context's
                  posterior under it
    changes.py    Noticing that a provider changed in a context (CUSUM on its outcomes)
    stream.py     What each provider would score over the whole stream (the quality
                  target's reference), with its uncertainty
    explore.py    How a ranking explores (an optimistic index or Thompson draws) and the
                  budget of traffic and money it may spend learning
    pricing.py    The price of quality: what one unit of outcome score is worth, in USD, for one
                  target
"""
