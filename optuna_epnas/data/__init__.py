"""Data on the device: ``DeviceData`` and ``load_dataset`` (:mod:`.device`), and the data sets it
reads (:mod:`.datasets`: the bundled ``digits``, Fashion-MNIST, CIFAR-10 from a folder)."""
