"""A found architecture as a network of its own: its JSON spec and ``build_model`` (:mod:`.export`),
training from scratch (:mod:`.train`, and which architecture ``epnas train`` retrains: :mod:`.retrain`),
and its drawing (:mod:`.draw`)."""
