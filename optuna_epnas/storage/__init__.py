"""Where a search keeps its state: storage URLs opened with one clear error (:mod:`.storages`), the one
module that touches Optuna's private storage API (:mod:`._storage`), the names of every key kept in a
study (:mod:`.keys`), and the marks of the processes that hold a study's parts (:mod:`.owner`)."""

from optuna_epnas.storage.storages import open_storage, public_url, storage_file

__all__ = ["open_storage", "public_url", "storage_file"]
