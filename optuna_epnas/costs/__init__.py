"""What an architecture costs: forward multiply-adds and parameters (:mod:`.cost`), latency on a
device (:mod:`.latency`), and what a trial's values are -- accuracy first, then a cost objective
(:mod:`.values`)."""
