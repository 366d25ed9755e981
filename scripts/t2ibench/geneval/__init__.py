"""GenEval-compatible compositional evaluation (Ghosh et al. 2023): a prompt suite of
objects, counts, colours and positions (suite), the decision rules over detections
(rules), and the detector and colour classifier that feed them (detect)."""
