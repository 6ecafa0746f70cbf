"""Files in and out: image files and folders (:mod:`.images`), the data sets (:mod:`.datasets`: MNIST and
Fashion-MNIST; :mod:`.emoji`: the colour emoji sets), atomic writes and the manifest of what a run wrote
(:mod:`.files`), sha256 digests (:mod:`.hashing`), figures (:mod:`.pictures`) and static HTML pages (:mod:`.webpage`).

Scale everywhere: an 8-bit pixel ``u`` is ``x = u / 127.5 - 1`` in [-1, 1].
"""
